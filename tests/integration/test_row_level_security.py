"""PostgreSQL's row-level security, not the queries, keeps each agency to its own cases.

Five synthetic cases of three agencies are written the way the cases service writes them
(`save_case`, `replace_deadlines`, as `casebridge_cases`). Queries a careless developer could
write, run as `casebridge_caseworkers` acting for one agency, return that agency's rows and no
others; without an acting agency they return nothing; and the role can neither write nor switch
the policies off. Every emptiness has its positive control: the owner (or another agency) sees
the rows on the same database.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import os
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import asyncpg
import orjson
import pytest
from alembic import command

from schemas.cases import CaseKind, CaseState, HandoverMode
from schemas.priorities import MinisterialPriority
from services.cases import store
from services.cases.domain import CASE_ADAPTER, Case, Deadline, FakeClock
from services.cases.domain.model import Handover, HandoverStatus, ReturnFacts
from services.cases.reads import CaseReader
from services.privacy.keys import KEY_BYTES, LocalKek
from services.privacy.vault import PersonVault
from services.runtime.credentials import OWNER_ROLE
from services.runtime.database import Database, asyncpg_dsn
from services.runtime.migrations import alembic_config, upgrade
from tests.support.stack import Stack

pytestmark = [pytest.mark.postgres]

CASES = "casebridge_cases"
AUDITOR = "casebridge_auditor"
CASEWORKERS = "casebridge_caseworkers"
TABLES = ("case_state", "case_event", "case_deadline")

A, B, C = "agency-a", "agency-b", "agency-c"
NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)
VAULT = PersonVault(LocalKek(os.urandom(KEY_BYTES)))


@dataclass(frozen=True)
class World:
    database: str
    cases: dict[str, Case]
    """By role in the scenario: own, overdue, pending, receiving (agency A's), other, arrived."""

    def ids(self, *names: str) -> set[str]:
        return {self.cases[n].case_id for n in names}


def case(
    name: str,
    owner: str,
    *,
    updated: dt.timedelta,
    assigned: tuple[str, ...] = (),
    handovers: tuple[Handover, ...] = (),
    returns: ReturnFacts | None = None,
) -> Case:
    return Case(
        case_id=f"CASE-RLS-{name.upper()}-{uuid.uuid4().hex[:6]}",
        kind=CaseKind.returns if returns else CaseKind.referral,
        state=CaseState.pre_departure if returns else CaseState.acknowledged,
        version=2,
        owner=owner,
        opened_at=NOW - 24 * HOUR,
        state_entered_at=NOW - 24 * HOUR,
        updated_at=NOW - updated,
        assigned=assigned,
        person_key=f"pk-{name}",
        handovers=handovers,
        returns=returns,
    )


def handover(to: str, status: HandoverStatus, *, by: str = B) -> Handover:
    return Handover(to, by, HandoverMode.referral, status, NOW - 6 * HOUR)


def return_to(agency: str, *, arrived: bool) -> ReturnFacts:
    return ReturnFacts(
        origin_country="ID",
        host_country="MY",
        trafficking_victim=True,
        receiving_agency=agency,
        escort_required=False,
        travel_documents_ready=True,
        arrived_at=NOW - HOUR if arrived else None,
    )


def scenario() -> dict[str, Case]:
    """A is the owner, an assignee, a handover's receiver, a return's receiver; and was declined
    on `other`, and is a return's receiver after arrival on `arrived` (both B's alone)."""
    return {
        "own": case("own", A, updated=3 * HOUR),
        "overdue": case("overdue", C, updated=5 * HOUR, assigned=(A,)),
        "pending": case(
            "pending",
            B,
            updated=dt.timedelta(minutes=10),
            handovers=(handover(A, HandoverStatus.requested),),
        ),
        "receiving": case("receiving", B, updated=HOUR, returns=return_to(A, arrived=False)),
        "other": case(
            "other",
            B,
            updated=dt.timedelta(0),
            assigned=(C,),
            handovers=(handover(A, HandoverStatus.declined),),
        ),
        "arrived": case("arrived", B, updated=2 * HOUR, returns=return_to(A, arrived=True)),
    }


def deadline(c: Case, rule: str, due_at: dt.datetime) -> Deadline:
    return Deadline(
        deadline_id=f"{c.case_id}:{rule}",
        case_id=c.case_id,
        kind=c.kind,
        rule_id=rule,
        serves=MinisterialPriority.VICTIM_IDENTIFICATION_AND_PROTECTION,
        due_at=due_at,
        owner=c.owner,
        escalate_to=(c.owner, "supervisor"),
    )


def events(c: Case) -> list[tuple[str, int, str, str]]:
    """An opening and a transition, with the fields the timeline reads (synthetic payloads)."""
    opened = {"state": "submitted", "owner": c.owner, "referral": {"reporting_agency": c.owner}}
    moved = {"state": c.state.value, "actor_agency": c.owner, "action_type": "acknowledge"}
    return [
        (c.case_id, 1, "CaseOpened", orjson.dumps(opened).decode()),
        (c.case_id, 2, "TransitionRecorded", orjson.dumps(moved).decode()),
    ]


async def connect(stack: Stack, role: str, database: str) -> asyncpg.Connection:
    conn: asyncpg.Connection = await asyncpg.connect(asyncpg_dsn(stack.url(role, database)))
    return conn


@pytest.fixture(scope="module")
async def world(stack: Stack) -> AsyncIterator[World]:
    """The scenario, written by the cases service's own role and statements."""
    name = await stack.create_database()
    cases = scenario()
    writer = Database(stack.url(CASES, name), max_size=1)
    await writer.start()
    try:
        async with writer.pool.acquire() as conn, conn.transaction():
            for c in cases.values():
                await store.save_case(conn, VAULT, None, c, [])
                await conn.executemany(
                    "INSERT INTO case_event (case_id, version, event_type, event)"
                    " VALUES ($1, $2, $3, $4)",
                    events(c),
                )
            own, overdue, other = cases["own"], cases["overdue"], cases["other"]
            # Due first of all: were `other`'s visible to A, it would lead A's list.
            await store.replace_deadlines(
                conn,
                {
                    own.case_id: [deadline(own, "ack", NOW + 2 * HOUR)],
                    overdue.case_id: [
                        deadline(overdue, "screen", NOW - HOUR),
                        deadline(overdue, "plan", NOW + 30 * HOUR),
                        deadline(overdue, "ack", NOW - 10 * HOUR),
                    ],
                    other.case_id: [deadline(other, "ack", NOW - 2 * HOUR)],
                },
            )
            await store.mark_raised(conn, [f"{overdue.case_id}:ack"], NOW - 9 * HOUR)
    finally:
        await writer.close()
    yield World(name, cases)
    await stack.drop_database(name)


@pytest.fixture
async def caseworkers(stack: Stack, world: World) -> AsyncIterator[Database]:
    """One pooled connection, so a setting left behind would show in the next call."""
    db = Database(stack.url(CASEWORKERS, world.database), max_size=1)
    await db.start()
    yield db
    await db.close()


async def as_agency(conn: asyncpg.Connection, agency: str, sql: str, *args: object) -> set[str]:
    """First column of `sql`'s rows, in a transaction acting for `agency`."""
    async with conn.transaction():
        await conn.execute("SELECT set_config('casebridge.agency', $1, true)", agency)
        return {r[0] for r in await conn.fetch(sql, *args)}


async def execute_as(conn: asyncpg.Connection, agency: str, sql: str, *args: object) -> str:
    async with conn.transaction():
        await conn.execute("SELECT set_config('casebridge.agency', $1, true)", agency)
        status: str = await conn.execute(sql, *args)
        return status


async def everything(stack: Stack, world: World, sql: str, *args: object) -> set[str]:
    """The owner's answer: what exists, whoever may read it."""
    conn = await connect(stack, OWNER_ROLE, world.database)
    try:
        return {r[0] for r in await conn.fetch(sql, *args)}
    finally:
        await conn.close()


# --- (a) careless queries return the acting agency's rows only ----------------------------------


CARELESS = (
    "SELECT case_id FROM case_state",
    "SELECT * FROM case_state",
    "SELECT case_id FROM case_event",
    "SELECT case_id FROM case_deadline",
    "SELECT e.case_id FROM case_event AS e LEFT JOIN case_state AS s USING (case_id)",
    "SELECT d.case_id FROM case_deadline AS d CROSS JOIN case_state AS s",
    "SELECT s.case_id FROM case_state AS s, case_event AS e WHERE e.version = 1",
)


@pytest.mark.parametrize("sql", CARELESS)
async def test_a_query_without_an_agency_filter_returns_the_agencys_rows_only(
    stack: Stack, world: World, sql: str
) -> None:
    exists = await everything(stack, world, sql)
    conn = await connect(stack, CASEWORKERS, world.database)
    try:
        seen = {agency: await as_agency(conn, agency, sql) for agency in (A, B, C)}
    finally:
        await conn.close()
    visible = {
        A: world.ids("own", "overdue", "pending", "receiving"),
        B: world.ids("pending", "receiving", "other", "arrived"),
        C: world.ids("overdue", "other"),
    }
    for agency, rows in seen.items():
        assert rows == exists & visible[agency], agency
    assert seen[A], "positive control: the agency reads its own rows"
    assert exists - seen[A], "positive control: rows A may not see exist"


async def test_another_agencys_case_by_id_returns_nothing(stack: Stack, world: World) -> None:
    other = world.cases["other"].case_id
    for table in TABLES:
        sql = f"SELECT case_id FROM {table} WHERE case_id = $1"
        assert await everything(stack, world, sql, other) == {other}  # it is there
        conn = await connect(stack, CASEWORKERS, world.database)
        try:
            assert await as_agency(conn, A, sql, other) == set(), table
            assert await as_agency(conn, B, sql, other) == {other}, table
        finally:
            await conn.close()


async def test_every_visible_case_names_the_acting_agency(stack: Stack, world: World) -> None:
    conn = await connect(stack, CASEWORKERS, world.database)
    try:
        async with conn.transaction():
            await conn.execute("SELECT set_config('casebridge.agency', $1, true)", A)
            rows = await conn.fetch("SELECT case_id, agencies FROM case_state")
    finally:
        await conn.close()
    assert len(rows) == 4
    assert all(A in r["agencies"] for r in rows)
    assert dict(rows) == {
        c.case_id: store.agencies_involved(c)
        for n, c in world.cases.items()
        if n in ("own", "overdue", "pending", "receiving")
    }


# --- (b) no acting agency, no rows --------------------------------------------------------------


async def test_without_an_agency_nothing_is_visible(
    stack: Stack, world: World, caseworkers: Database
) -> None:
    for table in TABLES:
        sql = f"SELECT case_id FROM {table}"
        assert await everything(stack, world, sql), table  # positive control
        conn = await connect(stack, CASEWORKERS, world.database)
        try:
            assert await conn.fetch(sql) == [], f"{table}: never set"
            assert await as_agency(conn, A, sql), f"{table}: set for one transaction"
            assert await conn.fetch(sql) == [], f"{table}: after that transaction"
            assert await as_agency(conn, "", sql) == set(), f"{table}: set empty"
        finally:
            await conn.close()
    # The read path leaves nothing on its pooled connection for the next caller.
    assert await CaseReader(caseworkers).cases(A)
    assert await caseworkers.pool.fetch("SELECT case_id FROM case_state") == []


# --- (c) positive control: the read path -------------------------------------------------------


async def test_an_agency_reads_its_cases_overdue_first(world: World, caseworkers: Database) -> None:
    reader = CaseReader(caseworkers, clock=FakeClock(NOW))
    listed = await reader.cases(A)
    c = world.cases
    assert [s.case_id for s in listed] == [
        c["overdue"].case_id,  # a pending deadline an hour past due
        c["own"].case_id,  # due in two hours
        c["pending"].case_id,  # no deadline: updated ten minutes ago
        c["receiving"].case_id,  # no deadline: updated an hour ago
    ]
    assert [s.overdue for s in listed] == [True, False, False, False]
    assert listed[0].next_due_at == NOW - HOUR  # the raised deadline is not pending
    assert listed[1].next_due_at == NOW + 2 * HOUR
    assert listed[0].owner == C
    assert listed[0].state == "acknowledged"
    assert [s.case_id for s in await reader.cases(C)] == [
        c["other"].case_id,  # both overdue: this one was due two hours ago,
        c["overdue"].case_id,  # this one an hour ago
    ]
    assert await reader.cases(A, limit=1) == listed[:1]


async def test_an_agency_reads_a_cases_timeline_and_pending_deadlines(
    world: World, caseworkers: Database
) -> None:
    reader = CaseReader(caseworkers, clock=FakeClock(NOW))
    overdue = world.cases["overdue"]
    timeline = await reader.timeline(A, overdue.case_id)
    assert [(e.version, e.event_type, e.actor, e.state) for e in timeline] == [
        (1, "CaseOpened", C, "submitted"),
        (2, "TransitionRecorded", C, "acknowledged"),
    ]
    assert all(e.recorded_at.tzinfo is not None for e in timeline)
    deadlines = await reader.pending_deadlines(A, overdue.case_id)
    assert [(d.rule_id, d.due_at) for d in deadlines] == [
        ("screen", NOW - HOUR),
        ("plan", NOW + 30 * HOUR),
    ]
    assert deadlines[0].escalate_to == (C, "supervisor")
    assert deadlines[0].owner == C
    # Another agency's case: as if it did not exist (B, on it, sees it).
    other = world.cases["other"].case_id
    assert await reader.timeline(A, other) == []
    assert await reader.pending_deadlines(A, other) == []
    assert len(await reader.timeline(B, other)) == 2
    assert len(await reader.pending_deadlines(B, other)) == 1


async def test_read_access_follows_the_agencies_on_the_case(
    stack: Stack, world: World, caseworkers: Database
) -> None:
    """Written by save_case: an agency joins, then leaves, and its view follows."""
    reader = CaseReader(caseworkers, clock=FakeClock(NOW))
    opened = case("moving", "agency-e", updated=HOUR)
    joined = dataclasses.replace(opened, version=3, assigned=("agency-d",))
    left = dataclasses.replace(joined, version=4, assigned=())
    writer = Database(stack.url(CASES, world.database), max_size=1)
    await writer.start()
    try:
        seen = []
        for before, after in ((None, opened), (opened, joined), (joined, left)):
            async with writer.pool.acquire() as conn, conn.transaction():
                await store.save_case(conn, VAULT, before, after, [])
            seen.append([s.case_id for s in await reader.cases("agency-d")])
    finally:
        await writer.close()
    assert seen == [[], [opened.case_id], []]
    assert [s.case_id for s in await reader.cases("agency-e")] == [opened.case_id]


# --- (d) the role cannot write, nor turn the policies off --------------------------------------


async def test_the_caseworkers_role_cannot_write_the_case_tables(
    stack: Stack, world: World
) -> None:
    own = world.cases["own"].case_id
    statements = {
        "case_state": "UPDATE case_state SET state = 'closed' WHERE case_id = $1",
        "case_event": "DELETE FROM case_event WHERE case_id = $1",
        "case_deadline": "UPDATE case_deadline SET raised_at = now() WHERE case_id = $1",
    }
    conn = await connect(stack, CASEWORKERS, world.database)
    try:
        for table, sql in statements.items():
            for attempt in (sql, f"INSERT INTO {table} DEFAULT VALUES", f"TRUNCATE {table}"):
                args = [own] if "$1" in attempt else []
                with pytest.raises(asyncpg.InsufficientPrivilegeError, match=table):
                    await execute_as(conn, A, attempt, *args)
        unchanged = "SELECT state FROM case_state WHERE case_id = $1"
        assert await as_agency(conn, A, unchanged, own) == {"acknowledged"}
    finally:
        await conn.close()


async def test_the_caseworkers_role_cannot_switch_row_security_off(
    stack: Stack, world: World
) -> None:
    conn = await connect(stack, CASEWORKERS, world.database)
    try:
        await conn.execute("SET row_security = off")
        for table in TABLES:
            with pytest.raises(asyncpg.InsufficientPrivilegeError) as refused:
                await as_agency(conn, A, f"SELECT case_id FROM {table}")
            assert f'row-level security policy for table "{table}"' in str(refused.value)
        await conn.execute("RESET row_security")
        assert await as_agency(conn, A, "SELECT case_id FROM case_state")  # positive control
        for sql in (
            "ALTER TABLE case_state DISABLE ROW LEVEL SECURITY",
            "ALTER TABLE case_state NO FORCE ROW LEVEL SECURITY",
            "DROP POLICY case_state_caseworkers_select ON case_state",
            "CREATE POLICY mine ON case_state FOR SELECT USING (true)",
            "SET ROLE casebridge_auditor",
            "SET SESSION AUTHORIZATION casebridge_owner",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(sql)
        attributes = await conn.fetchrow(
            "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
        )
        assert tuple(attributes) == (False, False)
        assert await conn.fetchval("SELECT current_user") == CASEWORKERS
    finally:
        await conn.close()


# --- (e) the service roles keep what they had ---------------------------------------------------


async def test_the_service_roles_still_see_every_case(stack: Stack, world: World) -> None:
    total = await everything(stack, world, "SELECT case_id FROM case_state")
    assert world.ids(*world.cases) <= total
    auditor = await connect(stack, AUDITOR, world.database)
    try:
        assert {r[0] for r in await auditor.fetch("SELECT case_id FROM case_state")} == total
        logged = {r[0] for r in await auditor.fetch("SELECT case_id FROM case_event")}
        assert logged == world.ids(*world.cases)
    finally:
        await auditor.close()
    writer = Database(stack.url(CASES, world.database), max_size=1)
    await writer.start()
    try:
        async with writer.pool.acquire() as conn, conn.transaction():
            for c in world.cases.values():
                assert await store.load_case(conn, VAULT, c.case_id) == c
            due = await store.due_deadlines(conn, NOW)
            assert {d.case_id for d in due} == world.ids("overdue", "other")
            assert await store.cases_with_person_key(conn, "pk-other", other_than="none") == [
                world.cases["other"].case_id
            ]
    finally:
        await writer.close()


async def test_every_grant_on_the_case_tables_has_its_policy(stack: Stack, world: World) -> None:
    """A right granted without a policy would fail silently (no rows), and a policy without a
    right is dead: the two lists must match, role by role. TRUNCATE, which row security does not
    cover, is granted to no one but the owner."""
    conn = await connect(stack, "postgres", world.database)
    try:
        roles = [
            r[0]
            for r in await conn.fetch(
                "SELECT rolname FROM pg_roles WHERE rolname LIKE 'casebridge_%'"
            )
        ]
        granted = {
            (role, table, command)
            for role in roles
            for table in TABLES
            for command in ("SELECT", "INSERT", "UPDATE", "DELETE")
            if await conn.fetchval("SELECT has_table_privilege($1, $2, $3)", role, table, command)
        }
        truncating = {
            (role, table)
            for role in roles
            for table in TABLES
            if await conn.fetchval("SELECT has_table_privilege($1, $2, 'TRUNCATE')", role, table)
        }
        policies = {
            (role, r["tablename"], command)
            for r in await conn.fetch(
                "SELECT tablename, roles, cmd FROM pg_policies WHERE tablename = ANY($1::text[])",
                list(TABLES),
            )
            for role in r["roles"]
            for command in (
                ("SELECT", "INSERT", "UPDATE", "DELETE") if r["cmd"] == "ALL" else (r["cmd"],)
            )
        }
        forced = await conn.fetch(
            "SELECT relname FROM pg_class WHERE relrowsecurity AND relforcerowsecurity"
            " AND relname = ANY($1::text[])",
            list(TABLES),
        )
    finally:
        await conn.close()
    assert policies == granted
    assert {(CASEWORKERS, t, "SELECT") for t in TABLES} <= granted  # positive control
    assert {table for _, table in truncating} == set(TABLES)
    assert {role for role, _ in truncating} == {OWNER_ROLE}
    assert {r[0] for r in forced} == set(TABLES)


# --- the migration's backfill agrees with the service -------------------------------------------


async def test_the_migration_backfills_agencies_as_the_service_computes_them(
    stack: Stack,
) -> None:
    name = f"cb_{uuid.uuid4().hex[:12]}"
    admin = await connect(stack, "postgres", "postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{name}" OWNER {OWNER_ROLE}')
    finally:
        await admin.close()
    url = stack.url(OWNER_ROLE, name)
    try:
        await asyncio.to_thread(upgrade, url, "0014")
        cases = list(scenario().values())
        await _insert_snapshots(stack, name, cases)
        await asyncio.to_thread(upgrade, url)
        assert await _stored_agencies(stack, name) == {
            c.case_id: store.agencies_involved(c) for c in cases
        }
        await asyncio.to_thread(command.downgrade, alembic_config(url), "0014")
        await asyncio.to_thread(upgrade, url)
        assert await _stored_agencies(stack, name) == {
            c.case_id: store.agencies_involved(c) for c in cases
        }
    finally:
        await stack.drop_database(name)


async def _insert_snapshots(stack: Stack, database: str, cases: Sequence[Case]) -> None:
    conn = await connect(stack, OWNER_ROLE, database)
    try:
        await conn.executemany(
            "INSERT INTO case_state (case_id, kind, state, version, owner, person_key,"
            " snapshot, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8)",
            [
                (
                    c.case_id,
                    c.kind.value,
                    c.state.value,
                    c.version,
                    c.owner,
                    c.person_key,
                    CASE_ADAPTER.dump_json(c).decode(),
                    c.updated_at,
                )
                for c in cases
            ],
        )
    finally:
        await conn.close()


async def _stored_agencies(stack: Stack, database: str) -> dict[str, list[str]]:
    conn = await connect(stack, OWNER_ROLE, database)
    try:
        return dict(await conn.fetch("SELECT case_id, agencies FROM case_state"))
    finally:
        await conn.close()
