"""Services SIGKILLed mid-stream and restarted lose nothing and duplicate nothing.

Each service runs in its own process on the real broker and database; events are published
steadily while intake, then router, then audit are killed without warning and restarted.
The oracle is end to end: every event is received, validated, routed and delivered exactly
once in the audit log, and the log's sequence stays gapless.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import asyncpg
import pytest

from schemas.topics import EVENTS_VALID
from services.runtime.credentials import AUDITOR_ROLE, database_url
from services.runtime.database import asyncpg_dsn
from services.runtime.settings import Settings
from tests.support.pipeline import Record, ServiceProcess, adult_referral, publish, read_topic
from tests.support.stack import Stack

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

EVENTS = 3000
CHUNK = 150
DELIVERIES_PER_EVENT = 2  # adult forced labour: the shelter and the labour inspectorate


def _event(i: int, run: str) -> Record:
    return adult_referral(f"CR-{run}-{i:05d}", f"{run}-{i}", system="crash-test")


async def _counts(conn: asyncpg.Connection, run: str) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT outcome, count(*) FROM audit_log WHERE event_id LIKE $1"
        " OR attributes->>'ce_causationid' LIKE $1 GROUP BY outcome",
        f"{run}-%",
    )
    return {r[0]: r[1] for r in rows}


async def _wait(conn: asyncpg.Connection, run: str, outcome: str, at_least: int) -> None:
    for _ in range(600):
        if (await _counts(conn, run)).get(outcome, 0) >= at_least:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{outcome} never reached {at_least}: {await _counts(conn, run)}")


async def test_killed_services_lose_nothing_and_duplicate_nothing(stack: Stack) -> None:
    ns = f"t{uuid.uuid4().hex[:10]}."
    db = await stack.create_database()
    settings: Settings = stack.deployment(database=db, topic_prefix=ns, group_prefix=ns + "cb")
    procs = {name: ServiceProcess(stack, settings, name) for name in ("intake", "router", "audit")}
    run = uuid.uuid4().hex[:8]
    for p in procs.values():
        p.start()

    async def publish_steadily() -> None:
        for start in range(0, EVENTS, CHUNK):
            await publish(settings, [_event(i, run) for i in range(start, start + CHUNK)])
            await asyncio.sleep(0.15)

    conn = await asyncpg.connect(asyncpg_dsn(database_url(settings, AUDITOR_ROLE)))
    try:
        publisher = asyncio.create_task(publish_steadily())
        for victim, outcome in (
            ("intake", "received"),
            ("router", "routed"),
            ("audit", "delivered"),
        ):
            await _wait(conn, run, outcome, EVENTS // 5)
            procs[victim].kill()
            await asyncio.sleep(0.5)
            procs[victim].start()
        await publisher
        await _wait(conn, run, "delivered", EVENTS * DELIVERIES_PER_EVENT)
        await asyncio.sleep(2.0)  # anything duplicated late would land now

        counts = await _counts(conn, run)
        assert counts == {
            "received": EVENTS,
            "validated": EVENTS,
            "routed": EVENTS,
            "delivered": EVENTS * DELIVERIES_PER_EVENT,
        }
        distinct = await conn.fetchval(
            "SELECT count(DISTINCT (kafka_topic, event_id)) FROM audit_log"
            " WHERE outcome = 'delivered' AND event_id LIKE $1",
            f"{run}-%",
        )
        assert distinct == EVENTS * DELIVERIES_PER_EVENT
        first, last, total = await conn.fetchrow(
            "SELECT min(seq), max(seq), count(*) FROM audit_log"
        )
        assert (first, last) == (0, total - 1), "sequence numbers are gapless"
        # Every routing decision answers a received event of this run, and vice versa.
        unanswered = await conn.fetchval(
            "SELECT count(*) FROM audit_log r WHERE r.outcome = 'received'"
            " AND r.event_id LIKE $1 AND NOT EXISTS (SELECT 1 FROM audit_log d"
            " WHERE d.outcome = 'routed' AND d.attributes->>'ce_causationid' = r.event_id)",
            f"{run}-%",
        )
        assert unanswered == 0
        # On the topics too, not only in the audit log (which keeps the first copy of an id):
        # intake publishes in transactions with its offsets, so a kill between publishing
        # and committing publishes nothing twice.
        valid = Counter(
            dict(r.headers).get("ce_id", b"").decode()
            for r in await read_topic(settings, EVENTS_VALID.name)
        )
        assert valid == Counter({f"{run}-{i}": 1 for i in range(EVENTS)})
    finally:
        await conn.close()
        for p in procs.values():
            p.stop()
