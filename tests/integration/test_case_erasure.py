"""Case tables without plaintext personal data, and erasure through the real broker.

Intake, router and cases run on the real broker and database. Synthetic people are referred
(two referrals of one person, flagged as possible duplicates, and a third person): the case
tables, read as the owner role, hold none of their names or birth dates in any column while the
cases service coordinates the cases and tells the agencies as usual, and the outbox is empty
once published. The data-protection officer's command then erases one case (by case id) and one
person (by person key) through `casebridge.erasures`: the keys are destroyed, the person and the
duplicate links are gone, every case rebuilds identical, the agencies are told, a redelivered
request has no second effect, and a request naming no case is dead-lettered with its reason.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
import pytest

from schemas.cases import DuplicateLinkRemoved, PersonalDataErased, action_type
from schemas.common import PersonRef
from schemas.privacy import ErasureRequested
from schemas.topics import DEADLETTER
from services.cases import store
from services.cases.erasure import erase, publish_request
from services.cases.rebuild import rebuild
from services.cases.watch import FeedItem, read_feeds
from services.demo import coordination
from services.demo.scenario import agency_event
from services.privacy.keys import load_kek
from services.privacy.vault import PersonVault, case_subject
from services.runtime.credentials import OWNER_ROLE
from services.runtime.database import asyncpg_dsn
from services.runtime.kafka import Outgoing
from services.runtime.migrations import upgrade
from services.runtime.settings import Settings
from tests.support.pipeline import Record, publish, read_topic, running, wait_for
from tests.support.stack import Stack

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

SERVICES = ("intake", "router", "cases")
TWICE = {
    "given_name": "Synthetic",
    "family_name": "Sealed-Twice",
    "date_of_birth": "1994-07-19",
    "gender": "Feminine",
    "nationality": "KH",
}
ONCE = {
    "given_name": "Synthetic",
    "family_name": "Sealed-Once",
    "date_of_birth": "1988-11-23",
    "gender": "Masculine",
    "nationality": "MM",
}
PERSONAL_VALUES = ("Sealed-Twice", "1994-07-19", "Sealed-Once", "1988-11-23")
CASE_TABLES = ("case_event", "case_state", "case_outbox", "case_deadline", "case_message_seen")
ERASED = action_type(PersonalDataErased)
UNLINKED = action_type(DuplicateLinkRemoved)


@dataclass
class World:
    settings: Settings
    conn: asyncpg.Connection
    vault: PersonVault
    first: str
    second: str
    third: str


async def refer(w: World, case_id: str, agency: str, person: dict[str, Any]) -> None:
    step = coordination.referral_steps(uuid.uuid4().hex[:6])[0]
    data = orjson.loads(step.message.value)
    data.update(case_id=case_id, reporting_agency=agency, person=person)
    m = agency_event(
        "a synthetic referral", agency, "x", "org.casebridge.referral.submitted.v1", data
    )
    await publish(w.settings, [Record(m.topic, m.value, m.key, m.headers)])


@pytest.fixture(scope="module")
async def world(stack: Stack) -> AsyncIterator[World]:
    ns = f"t{uuid.uuid4().hex[:10]}."
    db = await stack.create_database()
    settings = stack.deployment(
        database=db, topic_prefix=ns, group_prefix=ns + "cb", person_key_secret="k" * 40
    )
    conn = await asyncpg.connect(asyncpg_dsn(stack.url(OWNER_ROLE, db)))  # the test's view
    run = uuid.uuid4().hex[:6].upper()
    w = World(
        settings,
        conn,
        # No cache: the test reads what the database holds, right after each erasure.
        PersonVault(load_kek(secrets_dir=settings.secrets_dir), cache_ttl_s=0),
        first=f"REF-{run}-1",
        second=f"REF-{run}-2",
        third=f"REF-{run}-3",
    )
    try:
        async with running(settings, *SERVICES):
            await refer(w, w.first, "id-police-aht", TWICE)
            assert await coordination.wait_for_version(conn, w.first, 1) == 1
            await refer(w, w.second, "id-labour-inspectorate", TWICE)
            await refer(w, w.third, "id-police-aht", ONCE)
            # Both referrals of one person are flagged (version 2 each).
            for case_id in (w.first, w.second):
                assert await coordination.wait_for_version(conn, case_id, 2) == 2
            assert await coordination.wait_for_version(conn, w.third, 1) == 1
            yield w
    finally:
        await conn.close()


async def snapshot(w: World, case_id: str) -> Any:
    async with w.conn.transaction():
        return await store.load_case(w.conn, w.vault, case_id)


async def feeds(w: World, *case_ids: str) -> dict[str, list[FeedItem]]:
    owners = {
        r[0]
        for r in await w.conn.fetch(
            "SELECT unnest(agencies) FROM case_state WHERE case_id = ANY($1::text[])",
            list(case_ids),
        )
    }
    everything = await read_feeds(w.settings, sorted(owners))
    return {a: [i for i in items if i.case_id in case_ids] for a, items in everything.items()}


async def test_case_tables_hold_no_plaintext_personal_data(world: World) -> None:
    for table in CASE_TABLES:
        rows = await world.conn.fetch(f"SELECT t::text FROM {table} AS t")
        text = "\n".join(r[0] for r in rows)
        if table in ("case_event", "case_state"):
            assert world.first in text, f"{table} holds the cases (positive control)"
        for value in PERSONAL_VALUES:
            assert value not in text, f"{value} in {table}"
    sealed = await world.conn.fetchval(
        "SELECT count(*) FROM case_event WHERE data_key_id IS NOT NULL AND case_id = ANY($1)",
        [world.first, world.second, world.third],
    )
    assert sealed == 3, "each opening event is sealed with its case's key"


async def test_the_cases_service_still_coordinates_and_reads_the_person(world: World) -> None:
    first = await snapshot(world, world.first)
    second = await snapshot(world, world.second)
    assert first.person.family_name == second.person.family_name == "Sealed-Twice"
    assert first.person_key == second.person_key is not None
    assert first.possible_duplicate_of == (world.second,)
    assert second.possible_duplicate_of == (world.first,)
    # The owning agency was told, person included (it is entitled to it): the data flows,
    # only the tables hold it sealed.
    told = [i for items in (await feeds(world, world.first)).values() for i in items]
    assert any(b"Sealed-Twice" in i.raw for i in told)


async def test_outbox_values_are_sealed_whole_and_open_for_the_relay(world: World) -> None:
    key = await store.case_key(world.conn, world.vault, world.third)
    record = Outgoing(
        topic="casebridge.updates.id-shelter-ngo",
        value=orjson.dumps({"person": ONCE}),
        key=world.third.encode(),
        headers={"ce_type": "x"},
    )
    tx = world.conn.transaction()
    await tx.start()  # rolled back: the running service must not publish it
    try:
        await world.conn.execute("LOCK TABLE case_outbox")  # nor see it meanwhile
        await store.add_to_outbox(world.conn, [record], {world.third: key})
        stored = await world.conn.fetchrow(
            "SELECT value, data_key_id FROM case_outbox ORDER BY id DESC LIMIT 1"
        )
        assert stored["data_key_id"] == key.key_id
        assert b"Sealed-Once" not in stored["value"]
        assert record in [r for _, r in await store.pending_outbox(world.conn, world.vault)]
    finally:
        await tx.rollback()


async def test_outbox_rows_are_deleted_once_published(world: World) -> None:
    left = await wait_for(
        lambda: world.conn.fetchval("SELECT count(*) FROM case_outbox"), lambda n: n == 0
    )
    assert left == 0
    told = await feeds(world, world.first, world.second, world.third)
    assert sum(len(items) for items in told.values()) >= 3, "what left the outbox was published"


async def test_erasure_by_case_id_destroys_the_key_and_unlinks_the_other_case(
    world: World,
) -> None:
    first_before = await snapshot(world, world.first)
    second_version = await coordination.case_version(world.conn, world.second)
    lines: list[str] = []
    code = await erase(
        world.settings,
        case_id=world.first,
        person_key=None,
        reason="subject_request",
        requested_by="dpo-test",
        timeout_s=30,
        out=lines.append,
    )
    assert code == 0, lines
    assert any(f"case {world.first}, data key" in line for line in lines)
    key = await world.conn.fetchrow(
        "SELECT wrapped_key, erasure_reason, erased_by FROM data_key WHERE subject = $1",
        case_subject(world.first),
    )
    assert tuple(key) == (None, "subject_request", "dpo-test")

    # The transition and the unlinking are in the same transaction as the key's destruction.
    first = await snapshot(world, world.first)
    assert first.version == first_before.version + 1
    assert first.person is None
    assert first.person_key is None
    assert first.possible_duplicate_of == first.same_person_as == ()
    assert first.state == first_before.state, "the case and its coordination stay"
    assert (
        await world.conn.fetchval(
            "SELECT person_key FROM case_state WHERE case_id = $1", world.first
        )
        is None
    )
    second = await snapshot(world, world.second)
    assert second.version == second_version + 1
    assert second.possible_duplicate_of == ()
    assert second.person is not None, "the other case's person stays"

    # The log still folds to the stored state; the opening's person reads as erased.
    async with world.conn.transaction():
        report = await rebuild(world.conn, world.vault)
        logs = await store.case_logs(world.conn, world.vault)
    assert report.ok, report
    assert report.identical == report.cases >= 3
    opened = logs[world.first][0]
    assert opened.referral is not None
    assert opened.referral.person == PersonRef()
    assert opened.person_key is None

    # The agencies involved are told, as usual.
    told = await feeds(world, world.first, world.second)
    changes = {
        (i.case_id, i.body.get("change"))
        for items in told.values()
        for i in items
        if i.event_type.endswith("case_update.v1")
    }
    assert (world.first, ERASED) in changes
    assert (world.second, UNLINKED) in changes
    for items in told.values():
        for item in items:
            if item.case_id == world.first and item.body.get("change") == ERASED:
                assert item.body.get("person") is None
                assert b"Sealed-Twice" not in item.raw


async def test_a_redelivered_request_has_no_second_effect(world: World) -> None:
    third_key = await world.conn.fetchval(
        "SELECT person_key FROM case_state WHERE case_id = $1", world.third
    )
    request = ErasureRequested(
        request_id=str(uuid.uuid4()),
        person_key=third_key,
        reason="retention_expired",
        requested_by="dpo-test",
        requested_at=dt.datetime.now(dt.UTC),
    )
    await publish_request(world.settings, request)
    erased = await wait_for(
        lambda: world.conn.fetchval(
            "SELECT erased_at FROM data_key WHERE subject = $1", case_subject(world.third)
        ),
        lambda at: at is not None,
    )
    assert erased is not None
    version = await coordination.case_version(world.conn, world.third)
    third = await snapshot(world, world.third)
    assert third.person is None
    await publish_request(world.settings, request)  # the same request again
    await asyncio.sleep(2.0)
    assert await coordination.case_version(world.conn, world.third) == version
    assert (
        await world.conn.fetchval(
            "SELECT count(*) FROM case_message_seen WHERE event_id = $1", request.request_id
        )
        == 1
    )


async def test_a_request_naming_no_case_is_dead_lettered_with_its_reason(world: World) -> None:
    lines: list[str] = []
    code = await erase(
        world.settings,
        case_id="REF-NO-SUCH-CASE",
        person_key=None,
        reason="subject_request",
        requested_by="dpo-test",
        timeout_s=5,
        out=lines.append,
    )
    assert code == 3
    assert any("nothing matched" in line for line in lines)
    request_id = lines[0].split()[2]

    async def letters() -> list[Any]:
        records = await read_topic(world.settings, DEADLETTER.name)
        return [r for r in records if dict(r.headers).get("cb_original_id") == request_id.encode()]

    [letter] = await wait_for(letters, lambda found: len(found) == 1)
    headers = dict(letter.headers)
    assert headers["cb_error_code"] == b"NO_MATCHING_CASE"
    assert headers["ce_source"] == b"casebridge/cases"
    assert orjson.loads(letter.value)["error"]["code"] == "NO_MATCHING_CASE"


async def test_the_migration_refuses_a_database_with_cases_stored_in_the_clear(
    stack: Stack,
) -> None:
    """Sealing needs the key-encryption key, which migrations never hold: plaintext cases are
    refused, not left behind; SAR incidents (no one's personal data) migrate."""
    name = f"cb_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(asyncpg_dsn(stack.url("postgres", "postgres")))
    try:
        await admin.execute(f'CREATE DATABASE "{name}" OWNER {OWNER_ROLE}')
        url = stack.url(OWNER_ROLE, name)
        await asyncio.to_thread(upgrade, url, "0013")
        owner = await asyncpg.connect(asyncpg_dsn(url))
        try:
            insert = (
                "INSERT INTO case_state (case_id, kind, state, version, owner, snapshot,"
                " updated_at) VALUES ($1, $2, 'submitted', 1, 'id-shelter-ngo', $3, now())"
            )
            await owner.execute(
                insert, "REF-CLEAR", "referral", orjson.dumps({"person": ONCE}).decode()
            )
            with pytest.raises(Exception, match="stored in the clear"):
                await asyncio.to_thread(upgrade, url, "0014")
            await owner.execute("DELETE FROM case_state")
            await owner.execute(insert, "SAR-1", "sar", "{}")
            await asyncio.to_thread(upgrade, url, "0014")
            assert await owner.fetchval("SELECT version_num FROM alembic_version") == "0014"
        finally:
            await owner.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
