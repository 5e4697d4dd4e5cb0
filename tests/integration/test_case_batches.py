"""A batch of case events in one transaction has exactly the effects of the same events one
batch each: the cases service loads, decides in memory and writes in bulk
(`services.cases.transaction`), and must not let that change what happens. On the real
database as the cases service's role, with a publisher that records what the relay sends."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from aiokafka import ConsumerRecord

from schemas.topics import DEADLETTER, EVENTS_VALID
from services.cases import store
from services.cases.coordinator import CaseCoordinator, directory_of
from services.cases.domain import CASE_ADAPTER, CaseContext, FakeClock
from services.cases.domain import load_policy as load_case_policy
from services.demo import coordination
from services.demo.scenario import AgencyMessage, agency_event
from services.privacy.keys import LocalKek
from services.privacy.policy import load_policy as load_data_sharing_policy
from services.privacy.vault import PersonVault
from services.routing.policy import load_policy
from services.runtime.credentials import OWNER_ROLE
from services.runtime.database import Database
from services.runtime.kafka import Outgoing
from tests.support.stack import Stack

pytestmark = [pytest.mark.postgres]

CASES_ROLE = "casebridge_cases"
T0 = dt.datetime(2026, 5, 4, 9, 0, tzinfo=dt.UTC)
PERSON = {
    "given_name": "Synthetic",
    "family_name": "Batched-Twice",
    "date_of_birth": "1993-02-01",
    "gender": "Feminine",
    "nationality": "KH",
}


class RecordingPublisher:
    def __init__(self, delay_s: float = 0.0, sent: list[Outgoing] | None = None) -> None:
        self.sent: list[Outgoing] = [] if sent is None else sent
        self._delay_s = delay_s

    async def publish_all(
        self, records: Sequence[Outgoing], *, consumed: Sequence[ConsumerRecord[Any, Any]] = ()
    ) -> None:
        await asyncio.sleep(self._delay_s)  # a broker's round trip, for others to race
        self.sent.extend(records)


@dataclass
class Outcome:
    states: dict[str, Any]
    events: list[tuple[str, int, str]]
    deadlines: list[tuple[str, dt.datetime]]
    sent: list[tuple[str, bytes | None, str]]


def as_record(m: AgencyMessage, offset: int) -> ConsumerRecord[Any, Any]:
    """The record as intake forwards it to the validated topic (same headers and bytes)."""
    return ConsumerRecord(
        EVENTS_VALID.name, 0, offset, 0, 0, m.key, m.value, None, len(m.key), len(m.value),
        tuple(m.headers),
    )  # fmt: skip


def referral(case_id: str, agency: str) -> AgencyMessage:
    data = orjson.loads(coordination.referral_steps("X")[0].message.value)
    data.update(case_id=case_id, reporting_agency=agency, person=PERSON)
    return agency_event(
        "a synthetic referral", agency, "x", "org.casebridge.referral.submitted.v1", data
    )


def scenario(run: str) -> list[ConsumerRecord[Any, Any]]:
    """Two referrals of one person (flagged on both), a repeat of the first, a whole referral
    lifecycle acted on case by case, and a record that does not decode."""
    first = referral(f"REF-{run}-1", "id-police-aht")
    second = referral(f"REF-{run}-2", "id-labour-inspectorate")
    lifecycle = [s.message for s in coordination.referral_steps(run)]
    broken = AgencyMessage("broken", "id-police-aht", "x", b"k", first.headers, b"{not json", "b")
    messages = [first, second, first, *lifecycle, broken]
    return [as_record(m, offset) for offset, m in enumerate(messages)]


@pytest.fixture
async def databases(stack: Stack) -> AsyncIterator[tuple[str, str]]:
    names = await stack.create_database(), await stack.create_database()
    yield names
    for name in names:
        await stack.drop_database(name)


def coordinator(
    stack: Stack, database: str, publisher: RecordingPublisher
) -> tuple[CaseCoordinator, Database, PersonVault]:
    """A cases service's coordinator as bootstrap wires it, publishing to `publisher`."""
    settings = stack.settings(database=database, person_key_secret="k" * 40)
    policy = load_policy(settings.routing_policy_path)
    ctx = CaseContext(
        agencies=directory_of(policy),
        policy=load_case_policy(settings.case_policy_path),
        person_key_secret=b"k" * 40,
        data_sharing=load_data_sharing_policy(settings.data_sharing_policy_path),
    )
    vault = PersonVault(LocalKek(bytes(range(32))))
    db = Database(stack.url(CASES_ROLE, database))
    made = CaseCoordinator(
        publisher=publisher, db=db, vault=vault, ctx=ctx, routing=policy, clock=FakeClock(T0)
    )
    return made, db, vault


