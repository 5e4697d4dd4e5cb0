"""The cases service's tables, over one asyncpg connection inside the caller's transaction.

`case_event` is the log (the truth); `case_state` is a snapshot of the fold of that log, kept
for fast loads and checked by `casebridge cases rebuild`; `case_outbox` holds what must be
published, written in the same transaction as the change (transactional outbox).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

import orjson
from pydantic import TypeAdapter

from schemas.cases import CaseOpened, TransitionRecorded
from services.cases.domain import CASE_ADAPTER, Case, CaseEvent, Deadline
from services.runtime.kafka import Outgoing

_EVENT_ADAPTER: TypeAdapter[CaseOpened | TransitionRecorded] = TypeAdapter(
    CaseOpened | TransitionRecorded
)


class StaleWriteError(Exception):
    """The case changed under us (another writer): the batch is retried from the log."""


async def claim_message(conn: Any, source: str, event_id: str) -> bool:
    """True the first time a message is seen; a redelivered message has had its effect."""
    row = await conn.fetchrow(
        "INSERT INTO case_message_seen (source, event_id) VALUES ($1, $2)"
        " ON CONFLICT DO NOTHING RETURNING 1",
        source,
        event_id,
    )
    return row is not None


async def load_case(conn: Any, case_id: str) -> Case | None:
    """The current state, row-locked until the transaction ends."""
    snapshot = await conn.fetchval(
        "SELECT snapshot FROM case_state WHERE case_id = $1 FOR UPDATE", case_id
    )
    return None if snapshot is None else CASE_ADAPTER.validate_json(snapshot)


async def save_case(
    conn: Any, before: Case | None, after: Case, events: Sequence[CaseEvent]
) -> None:
    """Append the events and move the snapshot on, refusing if the version moved meanwhile."""
    await conn.executemany(
        "INSERT INTO case_event (case_id, version, event_type, event) VALUES ($1, $2, $3, $4)",
        [(e.case_id, e.version, type(e).__name__, e.model_dump_json()) for e in events],
    )
    snapshot = CASE_ADAPTER.dump_json(after).decode()
    values = (
        after.kind.value,
        after.state.value,
        after.version,
        after.owner,
        after.person_key,
        snapshot,
        after.updated_at,
    )
    if before is None:
        await conn.execute(
            "INSERT INTO case_state (case_id, kind, state, version, owner, person_key,"
            " snapshot, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            after.case_id,
            *values,
        )
        return
    status = await conn.execute(
        "UPDATE case_state SET kind = $2, state = $3, version = $4, owner = $5,"
        " person_key = $6, snapshot = $7, updated_at = $8"
        " WHERE case_id = $1 AND version = $9",
        after.case_id,
        *values,
        before.version,
    )
    if status != "UPDATE 1":
        raise StaleWriteError(after.case_id)


async def cases_with_person_key(conn: Any, person_key: str, *, other_than: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT case_id FROM case_state WHERE person_key = $1 AND case_id <> $2 ORDER BY case_id",
        person_key,
        other_than,
    )
    return [r[0] for r in rows]


def _deadline_json(d: Deadline) -> str:
    return orjson.dumps(dataclasses.asdict(d)).decode()


def _deadline_of(text: str) -> Deadline:
    data = orjson.loads(text)
    data["due_at"] = dt.datetime.fromisoformat(data["due_at"])
    data["escalate_to"] = tuple(data["escalate_to"])
    return Deadline(**data)


async def replace_deadlines(conn: Any, case_id: str, deadlines: Sequence[Deadline]) -> None:
    """The case's pending deadlines become exactly `deadlines`; raised ones are kept, and a
    deadline whose id survives the change keeps its row (so it is never raised twice)."""
    await conn.execute(
        "DELETE FROM case_deadline WHERE case_id = $1 AND raised_at IS NULL"
        " AND NOT (deadline_id = ANY($2::text[]))",
        case_id,
        [d.deadline_id for d in deadlines],
    )
    await conn.executemany(
        "INSERT INTO case_deadline (deadline_id, case_id, due_at, deadline)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT (deadline_id) DO NOTHING",
        [(d.deadline_id, d.case_id, d.due_at, _deadline_json(d)) for d in deadlines],
    )


async def due_deadlines(conn: Any, now: dt.datetime) -> list[Deadline]:
    rows = await conn.fetch(
        "SELECT deadline FROM case_deadline WHERE raised_at IS NULL AND due_at <= $1"
        " ORDER BY due_at FOR UPDATE SKIP LOCKED",
        now,
    )
    return [_deadline_of(r[0]) for r in rows]


async def mark_raised(conn: Any, deadline_ids: Sequence[str], now: dt.datetime) -> None:
    await conn.execute(
        "UPDATE case_deadline SET raised_at = $2 WHERE deadline_id = ANY($1::text[])",
        list(deadline_ids),
        now,
    )


async def add_to_outbox(conn: Any, records: Sequence[Outgoing]) -> None:
    await conn.executemany(
        "INSERT INTO case_outbox (topic, key, headers, value) VALUES ($1, $2, $3, $4)",
        [(r.topic, r.key, orjson.dumps(r.headers).decode(), r.value) for r in records],
    )


async def pending_outbox(conn: Any, limit: int = 1000) -> list[tuple[int, Outgoing]]:
    rows = await conn.fetch(
        "SELECT id, topic, key, headers, value FROM case_outbox"
        " WHERE published_at IS NULL ORDER BY id LIMIT $1",
        limit,
    )
    return [
        (r[0], Outgoing(topic=r[1], key=r[2], headers=orjson.loads(r[3]), value=r[4])) for r in rows
    ]


async def mark_published(conn: Any, ids: Sequence[int]) -> None:
    await conn.execute(
        "UPDATE case_outbox SET published_at = now() WHERE id = ANY($1::bigint[])", list(ids)
    )


async def case_logs(conn: Any) -> dict[str, list[CaseEvent]]:
    """Every case's event log, in version order: what a rebuild replays."""
    logs: dict[str, list[CaseEvent]] = {}
    for row in await conn.fetch("SELECT case_id, event FROM case_event ORDER BY case_id, version"):
        logs.setdefault(row[0], []).append(_EVENT_ADAPTER.validate_json(row[1]))
    return logs


async def snapshots(conn: Any) -> dict[str, Case]:
    rows = await conn.fetch("SELECT case_id, snapshot FROM case_state")
    return {r[0]: CASE_ADAPTER.validate_json(r[1]) for r in rows}
