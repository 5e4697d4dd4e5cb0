"""Tampering with the stored audit log, as its owner with the append-only triggers off, is
detected and the first divergent seq is named; no service role (the writer, the signer, the
auditors' read-only role) can tamper at all, and each can add only what its service adds.

The log: 40 records, each value sealed under its case's data key, tree heads signed at sizes
10, 20 and 40 (files exported outside the database). Each test verifies the intact log first,
so a failure cannot come from the setup. The tamperer owns the tables but not the
key-encryption key: it can move, alter or drop sealed values, not seal new ones.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest
from aiokafka import ConsumerRecord

from services.audit.canonical import entry_leaf_hash
from services.audit.cli import main as cli_main
from services.audit.queries import LEAF_COLUMN_NAMES, LogIntegrityError, entry_from_row
from services.audit.records import describe
from services.audit.sealed import seal_value
from services.audit.signer import TreeHeadSigner
from services.audit.store import AuditLog
from services.audit.tree_head import HEAD_BAD_SIGNATURE, key_id, public_key_pem
from services.audit.verify_entries import (
    DUPLICATE_SEQ,
    GAP,
    ROOT_MISMATCH,
    SIZE_MISMATCH,
    VerificationReport,
)
from services.audit.verify_stored import (
    PAYLOAD_MISMATCH,
    SEALED_VALUE_BROKEN,
    read_leaf_hashes_file,
    read_tree_heads_file,
    verify_against_latest,
    verify_database,
)
from services.runtime.database import Database, asyncpg_dsn
from tests.integration.audit.support import (
    COLUMNS,
    KEY,
    PUBLIC,
    AuditDb,
    Row,
    make_row,
    seed_and_sign,
)

pytestmark = pytest.mark.postgres

Tamper = Callable[[asyncpg.Connection], Awaitable[None]]


async def as_owner(db: AuditDb, tamper: Tamper) -> None:
    """Run `tamper` as the table owner with the append-only triggers disabled."""
    conn = await asyncpg.connect(asyncpg_dsn(db.owner))
    try:
        async with conn.transaction():
            await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
            await tamper(conn)
            await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER USER")
    finally:
        await conn.close()


async def verify(
    db: AuditDb, export_dir: Path, *, leaves: bool, values: bool = True
) -> VerificationReport:
    """Verify as an auditor would; `values`: with the KEK, so sealed values are opened too."""
    return await verify_database(
        db.auditor,
        PUBLIC,
        tree_heads=read_tree_heads_file(export_dir / "tree-heads.jsonl"),
        leaf_hashes=read_leaf_hashes_file(export_dir / "leaf-hashes.bin") if leaves else None,
        kek=db.kek if values else None,
        workers=1,
    )


@pytest.fixture
async def signed(audit_db: AuditDb, tmp_path: Path) -> AuditDb:
    await seed_and_sign(audit_db, tmp_path)
    for leaves in (False, True):
        report = await verify(audit_db, tmp_path, leaves=leaves)
        assert report.ok, report.detail
        assert (report.tree_size, report.payloads_checked, report.erased) == (40, 40, 0)
    return audit_db


def leaf_of(seq: int, row: asyncpg.Record) -> bytes:
    """The leaf hash a careful tamperer stores for a changed row (in the row's format)."""
    values = [seq, *(row[c] for c in LEAF_COLUMN_NAMES[1:])]
    return entry_leaf_hash(entry_from_row(values))


async def insert(conn: asyncpg.Connection, row: Row) -> None:
    placeholders = ", ".join(f"${i}" for i in range(1, len(COLUMNS) + 1))
    await conn.execute(
        f"INSERT INTO audit_log ({', '.join(COLUMNS)}) VALUES ({placeholders})", *row.values
    )


# --- naive tampering: rows changed, their stored leaf hashes left alone ---------------------


async def change_leaf_field(conn: asyncpg.Connection) -> None:
    await conn.execute(
        "UPDATE audit_log SET event_type = 'org.casebridge.forged.v1' WHERE seq = 17"
    )


async def change_agency(conn: asyncpg.Connection) -> None:
    """An auditor filters by agency: moving a record to another agency hides it there."""
    await conn.execute("UPDATE audit_log SET agency = 'id-shelter-ngo' WHERE seq = 17")


async def change_attribute(conn: asyncpg.Connection) -> None:
    await conn.execute(
        "UPDATE audit_log SET attributes = jsonb_set(attributes, '{ce_type}', '\"forged\"')"
        " WHERE seq = 17"
    )


async def add_original_bytes(conn: asyncpg.Connection) -> None:
    await conn.execute("UPDATE audit_log SET original_bytes = '\\x00ff' WHERE seq = 17")


async def call_it_v1(conn: asyncpg.Connection) -> None:
    """Relabelled v1, so that its agency and attributes would no longer be covered."""
    await conn.execute("UPDATE audit_log SET leaf_version = 1 WHERE seq = 17")


async def change_payload(conn: asyncpg.Connection) -> None:
    """One bit of the sealed value flipped: without the data key, all a tamperer can do."""
    sealed = bytearray(await conn.fetchval("SELECT sealed_value FROM audit_log WHERE seq = 23"))
    sealed[-20] ^= 1
    await conn.execute("UPDATE audit_log SET sealed_value = $1 WHERE seq = 23", bytes(sealed))


async def delete_row(conn: asyncpg.Connection) -> None:
    await conn.execute("DELETE FROM audit_log WHERE seq = 12")


async def insert_duplicate(conn: asyncpg.Connection) -> None:
    """A forged record claiming an existing seq (the PK includes recorded_at, so it fits);
    without a value, since the tamperer cannot seal one."""
    await insert(conn, make_row(30, case="CASE-FORGED", day=-1, raw=None))


async def swap_rows(conn: asyncpg.Connection) -> None:
    """Rows 5 and 9 exchange everything but their seq."""
    await conn.execute("""
        UPDATE audit_log a SET
            event_id = b.event_id, event_source = b.event_source, event_type = b.event_type,
            subject = b.subject, agency = b.agency, kafka_partition = b.kafka_partition,
            kafka_offset = b.kafka_offset, attributes = b.attributes,
            sealed_value = b.sealed_value, data_key_id = b.data_key_id,
            payload_digest = b.payload_digest, leaf_hash = b.leaf_hash
        FROM audit_log b
        WHERE (a.seq, b.seq) IN ((5, 9), (9, 5))""")


async def truncate_tail(conn: asyncpg.Connection) -> None:
    await conn.execute("DELETE FROM audit_log WHERE seq >= 33")


@pytest.mark.parametrize("leaves", [False, True], ids=["db-only", "with-leaf-file"])
@pytest.mark.parametrize(
    ("tamper", "problem", "seq"),
    [
        (change_leaf_field, ROOT_MISMATCH, 17),
        (change_agency, ROOT_MISMATCH, 17),
        (change_attribute, ROOT_MISMATCH, 17),
        (add_original_bytes, ROOT_MISMATCH, 17),
        (call_it_v1, ROOT_MISMATCH, 17),
        (change_payload, SEALED_VALUE_BROKEN, 23),
        (delete_row, GAP, 12),
        (insert_duplicate, None, 30),
        (swap_rows, ROOT_MISMATCH, 5),
        (truncate_tail, SIZE_MISMATCH, 33),
    ],
    ids=[
        "leaf-field",
        "agency",
        "attribute",
        "original-bytes",
        "leaf-version",
        "payload",
        "delete",
        "insert",
        "swap",
        "truncate-tail",
    ],
)
async def test_tampering_is_detected_and_the_seq_named(
    signed: AuditDb,
    tmp_path: Path,
    tamper: Tamper,
    problem: str | None,
    seq: int,
    leaves: bool,
) -> None:
    await as_owner(signed, tamper)
    report = await verify(signed, tmp_path, leaves=leaves)
    assert not report.ok
    assert report.first_divergent_seq == seq, report.detail
    if problem is not None:
        assert report.problem == problem, report.detail
    else:  # a forged duplicate sorts before or after the real row: either way seq 30
        assert report.problem in (DUPLICATE_SEQ, ROOT_MISMATCH), report.detail
    assert report.intact_prefix <= seq


# --- sealed values: bound to their row, opened only with the data key ----------------------


def swap_values(a: int, b: int) -> Tamper:
    async def tamper(conn: asyncpg.Connection) -> None:
        await conn.execute(
            """UPDATE audit_log x SET sealed_value = y.sealed_value, data_key_id = y.data_key_id
            FROM audit_log y WHERE (x.seq, y.seq) IN (($1, $2), ($2, $1))""",
            a,
            b,
        )

    return tamper


@pytest.mark.parametrize(
    ("a", "b"),
    [(3, 6), (7, 8)],
    ids=["same-person", "different-people"],
)
async def test_a_sealed_value_swapped_between_rows_is_named(
    signed: AuditDb, tmp_path: Path, a: int, b: int
) -> None:
    """Rows 3 and 6 are the same case (one data key): only the row binding catches that swap.
    The leaves are untouched, so it is the value check alone that sees it."""
    await as_owner(signed, swap_values(a, b))
    report = await verify(signed, tmp_path, leaves=True)
    assert (report.ok, report.problem, report.first_divergent_seq) == (
        False,
        SEALED_VALUE_BROKEN,
        a,
    ), report.detail
    assert f"seq {a}: sealed value does not open" in report.detail
    # Without the KEK the leaves and heads still verify: the swap is invisible to them.
    assert (await verify(signed, tmp_path, leaves=True, values=False)).ok


async def test_a_value_resealed_under_the_right_key_is_a_payload_mismatch(
    signed: AuditDb, tmp_path: Path
) -> None:
    """Someone holding the data key (hence the KEK) seals other content for the right row:
    it opens, and no longer hashes to the digest its signed leaf holds."""
    conn = await asyncpg.connect(asyncpg_dsn(signed.auditor))
    try:
        key_id = await conn.fetchval("SELECT data_key_id FROM audit_log WHERE seq = 14")
        data_key = (await signed.vault().keys_by_id(conn, [key_id]))[key_id]
    finally:
        await conn.close()
    assert data_key is not None
    forged = seal_value(data_key, b'{"case_id":"CASE-C","n":"forged"}', 14)

    async def reseal(conn: asyncpg.Connection) -> None:
        await conn.execute("UPDATE audit_log SET sealed_value = $1 WHERE seq = 14", forged)

    await as_owner(signed, reseal)
    report = await verify(signed, tmp_path, leaves=False)
    assert (report.problem, report.first_divergent_seq) == (PAYLOAD_MISMATCH, 14), report.detail


async def test_a_value_dropped_or_pointed_at_no_key_is_named(
    signed: AuditDb, tmp_path: Path
) -> None:
    async def drop_and_misdirect(conn: asyncpg.Connection) -> None:
        await conn.execute("ALTER TABLE audit_log DROP CONSTRAINT audit_log_sealed_with_a_key")
        await conn.execute("UPDATE audit_log SET sealed_value = NULL WHERE seq = 33")
        await conn.execute("UPDATE audit_log SET data_key_id = 999999 WHERE seq = 21")

    await as_owner(signed, drop_and_misdirect)
    report = await verify(signed, tmp_path, leaves=False)
    assert (report.problem, report.first_divergent_seq) == (SEALED_VALUE_BROKEN, 21), report.detail
    assert "seq 21" in report.detail


# --- a careful tamperer also rewrites the stored leaf hashes ---------------------------------


async def rewrite_consistently(conn: asyncpg.Connection) -> None:
    """Change record 26 and store the leaf hash that matches the change."""
    await conn.execute("UPDATE audit_log SET subject = 'CASE-HIDDEN' WHERE seq = 26")
    row = await conn.fetchrow("SELECT * FROM audit_log WHERE seq = 26")
    await conn.execute("UPDATE audit_log SET leaf_hash = $1 WHERE seq = 26", leaf_of(26, row))


async def insert_and_renumber(conn: asyncpg.Connection) -> None:
    """Insert a forged record at seq 15, renumber the rest and rehash every moved record."""
    await conn.execute("UPDATE audit_log SET seq = seq + 1 WHERE seq >= 15")
    await insert(conn, make_row(15, case="CASE-FORGED", raw=None))
    for row in await conn.fetch("SELECT * FROM audit_log WHERE seq > 15"):
        await conn.execute(
            "UPDATE audit_log SET leaf_hash = $1 WHERE seq = $2 AND event_id = $3",
            leaf_of(row["seq"], row),
            row["seq"],
            row["event_id"],
        )
    await conn.execute("UPDATE audit_head SET next_seq = 41")


@pytest.mark.parametrize(
    ("tamper", "seq", "between"),
    [(rewrite_consistently, 26, (20, 40)), (insert_and_renumber, 15, (10, 20))],
    ids=["rewrite", "insert-renumber"],
)
async def test_consistent_rewrites_are_pinned_by_the_exported_leaves(
    signed: AuditDb, tmp_path: Path, tamper: Tamper, seq: int, between: tuple[int, int]
) -> None:
    await as_owner(signed, tamper)
    # Signed heads alone: detected, and narrowed down to one signing interval.
    report = await verify(signed, tmp_path, leaves=False, values=False)
    assert not report.ok
    assert (report.intact_prefix, report.divergent_before) == between, report.detail
    # With the signer's exported leaf hashes: the exact record.
    report = await verify(signed, tmp_path, leaves=True)
    assert not report.ok
    assert (report.problem, report.first_divergent_seq) == (ROOT_MISMATCH, seq), report.detail


async def test_the_signer_refuses_to_sign_over_tampering(signed: AuditDb, tmp_path: Path) -> None:
    await as_owner(signed, rewrite_consistently)
    pool = await asyncpg.create_pool(asyncpg_dsn(signed.signer), min_size=1, max_size=1)
    try:
        with pytest.raises(LogIntegrityError) as caught:
            await TreeHeadSigner(pool, KEY, export_dir=tmp_path).start()
        assert caught.value.seq == 40  # the head of size 40 no longer matches
        # Without the exported files it still checks the heads in the table.
        with pytest.raises(LogIntegrityError):
            await TreeHeadSigner(pool, KEY).start()
    finally:
        await pool.close()


async def test_verify_against_latest_uses_the_exported_files(
    signed: AuditDb, tmp_path: Path
) -> None:
    report = await verify_against_latest(
        signed.auditor,
        PUBLIC,
        tree_heads_file=tmp_path / "tree-heads.jsonl",
        leaf_hashes_file=tmp_path / "leaf-hashes.bin",
    )
    assert report.ok
    assert report.tree_size == 40
    missing = await verify_against_latest(
        signed.auditor, PUBLIC, leaf_hashes_file=tmp_path / "no-such-file.bin"
    )
    assert missing.ok
    await as_owner(signed, rewrite_consistently)
    report = await verify_against_latest(
        signed.auditor, PUBLIC, leaf_hashes_file=tmp_path / "leaf-hashes.bin"
    )
    assert (report.ok, report.first_divergent_seq) == (False, 26)


async def test_a_dropped_latest_head_is_caught_by_the_exported_file(
    signed: AuditDb, tmp_path: Path
) -> None:
    """Truncating the tail *and* the newest head in the table does not hide the truncation
    from a verifier holding the exported heads."""

    async def truncate_both(conn: asyncpg.Connection) -> None:
        await conn.execute("DELETE FROM audit_log WHERE seq >= 20")
        await conn.execute("ALTER TABLE audit_tree_head DISABLE TRIGGER USER")
        await conn.execute("DELETE FROM audit_tree_head WHERE tree_size > 20")

    await as_owner(signed, truncate_both)
    assert (await verify_database(signed.auditor, PUBLIC, workers=1)).ok  # the table alone: fooled
    report = await verify(signed, tmp_path, leaves=False)
    assert (report.ok, report.problem, report.first_divergent_seq) == (False, SIZE_MISMATCH, 20)


FORGED_HEAD = (
    "INSERT INTO audit_tree_head (tree_size, root_hash, timestamp_ms, signature, key_id)"
    " VALUES (41, $1, 1, $2, $3)",
    hashlib.sha256(b"x").digest(),
    bytes(64),
    "0" * 64,
)
"""A head of size 41 that no key signed."""


async def test_forged_heads_are_ignored_and_reported_by_verify(
    signed: AuditDb, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Heads no key signed, in the table (the signer's role may add heads, the owner too):
    one just past the log, one far beyond it. Neither becomes the head the log is checked
    against, neither fails the verification, and both are named in the report."""
    before = await verify(signed, tmp_path, leaves=True)
    assert (before.ok, before.tree_size, before.rejected_heads) == (True, 40, ())
    conn = await asyncpg.connect(asyncpg_dsn(signed.signer))
    try:
        await conn.execute(*FORGED_HEAD)
    finally:
        await conn.close()

    async def forge_as_owner(conn: asyncpg.Connection) -> None:
        await conn.execute(
            FORGED_HEAD[0].replace("(41,", "(1000000,"), *FORGED_HEAD[1:3], key_id(PUBLIC)
        )

    await as_owner(signed, forge_as_owner)
    report = await verify(signed, tmp_path, leaves=True)
    assert (report.ok, report.tree_size, report.problem) == (True, 40, None), report.detail
    assert [(r.head.tree_size, r.reason) for r in report.rejected_heads] == [
        (41, HEAD_BAD_SIGNATURE),
        (1000000, HEAD_BAD_SIGNATURE),
    ]
    assert "ignored 2 tree head(s)" in report.detail
    # The table's heads alone, as `casebridge audit verify` reads them.
    key_file = tmp_path / "public.pem"
    key_file.write_text(public_key_pem(PUBLIC))
    verify_cli = ["verify", "--public-key", str(key_file), "--database-url", signed.auditor]
    code = await asyncio.to_thread(cli_main, [*verify_cli, "--no-payloads"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.startswith("ok: 40 records match the signed root")
    assert "ignored tree head of size 41 (bad_signature)" in out
    assert "ignored tree head of size 1000000 (bad_signature)" in out


async def test_v1_records_still_verify_and_v2_records_cover_agency_and_attributes(
    audit_db: AuditDb, tmp_path: Path
) -> None:
    """A log begun before leaf format v2 (records 0..19 v1) and continued after it (20..39)
    verifies whole. A v1 record's agency was never covered, so changing it goes unnoticed,
    as the format says; a v2 record's is named."""
    await seed_and_sign(audit_db, tmp_path, version_of=lambda seq: 1 if seq < 20 else 2)
    report = await verify(audit_db, tmp_path, leaves=False)
    assert (report.ok, report.tree_size) == (True, 40), report.detail

    async def move_v1(conn: asyncpg.Connection) -> None:
        await conn.execute("UPDATE audit_log SET agency = 'elsewhere' WHERE seq = 12")

    await as_owner(audit_db, move_v1)
    assert (await verify(audit_db, tmp_path, leaves=False)).ok  # v1: not covered

    async def move_v2(conn: asyncpg.Connection) -> None:
        await conn.execute("UPDATE audit_log SET agency = 'elsewhere' WHERE seq = 32")

    await as_owner(audit_db, move_v2)
    report = await verify(audit_db, tmp_path, leaves=True)
    assert (report.ok, report.problem, report.first_divergent_seq) == (False, ROOT_MISMATCH, 32)


# --- no service role can rewrite anything, nor add what its service does not add -------------

REWRITES = (
    "UPDATE audit_log SET agency = 'x' WHERE seq = 1",
    "DELETE FROM audit_log WHERE seq = 1",
    "TRUNCATE audit_log",
    "UPDATE audit_tree_head SET tree_size = 1",
    "DELETE FROM audit_tree_head",
    "TRUNCATE audit_tree_head",
    "ALTER TABLE audit_log DISABLE TRIGGER USER",
    "ALTER TABLE audit_tree_head DISABLE TRIGGER USER",
)


async def refused(url: str, statement: str, *args: object) -> bool:
    """Whether the server refuses `statement` to the role of `url` for want of privilege."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute(statement, *args)
    except asyncpg.InsufficientPrivilegeError:
        return True
    finally:
        await conn.close()
    return False


@pytest.mark.parametrize("role", ["writer", "signer", "auditor"])
async def test_no_service_role_can_rewrite_the_log(
    signed: AuditDb, tmp_path: Path, role: str
) -> None:
    url = getattr(signed, role)
    allowed = [statement for statement in REWRITES if not await refused(url, statement)]
    assert allowed == []
    report = await verify(signed, tmp_path, leaves=True)
    assert (report.ok, report.tree_size) == (True, 40), report.detail


async def test_each_role_adds_only_what_its_service_adds(signed: AuditDb) -> None:
    """The writer appends records (support.append), the signer heads (FORGED_HEAD, above):
    neither may add the other's, and the auditors' role may add nothing."""
    record = make_row(40)
    add_record = (
        f"INSERT INTO audit_log ({', '.join(COLUMNS)})"
        f" VALUES ({', '.join(f'${i}' for i in range(1, len(COLUMNS) + 1))})",
        *record.values,
    )
    refusals = {
        ("signer", "audit_log"): await refused(signed.signer, *add_record),
        ("writer", "audit_tree_head"): await refused(signed.writer, *FORGED_HEAD),
        ("auditor", "audit_log"): await refused(signed.auditor, *add_record),
        ("auditor", "audit_tree_head"): await refused(signed.auditor, *FORGED_HEAD),
        ("auditor", "audit_head"): await refused(
            signed.auditor, "UPDATE audit_head SET next_seq = 0 WHERE id = 1"
        ),
    }
    assert refusals == dict.fromkeys(refusals, True)
    assert await refused(signed.signer, *FORGED_HEAD) is False  # the positive control


async def test_the_owner_is_stopped_by_the_triggers(signed: AuditDb) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(signed.owner))
    try:
        for statement in (
            "UPDATE audit_log SET agency = 'x' WHERE seq = 1",
            "DELETE FROM audit_log WHERE seq = 1",
            "TRUNCATE audit_log",
            "DELETE FROM audit_tree_head",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await conn.execute(statement)
    finally:
        await conn.close()


async def test_records_the_writer_logs_are_v2_so_their_agency_and_bytes_are_covered(
    audit_db: AuditDb, tmp_path: Path
) -> None:
    """Through the real writer (`AuditLog`): the rows are v2, they verify, and changing the
    agency of one, or the exact bytes kept for a header that is not UTF-8, is named."""
    headers = [("ce_id", b"evt-w"), ("ce_source", b"urn:x"), ("ce_type", b"org.t.v1")]
    records = [
        ConsumerRecord(
            topic="casebridge.in.id-shelter-ngo",
            partition=0,
            offset=n,
            timestamp=1_770_000_000_000,
            timestamp_type=0,
            key=b"CASE-W",
            value=b'{"case_id": "CASE-W", "reporting_agency": "id-shelter-ngo"}',
            checksum=None,
            serialized_key_size=0,
            serialized_value_size=0,
            headers=[*headers, ("cb_note", b"\xff" if n == 2 else b"ok")],
        )
        for n in range(4)
    ]
    writer = Database(audit_db.writer)
    await writer.start()
    try:
        log = AuditLog(writer, audit_db.vault(), consumer="test.v2")
        await log.append_batch([describe(r) for r in records])
    finally:
        await writer.close()
    await seed_and_sign(audit_db, tmp_path, sizes=(4,), rows=False)
    conn = await asyncpg.connect(asyncpg_dsn(audit_db.auditor))
    try:
        stored = await conn.fetch("SELECT leaf_version, original_bytes FROM audit_log ORDER BY seq")
    finally:
        await conn.close()
    assert [r["leaf_version"] for r in stored] == [2, 2, 2, 2]
    assert [r["original_bytes"] is not None for r in stored] == [False, False, True, False]
    assert (await verify(audit_db, tmp_path, leaves=True)).ok

    async def alter(conn: asyncpg.Connection) -> None:
        await conn.execute("UPDATE audit_log SET original_bytes = '\\x00' WHERE seq = 2")

    await as_owner(audit_db, alter)
    report = await verify(audit_db, tmp_path, leaves=True)
    assert (report.problem, report.first_divergent_seq) == (ROOT_MISMATCH, 2), report.detail
