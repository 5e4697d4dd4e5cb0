"""PostgreSQL itself enforces who may connect and what each service role may do.

Every refusal below is the server's (SQLSTATE 28P01 password authentication failed, 42501
permission denied), and every one has a positive control: the right role, with the right
password, doing what its service does, succeeds on the same server and tables.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.audit.queries import EventFilter, all_tree_heads, find_events, screened_tree_heads
from services.audit.records import AuditRecord
from services.audit.signer import TreeHeadSigner
from services.audit.store import COLUMNS, AuditLog
from services.audit.verify_stored import verify_database
from services.cases import store as case_store
from services.cases.rebuild import rebuild
from services.intake.seen_events import SeenEvents, Sighting
from services.privacy.keys import LocalKek
from services.privacy.vault import PersonVault
from services.runtime.database import Database
from services.runtime.kafka import Outgoing
from tests.support.stack import Stack

pytestmark = [pytest.mark.postgres]

OWNER = "casebridge_owner"
INTAKE = "casebridge_intake"
CASES = "casebridge_cases"
AUDIT = "casebridge_audit"
SIGNER = "casebridge_signer"
AUDITOR = "casebridge_auditor"
CASEWORKERS = "casebridge_caseworkers"
CONSOLE = "casebridge_console"
SERVICE_ROLES = (INTAKE, CASES, AUDIT, SIGNER, AUDITOR, CASEWORKERS, CONSOLE)
LOGIN_ROLES = ("postgres", OWNER, *SERVICE_ROLES)

# What each role may do, written out here independently of the migration that grants it.
# Anything not listed must be refused.
EXPECTED: dict[str, dict[str, set[str]]] = {
    INTAKE: {"intake_seen_event": {"SELECT", "INSERT"}},
    AUDIT: {
        "audit_log": {"INSERT"},
        "audit_head": {"SELECT", "UPDATE"},
        "audit_consumer_offset": {"SELECT", "INSERT", "UPDATE"},
        "audit_emitted": {"SELECT", "INSERT"},
        "data_key": {"SELECT", "INSERT"},
    },
    SIGNER: {"audit_log": {"SELECT"}, "audit_tree_head": {"SELECT", "INSERT"}},
    AUDITOR: {
        "audit_log": {"SELECT"},
        "audit_tree_head": {"SELECT"},
        "case_event": {"SELECT"},
        "case_state": {"SELECT"},
        "data_key": {"SELECT"},
    },
    # Which rows: row-level security (tests/integration/test_row_level_security.py).
    CASEWORKERS: {"case_state": {"SELECT"}, "case_event": {"SELECT"}, "case_deadline": {"SELECT"}},
    # UPDATE of one column only (last_sign_in): the console cannot change a password hash.
    CONSOLE: {
        "console_account": {"SELECT", "UPDATE"},
        "console_session": {"SELECT", "INSERT", "UPDATE", "DELETE"},
    },
    CASES: {
        "case_event": {"INSERT"},
        "case_state": {"SELECT", "INSERT", "UPDATE"},
        "case_message_seen": {"SELECT", "INSERT"},
        "case_deadline": {"SELECT", "INSERT", "UPDATE", "DELETE"},
        "case_outbox": {"SELECT", "INSERT", "DELETE"},  # deleted once published
        "data_key": {"SELECT", "INSERT", "UPDATE"},
    },
}
# One column per table, for an UPDATE that touches nothing else.
TABLES = {
    "intake_seen_event": "kafka_offset",
    "audit_log": "outcome",
    "audit_head": "next_seq",
    "audit_consumer_offset": "next_offset",
    "audit_emitted": "record_digest",
    "audit_seq_range": "seqs",  # no role's: only audit_log's trigger writes it
    "audit_tree_head": "key_id",
    "case_event": "event_type",
    "case_state": "state",
    "case_message_seen": "event_id",
    "case_deadline": "raised_at",
    "case_outbox": "topic",
    "data_key": "erasure_reason",
    "console_account": "last_sign_in",
    "console_session": "last_used_at",
}
OPERATIONS = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE")
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(7, 39)))


# --- connecting --------------------------------------------------------------------------------


def password(stack: Stack, role: str) -> str:
    """The role's password, as set-up (infra/postgres/postgres.sh) wrote it."""
    return (stack.run_dir / "secrets" / "postgres" / f"{role}.password").read_text().strip()


def url(stack: Stack, role: str, database: str) -> str:
    return f"postgresql://{role}:{password(stack, role)}@127.0.0.1:{stack.pg_port}/{database}"


