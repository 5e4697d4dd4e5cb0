"""The audit log's writer on the real database: any bytes are stored and still verify, a seq
is never used twice (the server refuses it), and only exact copies are taken for copies."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import orjson
import pytest
from aiokafka import ConsumerRecord
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from schemas.topics import ROUTING_DECISIONS
from services.audit.records import AuditRecord, decode_original, describe
from services.audit.signer import TreeHeadSigner
from services.audit.store import AuditLog
from services.audit.verify_stored import verify_database
from services.runtime.database import Database, asyncpg_dsn
from tests.integration.audit.support import COLUMNS, AuditDb, append, make_row

pytestmark = pytest.mark.postgres

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(3, 35)))
INBOUND = "casebridge.in.id-shelter-ngo"
HOSTILE_KEY = b"REF-\x00\xff"
HOSTILE_HEADERS: list[tuple[str, bytes | None]] = [
    ("ce_id", b"evt-\x00-hostile"),
    ("ce_source", b"urn:casebridge:agency:id-shelter-ngo:\xff"),
    ("ce_type", b"org.casebridge.referral.submitted.v1\x00"),
    ("ce_subject", b"\xc3\x28"),
    ("cb_agency", b"\x00"),
    ("cb_note", b"\x00" * 3000),
]


def consumer_record(
    topic: str,
    offset: int,
    *,
    key: bytes | None = b"REF-1",
    value: bytes | None = b'{"case_id": "REF-1"}',
    headers: Sequence[tuple[str, bytes | None]] = (),
) -> ConsumerRecord[Any, Any]:
    return ConsumerRecord(
        topic=topic,
        partition=0,
        offset=offset,
        timestamp=1_700_000_000_000,
        timestamp_type=0,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=0,
        headers=list(headers),
    )


@pytest.fixture
async def writer(audit_db: AuditDb) -> AsyncIterator[AuditLog]:
    db = Database(audit_db.writer, max_size=2)
    await db.start()
    try:
        yield AuditLog(db, audit_db.vault(), consumer="test-audit")
    finally:
        await db.close()


async def as_role(url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        rows: list[asyncpg.Record] = await conn.fetch(sql, *args)
        return rows
    finally:
        await conn.close()


# --- any bytes --------------------------------------------------------------------------------


async def test_a_record_of_any_bytes_is_appended_shown_exactly_and_verifies(
    audit_db: AuditDb, writer: AuditLog
) -> None:
    hostile = describe(
        consumer_record(INBOUND, 0, key=HOSTILE_KEY, value=b"\x00\xff", headers=HOSTILE_HEADERS)
    )
    behind = describe(consumer_record(INBOUND, 1, headers=[("ce_id", b"evt-behind")]))
    entries = await writer.append_batch([hostile, behind])
    assert [e.seq for e in entries] == [0, 1], "the record and the one behind it are in the log"

    rows = await as_role(
        audit_db.auditor,
        "SELECT seq, event_id, event_source, event_type, subject, agency,"
        " attributes::text AS attributes, original_bytes FROM audit_log ORDER BY seq",
    )
    first, second = rows
    assert first["event_id"] == "evt-\\x00-hostile"
    assert first["event_source"] == "urn:casebridge:agency:id-shelter-ngo:\\xff"
    assert first["subject"] == "\\xc3("
    assert orjson.loads(first["attributes"])["cb_note"] == "\\x00" * 256  # 1,024 chars
    key, headers = decode_original(first["original_bytes"])
    assert (key, headers) == (HOSTILE_KEY, HOSTILE_HEADERS), "shown exactly"
    assert second["event_id"] == "evt-behind"
    assert second["original_bytes"] is None, "an ordinary record keeps no second copy"

    # Verification, as an auditor runs it, recomputes each leaf from these stored columns.
    signer_pool = await asyncpg.create_pool(asyncpg_dsn(audit_db.signer), min_size=1, max_size=1)
    try:
        signer = TreeHeadSigner(signer_pool, KEY)
        await signer.start()
        await signer.poll()
        head = await signer.sign()
    finally:
        await signer_pool.close()
    assert head.tree_size == 2
    report = await verify_database(audit_db.auditor, KEY.public_key(), kek=audit_db.kek, workers=1)
    assert report.ok, report.detail
    assert report.payloads_checked == 2


# --- a seq is used once ----------------------------------------------------------------------


async def test_the_database_refuses_a_seq_used_twice(audit_db: AuditDb) -> None:
    await append(audit_db, [make_row(s) for s in range(5)])
    # The primary key is (seq, recorded_at): another month makes a row the key alone admits.
    again = make_row(3, day=45)
    for role_url in (audit_db.writer, audit_db.owner):
        with pytest.raises(asyncpg.ExclusionViolationError) as refused:
            await _copy(role_url, [again.values])
        assert "audit_seq_used_once" in str(refused.value)
    with pytest.raises(asyncpg.ExclusionViolationError):
        await _copy(audit_db.writer, [make_row(5).values, make_row(5, day=45).values])
    # Positive control: the next seq, once, is accepted from the same roles.
    await _copy(audit_db.writer, [make_row(5).values])
    await _copy(audit_db.owner, [make_row(6, day=45).values])
    seqs = await as_role(audit_db.auditor, "SELECT seq FROM audit_log ORDER BY seq")
    assert [r["seq"] for r in seqs] == list(range(7))


async def test_the_writer_cannot_release_a_claimed_seq(audit_db: AuditDb) -> None:
    await append(audit_db, [make_row(0)])
    for sql in (
        "DELETE FROM audit_seq_range",
        "UPDATE audit_seq_range SET seqs = 'empty'",
        "TRUNCATE audit_seq_range",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await as_role(audit_db.writer, sql)
    claims = await as_role(audit_db.owner, "SELECT seqs FROM audit_seq_range")
    assert [(r["seqs"].lower, r["seqs"].upper) for r in claims] == [(0, 1)]


async def _copy(url: str, rows: list[tuple[object, ...]]) -> None:
    """COPY rows as support.make_row makes them (values unsealed: no test here reads them)."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.copy_records_to_table("audit_log", columns=COLUMNS, records=rows)
    finally:
        await conn.close()