async def apply(
    stack: Stack, database: str, batches: list[list[ConsumerRecord[Any, Any]]]
) -> Outcome:
    publisher = RecordingPublisher()
    cases, db, vault = coordinator(stack, database, publisher)
    owner = Database(stack.url(OWNER_ROLE, database))
    await db.start()
    await owner.start()
    try:
        for batch in batches:
            await cases.process(batch)
        async with owner.pool.acquire() as conn:
            states = {
                k: CASE_ADAPTER.dump_python(v, mode="json")
                for k, v in (await store.snapshots(conn, vault)).items()
            }
            events = [
                tuple(r)
                for r in await conn.fetch(
                    "SELECT case_id, version, event_type FROM case_event ORDER BY case_id, version"
                )
            ]
            deadlines = [
                tuple(r)
                for r in await conn.fetch(
                    "SELECT deadline_id, due_at FROM case_deadline WHERE raised_at IS NULL"
                    " ORDER BY deadline_id"
                )
            ]
            assert await conn.fetchval("SELECT count(*) FROM case_outbox") == 0
    finally:
        await db.close()
        await owner.close()
    sent = [(r.topic, r.key, str(r.headers.get("ce_id"))) for r in publisher.sent]
    return Outcome(states, events, deadlines, sent)


async def test_one_batch_has_exactly_the_effects_of_one_event_at_a_time(
    stack: Stack, databases: tuple[str, str]
) -> None:
    run = uuid.uuid4().hex[:6].upper()
    records = scenario(run)
    together = await apply(stack, databases[0], [records])
    alone = await apply(stack, databases[1], [[r] for r in records])

    # What the scenario must have done at all (so that agreeing is not agreeing on nothing).
    first, second, lifecycle = f"REF-{run}-1", f"REF-{run}-2", coordination.cases_of(run).referral
    assert together.states[first]["possible_duplicate_of"] == [second]
    assert together.states[second]["possible_duplicate_of"] == [first]
    final = coordination.referral_steps(run)[-1].version_after
    assert together.states[lifecycle]["version"] == final
    assert [e for e in together.events if e[0] == first] == [
        (first, 1, "CaseOpened"), (first, 2, "TransitionRecorded")
    ]  # fmt: skip
    assert together.deadlines, "an open referral has deadlines pending"
    assert [t for t, _, _ in together.sent].count(DEADLETTER.name) == 1, "the broken record"

    assert together.states == alone.states
    assert together.events == alone.events
    assert together.deadlines == alone.deadlines
    assert together.sent == alone.sent


async def test_two_instances_relay_each_outbox_row_once_and_in_order(
    stack: Stack, databases: tuple[str, str]
) -> None:
    """Both instances relay at once, each publishing slowly; between them every row goes out
    exactly once, in the order it was written (the outbox lock; without it both would send
    the same rows)."""
    database = databases[0]
    sent: list[Outgoing] = []
    one, db_one, _ = coordinator(stack, database, RecordingPublisher(0.05, sent))
    two, db_two, _ = coordinator(stack, database, RecordingPublisher(0.05, sent))
    rows = [
        Outgoing(topic="t", key=f"CASE-{i % 7}".encode(), headers={"n": str(i)}, value=b"v")
        for i in range(2_500)
    ]
    await db_one.start()
    await db_two.start()
    try:
        async with db_one.pool.acquire() as conn:
            await store.add_to_outbox(conn, rows)
        await asyncio.gather(one.relay(), two.relay(), one.relay(), two.relay())
        async with db_one.pool.acquire() as conn:
            assert await store.pending_outbox(conn, PersonVault(LocalKek(bytes(32)))) == []
    finally:
        await db_one.close()
        await db_two.close()
    assert [r.headers["n"] for r in sent] == [str(i) for i in range(2_500)]