async def connect(
    stack: Stack,
    role: str,
    database: str,
    *,
    secret: str | None = None,
    host: str = "127.0.0.1",
) -> asyncpg.Connection:
    """A connection as `role` with `secret` (default: the role's own password). No password
    file or environment variable can supply one behind the test's back."""
    conn: asyncpg.Connection = await asyncpg.connect(
        host=host,
        port=stack.pg_port,
        user=role,
        password=password(stack, role) if secret is None else secret,
        database=database,
        passfile=str(stack.run_dir / "no-such-passfile"),
    )
    return conn


def socket_dir(stack: Stack) -> Path:
    """The server's Unix socket directory (moved under /var/lib/casebridge when the run dir is
    not reachable by the server's OS user, see infra/postgres/postgres.sh)."""
    key = hashlib.sha256(str(stack.run_dir).encode()).hexdigest()[:12]
    for candidate in (
        stack.run_dir / "pg" / "socket",
        Path("/var/lib/casebridge") / key / "pg" / "socket",
    ):
        if (candidate / f".s.PGSQL.{stack.pg_port}").exists():
            return candidate
    raise AssertionError(f"no PostgreSQL socket for {stack.run_dir}")


def assert_server_refused_login(exc: pytest.ExceptionInfo[BaseException], role: str) -> None:
    assert isinstance(exc.value, asyncpg.InvalidPasswordError), exc.value
    assert exc.value.sqlstate == "28P01"
    assert f'password authentication failed for user "{role}"' in str(exc.value)


def assert_permission_denied(exc: pytest.ExceptionInfo[BaseException], relation: str) -> None:
    """The server's own privilege check, not a trigger (the append-only triggers raise the same
    SQLSTATE with another message)."""
    assert isinstance(exc.value, asyncpg.InsufficientPrivilegeError), exc.value
    assert exc.value.sqlstate == "42501"
    assert "permission denied for" in str(exc.value), str(exc.value)
    assert relation in str(exc.value), str(exc.value)


async def rolled_back(conn: asyncpg.Connection, sql: str, *args: object) -> None:
    """Run `sql` in a transaction that is always rolled back."""
    tx = conn.transaction()
    await tx.start()
    try:
        await conn.execute(sql, *args)
    finally:
        await tx.rollback()


@pytest.fixture(autouse=True)
def no_password_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PGPASSWORD", "PGPASSFILE", "PGSERVICEFILE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
async def database(stack: Stack) -> AsyncIterator[str]:
    """A fresh migrated database for this module's writes."""
    name = await stack.create_database()
    yield name
    await stack.drop_database(name)


@pytest.fixture
async def pools(stack: Stack, database: str) -> AsyncIterator[dict[str, Database]]:
    """One `Database` per service role, opened the way the services open theirs."""
    dbs = {role: Database(url(stack, role, database), max_size=2) for role in SERVICE_ROLES}
    try:
        for db in dbs.values():
            await db.start()
        yield dbs
    finally:
        for db in dbs.values():
            await db.close()


# --- authentication ----------------------------------------------------------------------------


@pytest.mark.parametrize("role", LOGIN_ROLES)
async def test_a_connection_without_a_password_is_refused(
    stack: Stack, database: str, role: str
) -> None:
    db = "postgres" if role == "postgres" else database
    for host in ("127.0.0.1", str(socket_dir(stack))):
        conn = await connect(stack, role, db, host=host)  # positive control
        try:
            assert await conn.fetchval("SELECT current_user") == role
        finally:
            await conn.close()
        with pytest.raises(asyncpg.InvalidPasswordError) as refused:
            await connect(stack, role, db, secret="", host=host)
        assert_server_refused_login(refused, role)


@pytest.mark.parametrize("role", LOGIN_ROLES)
async def test_a_wrong_password_is_refused(stack: Stack, database: str, role: str) -> None:
    db = "postgres" if role == "postgres" else database
    conn = await connect(stack, role, db)  # positive control
    await conn.close()
    wrong = [password(stack, role) + "x", password(stack, OWNER if role != OWNER else INTAKE)]
    for secret in wrong:
        with pytest.raises(asyncpg.InvalidPasswordError) as refused:
            await connect(stack, role, db, secret=secret)
        assert_server_refused_login(refused, role)