# --- copies ----------------------------------------------------------------------------------

DECISION_HEADERS: list[tuple[str, bytes | None]] = [
    ("ce_id", b"decision-1"),
    ("ce_source", b"casebridge/router"),
    ("ce_type", b"org.casebridge.routing.decision.v1"),
    ("ce_time", b"2026-12-03T10:00:00+00:00"),
]


def decision(offset: int, value: bytes, *, time: bytes = b"") -> AuditRecord:
    headers = [(n, time if n == "ce_time" and time else v) for n, v in DECISION_HEADERS]
    return describe(consumer_record(ROUTING_DECISIONS.name, offset, value=value, headers=headers))


async def test_a_record_written_first_under_its_id_does_not_hide_it(
    audit_db: AuditDb, writer: AuditLog
) -> None:
    forged = decision(0, b'{"case_id": "REF-1", "deliveries": []}')
    real = decision(1, b'{"case_id": "REF-1", "deliveries": [{"agency": "id-shelter-ngo"}]}')
    assert (forged.event_id, forged.event_source) == (real.event_id, real.event_source)
    await writer.append_batch([forged])
    await writer.append_batch([real])
    rows = await as_role(
        audit_db.auditor, "SELECT kafka_offset, payload_digest FROM audit_log ORDER BY seq"
    )
    assert [(r["kafka_offset"], bytes(r["payload_digest"])) for r in rows] == [
        (0, forged.payload_digest),
        (1, real.payload_digest),
    ], "the real record is in the log"


async def test_a_re_published_copy_is_logged_once(audit_db: AuditDb, writer: AuditLog) -> None:
    """Positive control for the test above: what is dropped is the same record, again."""
    value = b'{"case_id": "REF-1", "deliveries": []}'
    await writer.append_batch([decision(0, value)])
    # After a crash the service publishes it again (a new offset, its decision time anew),
    # and within one batch twice.
    again = decision(1, value, time=b"2026-12-03T10:00:07+00:00")
    assert await writer.append_batch([again, decision(2, value)]) == []
    other = decision(3, value + b" ")
    assert [e.kafka_offset for e in await writer.append_batch([other])] == [3]