async def test_the_server_accepts_passwords_only_and_stores_scram_verifiers(
    stack: Stack,
) -> None:
    conn = await connect(stack, "postgres", "postgres")
    try:
        methods = await conn.fetch(
            "SELECT DISTINCT auth_method, error FROM pg_hba_file_rules ORDER BY 1"
        )
        assert [(r["auth_method"], r["error"]) for r in methods] == [("scram-sha-256", None)]
        assert await conn.fetchval("SHOW password_encryption") == "scram-sha-256"
        roles = {
            r["rolname"]: r
            for r in await conn.fetch(
                "SELECT rolname, rolsuper, rolcreatedb, rolcreaterole, rolreplication,"
                " rolbypassrls, rolcanlogin, rolpassword FROM pg_authid"
                " WHERE rolname LIKE 'casebridge%' OR rolname = 'postgres'"
            )
        }
    finally:
        await conn.close()
    for role in LOGIN_ROLES:
        assert roles[role]["rolcanlogin"]
        assert roles[role]["rolpassword"].startswith("SCRAM-SHA-256$"), role
    for role in (OWNER, *SERVICE_ROLES):
        attributes = ("rolsuper", "rolcreatedb", "rolcreaterole", "rolreplication", "rolbypassrls")
        assert not any(roles[role][a] for a in attributes), role
    retired = roles.get("casebridge_app")
    assert retired is None or not retired["rolcanlogin"]


# --- authorisation: every role, every table, every kind of statement ----------------------------


def statement(operation: str, table: str) -> str:
    """A statement that needs exactly `operation` on `table` and changes nothing kept (it runs
    in a rolled-back transaction)."""
    if operation == "SELECT":
        return f"SELECT 1 FROM {table} LIMIT 0"
    if operation == "INSERT":
        return f"INSERT INTO {table} DEFAULT VALUES"
    if operation == "UPDATE":
        return f"UPDATE {table} SET {TABLES[table]} = DEFAULT WHERE false"
    if operation == "DELETE":
        return f"DELETE FROM {table} WHERE false"
    assert operation == "TRUNCATE"
    return f"TRUNCATE {table}"


@pytest.mark.parametrize("role", SERVICE_ROLES)
async def test_each_role_is_refused_outside_its_grants(
    stack: Stack, database: str, role: str
) -> None:
    conn = await connect(stack, role, database)
    allowed_seen = refused_seen = 0
    try:
        for table in TABLES:
            for operation in OPERATIONS:
                sql = statement(operation, table)
                if operation in EXPECTED[role].get(table, set()):
                    # Past the privilege check: it runs, or fails on a constraint (a row of
                    # DEFAULT VALUES is rarely valid), never on a permission.
                    try:
                        await rolled_back(conn, sql)
                    except asyncpg.InsufficientPrivilegeError as exc:
                        pytest.fail(f"{role} refused {operation} on {table}: {exc}")
                    except (asyncpg.IntegrityConstraintViolationError, asyncpg.DataError):
                        pass
                    allowed_seen += 1
                else:
                    with pytest.raises(asyncpg.InsufficientPrivilegeError) as refused:
                        await rolled_back(conn, sql)
                    assert_permission_denied(refused, table)
                    refused_seen += 1
        # The partitions behind audit_log are not addressable by any service.
        for partition in ("audit_log_2026_12", "audit_log_default"):
            for operation in ("SELECT", "INSERT"):
                with pytest.raises(asyncpg.InsufficientPrivilegeError) as refused:
                    await rolled_back(conn, statement(operation, partition))
                assert_permission_denied(refused, partition)
        # Sequences: only the cases service draws outbox ids.
        if role == CASES:
            await rolled_back(conn, "SELECT nextval('case_outbox_id_seq')")
        else:
            with pytest.raises(asyncpg.InsufficientPrivilegeError) as refused:
                await rolled_back(conn, "SELECT nextval('case_outbox_id_seq')")
            assert_permission_denied(refused, "case_outbox_id_seq")
        # Nobody but the owner creates objects.
        with pytest.raises(asyncpg.InsufficientPrivilegeError) as refused:
            await rolled_back(conn, "CREATE TABLE mine (x int)")
        assert_permission_denied(refused, "schema public")
    finally:
        await conn.close()
    assert allowed_seen == sum(len(ops) for ops in EXPECTED[role].values())
    assert refused_seen == len(TABLES) * len(OPERATIONS) - allowed_seen


async def test_only_the_signer_may_add_tree_heads(stack: Stack, database: str) -> None:
    holders = set()
    conn = await connect(stack, "postgres", database)
    try:
        for role in (OWNER, *SERVICE_ROLES):
            if await conn.fetchval(
                "SELECT has_table_privilege($1, 'audit_tree_head', 'INSERT')", role
            ):
                holders.add(role)
    finally:
        await conn.close()
    assert holders == {OWNER, SIGNER}


# --- each service's own statements, as that service runs them ----------------------------------


def audit_record(n: int, *, outcome: str = "received") -> AuditRecord:
    raw = orjson.dumps({"case_id": f"CASE-ROLES-{n}", "n": n})
    event_id = f"evt-roles-{uuid.uuid4().hex[:8]}"
    source = "urn:casebridge:agency:id-police-aht"
    return AuditRecord(
        event_id=event_id,
        event_source=source,
        event_type="org.casebridge.referral.submitted.v1",
        subject=f"CASE-ROLES-{n}",
        agency="id-police-aht",
        outcome=outcome,
        reason_code=None,
        kafka_topic="casebridge.in.id-police-aht",
        kafka_partition=0,
        kafka_offset=n,
        attributes={"ce_id": event_id, "ce_source": source},
        raw_value=raw,
        payload_digest=hashlib.sha256(raw).digest(),
        data_subject=f"case:CASE-ROLES-{n}",
        # What CaseBridge emitted is claimed in audit_emitted (a re-published copy is dropped).
        copy_digest=None if outcome == "received" else hashlib.sha256(raw + b"copy").digest(),
    )


AUDIT_VAULT = PersonVault(LocalKek(bytes(range(1, 33))))
"""The audit writer's vault: it creates and reads data keys (SELECT, INSERT on data_key)."""


async def test_intake_records_sightings_and_reads_nothing_else(
    pools: dict[str, Database],
) -> None:
    seen = SeenEvents(pools[INTAKE])
    sighting = Sighting(f"urn:test:{uuid.uuid4().hex}", "evt-1", "casebridge.in.x", 0, 7)
    assert await seen.first_sightings([sighting]) == [True]
    again = Sighting(sighting.source, sighting.event_id, sighting.topic, 0, 8)
    assert await seen.first_sightings([again]) == [False]
    for table in ("audit_log", "case_state", "audit_tree_head"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError) as refused:
            await pools[INTAKE].pool.fetch(f"SELECT * FROM {table} LIMIT 1")
        assert_permission_denied(refused, table)


async def test_the_audit_writer_appends_but_cannot_read_or_rewrite_the_log(
    pools: dict[str, Database],
) -> None:
    log = AuditLog(pools[AUDIT], AUDIT_VAULT, consumer=f"roles-{uuid.uuid4().hex[:6]}")
    # An inbound record and one CaseBridge emitted (claimed in audit_emitted).
    entries = await log.append_batch([audit_record(1), audit_record(2, outcome="routed")])
    assert len(entries) == 2
    writer = pools[AUDIT].pool
    with pytest.raises(asyncpg.InsufficientPrivilegeError) as refused:
        await writer.fetch("SELECT sealed_value FROM audit_log LIMIT 1")
    assert_permission_denied(refused, "audit_log")
    with pytest.raises(asyncpg.InsufficientPrivilegeError) as refused:
        await writer.execute("UPDATE audit_log SET outcome = 'forged' WHERE seq = $1", 0)
    assert_permission_denied(refused, "audit_log")
    with pytest.raises(asyncpg.InsufficientPrivilegeError) as refused:
        await writer.execute("DELETE FROM audit_log WHERE seq = $1", 0)
    assert_permission_denied(refused, "audit_log")
    with pytest.raises(asyncpg.InsufficientPrivilegeError) as refused:
        await writer.execute(
            "INSERT INTO audit_tree_head (tree_size, root_hash, timestamp_ms, signature, key_id)"
            " VALUES (1, $1, 0, $2, 'forged')",
            bytes(32),
            bytes(64),
        )
    assert_permission_denied(refused, "audit_tree_head")
    # The auditor sees what the writer wrote (positive control for the reads refused above).
    page = await find_events(pools[AUDITOR].pool, EventFilter(), limit=10_000)
    assert {e.event_id for e in entries} <= {row.event_id for row in page.items}


async def test_the_signer_signs_and_the_auditor_verifies_read_only(
    stack: Stack, database: str, pools: dict[str, Database]
) -> None:
    await AuditLog(
        pools[AUDIT], AUDIT_VAULT, consumer=f"roles-{uuid.uuid4().hex[:6]}"
    ).append_batch([audit_record(3), audit_record(4)])
    signer = TreeHeadSigner(pools[SIGNER].pool, KEY)
    await signer.start()
    await signer.poll()
    head = await signer.sign()
    assert head.tree_size >= 2
    assert (await screened_tree_heads(pools[AUDITOR].pool, KEY.public_key())).latest == head
    report = await verify_database(url(stack, AUDITOR, database), KEY.public_key())
    assert report.ok, report
    assert report.tree_size == head.tree_size
    # The signer cannot rewrite a head or the log, nor write the log at all.
    with pytest.raises(asyncpg.InsufficientPrivilegeError) as refused:
        await pools[SIGNER].pool.execute("DELETE FROM audit_tree_head")
    assert_permission_denied(refused, "audit_tree_head")
    with pytest.raises(asyncpg.InsufficientPrivilegeError) as refused:
        await pools[SIGNER].pool.execute(
            f"INSERT INTO audit_log ({', '.join(COLUMNS)}) SELECT {', '.join(COLUMNS)}"
            " FROM audit_log LIMIT 1"
        )
    assert_permission_denied(refused, "audit_log")
    # The auditor can add no head, even a validly signed one.
    with pytest.raises(asyncpg.InsufficientPrivilegeError) as refused:
        await pools[AUDITOR].pool.execute(
            "INSERT INTO audit_tree_head (tree_size, root_hash, timestamp_ms, signature, key_id)"
            " VALUES ($1, $2, $3, $4, $5)",
            head.tree_size + 1,
            head.root_hash,
            head.timestamp,
            head.signature,
            head.key_id,
        )
    assert_permission_denied(refused, "audit_tree_head")
    assert [h.tree_size for h in await all_tree_heads(pools[AUDITOR].pool)][-1] == head.tree_size


async def test_the_cases_role_runs_the_case_store_and_cannot_touch_the_audit(
    pools: dict[str, Database],
) -> None:
    case_id = f"CASE-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    pool = pools[CASES].pool
    vault = PersonVault(LocalKek(bytes(range(32))))
    async with pool.acquire() as conn, conn.transaction():
        assert await case_store.claim_message(conn, "urn:test", case_id)
        assert not await case_store.claim_message(conn, "urn:test", case_id)
        assert await case_store.load_case(conn, vault, case_id) is None
        # The rights save_case's and replace_deadlines' statements need, sealed with a data key.
        key = await case_store.case_key(conn, vault, case_id)
        await conn.execute(
            "INSERT INTO case_event (case_id, version, event_type, event, data_key_id)"
            " VALUES ($1, 1, 'T', $2, $3)",
            case_id,
            "{}",
            key.key_id,
        )
        await conn.execute(
            "INSERT INTO case_state (case_id, kind, state, version, owner, person_key,"
            " snapshot, updated_at, agencies)"
            " VALUES ($1, 'referral', 'open', 1, 'id-police-aht', 'pk', $2, $3, '{id-police-aht}')",
            case_id,
            "{}",
            now,
        )
        status = await conn.execute(
            "UPDATE case_state SET kind = $2, state = $3, version = $4, owner = $5,"
            " person_key = $6, snapshot = $7, updated_at = $8"
            " WHERE case_id = $1 AND version = $9",
            case_id,
            "referral",
            "accepted",
            2,
            "id-police-aht",
            "pk",
            "{}",
            now,
            1,
        )
        assert status == "UPDATE 1"
        assert await case_store.cases_with_person_key(conn, "pk", other_than="none") == [case_id]
        await conn.execute(
            "DELETE FROM case_deadline WHERE case_id = $1 AND raised_at IS NULL", case_id
        )
        await conn.execute(
            "INSERT INTO case_deadline (deadline_id, case_id, due_at, deadline)"
            " VALUES ($1, $2, $3, $4)",
            f"{case_id}-d",
            case_id,
            now - timedelta(days=1),
            "{}",
        )
        await conn.fetch(
            "SELECT deadline FROM case_deadline WHERE raised_at IS NULL AND due_at <= $1"
            " ORDER BY due_at FOR UPDATE SKIP LOCKED",
            now,
        )
        await case_store.mark_raised(conn, [f"{case_id}-d"], now)
        await case_store.add_to_outbox(
            conn,
            [Outgoing(topic="t", value=b"v", key=case_id.encode(), headers={"h": "1"})],
            {case_id: key},
        )
    async with pool.acquire() as conn:
        pending = await case_store.pending_outbox(conn, vault)
        assert [r for _, r in pending if r is not None and r.key == case_id.encode()]
        await case_store.delete_published(conn, [i for i, _ in pending])
        assert await conn.fetchval("SELECT count(*) FROM case_outbox") == 0
        with pytest.raises(asyncpg.InsufficientPrivilegeError) as refused:
            await conn.fetch("SELECT * FROM case_event")  # the log is append-only to it
        assert_permission_denied(refused, "case_event")
        with pytest.raises(asyncpg.InsufficientPrivilegeError) as refused:
            await conn.execute("DELETE FROM case_state WHERE case_id = $1", case_id)
        assert_permission_denied(refused, "case_state")
        for sql in (
            "SELECT * FROM audit_log LIMIT 1",
            "INSERT INTO audit_log DEFAULT VALUES",
            "UPDATE audit_log SET outcome = 'x' WHERE false",
            "DELETE FROM audit_log WHERE false",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError) as refused:
                await rolled_back(conn, sql)
            assert_permission_denied(refused, "audit_log")
    # `casebridge cases rebuild` (checking, not writing) as the read-only auditor.
    async with pools[AUDITOR].pool.acquire() as conn, conn.transaction():
        logs = await conn.fetchval("SELECT count(*) FROM case_event WHERE case_id = $1", case_id)
        assert logs == 1
        with pytest.raises(asyncpg.InsufficientPrivilegeError) as refused:
            await conn.execute("UPDATE case_state SET state = 'x' WHERE case_id = $1", case_id)
        assert_permission_denied(refused, "case_state")


async def test_cases_rebuild_check_runs_as_the_auditor(stack: Stack) -> None:
    name = await stack.create_database()  # no hand-made case rows: the fold must agree
    try:
        conn = await connect(stack, AUDITOR, name)
        try:
            async with conn.transaction():
                report = await rebuild(conn, PersonVault(LocalKek(bytes(32))), write=False)
        finally:
            await conn.close()
        assert report.ok
        assert report.cases == 0
    finally:
        await stack.drop_database(name)


# --- partitions added later -------------------------------------------------------------------


@pytest.fixture
async def fresh_database(stack: Stack) -> AsyncIterator[str]:
    name = await stack.create_database()
    yield name
    await stack.drop_database(name)


async def test_a_partition_added_later_needs_no_grant(stack: Stack, fresh_database: str) -> None:
    owner = await connect(stack, OWNER, fresh_database)
    try:
        # What a later migration (or a partition-maintenance job, run by the owner) does.
        await owner.execute(
            "CREATE TABLE audit_log_2099_01 PARTITION OF audit_log"
            " FOR VALUES FROM ('2099-01-01') TO ('2099-02-01')"
        )
    finally:
        await owner.close()
    recorded_at = datetime(2099, 1, 15, tzinfo=UTC)
    writer = Database(url(stack, AUDIT, fresh_database), max_size=1)
    await writer.start()
    try:
        # COPY through the parent, as services/audit/store.py writes.
        record = audit_record(0)
        row = (
            0,
            recorded_at,
            record.event_id,
            record.event_source,
            record.event_type,
            record.subject,
            record.agency,
            record.outcome,
            record.reason_code,
            record.kafka_topic,
            record.kafka_partition,
            record.kafka_offset,
            orjson.dumps(record.attributes).decode(),
            None,  # sealed_value: a record without a value
            None,  # data_key_id
            record.payload_digest,
            bytes(32),
            None,  # original_bytes: every text is exact
            2,  # leaf_version
        )
        async with writer.pool.acquire() as conn:
            await conn.copy_records_to_table("audit_log", columns=COLUMNS, records=[row])
            with pytest.raises(asyncpg.InsufficientPrivilegeError) as refused:
                await conn.copy_records_to_table(
                    "audit_log_2099_01", columns=COLUMNS, records=[row]
                )
            assert_permission_denied(refused, "audit_log_2099_01")
    finally:
        await writer.close()
    for role in (SIGNER, AUDITOR):
        reader = await connect(stack, role, fresh_database)
        try:
            located = await reader.fetchval(
                "SELECT tableoid::regclass::text FROM audit_log WHERE seq = 0"
            )
            assert located == "audit_log_2099_01"
            with pytest.raises(asyncpg.InsufficientPrivilegeError) as refused:
                await reader.fetch("SELECT * FROM audit_log_2099_01")
            assert_permission_denied(refused, "audit_log_2099_01")
        finally:
            await reader.close()
