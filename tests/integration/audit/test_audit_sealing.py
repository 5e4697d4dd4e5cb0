"""The audit log keeps no plaintext value: values are sealed per person, opened only with the
key-encryption key, and erasing a person's data key erases their values from the log while the
log, its proofs and its signed heads keep verifying.

Records go through the audit consumer's own path (`describe`, then `AuditLog.append_batch` as
the writer's role). Every value is synthetic.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from aiokafka import ConsumerRecord

from services.audit.api import MemoryQueryRecorder, create_api
from services.audit.cli import main
from services.audit.config import SCOPE_PAYLOAD, Auditor, AuditorRegistry, AuditSettings, token_hash
from services.audit.proof_checks import check_inclusion
from services.audit.queries import EventFilter, find_events
from services.audit.records import describe
from services.audit.signer import TreeHeadSigner
from services.audit.store import AuditLog
from services.audit.tree_head import SignedTreeHead, public_key_pem
from services.audit.verify_stored import read_tree_heads_file, verify_database, verify_export
from services.privacy.vault import PersonVault, case_subject
from services.runtime.database import Database, asyncpg_dsn
from tests.integration.audit.support import KEY, PUBLIC, AuditDb
from tests.support.stack import Stack

pytestmark = pytest.mark.postgres

ERASED, KEPT = "CASE-SEAL-ERASED", "CASE-SEAL-KEPT"
TOKEN = "sealing-full-token"
PERSONAL = {
    ERASED: ("Ardentia Quillfeather", "+62-000-555-0142", "Jalan Sintetis 17"),
    KEPT: ("Bertrand Nollwicket", "+62-000-555-0199", "Gang Contoh 3"),
}
"""Synthetic personal values, one person per case: nothing else in a record looks like them."""


def consumer_record(
    topic: str, offset: int, value: bytes | None, *, key: bytes | None = None, event_id: str = ""
) -> ConsumerRecord[Any, Any]:
    return ConsumerRecord(
        topic=topic,
        partition=0,
        offset=offset,
        timestamp=1_770_000_000_000,
        timestamp_type=0,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=0,
        headers=[
            ("ce_id", (event_id or f"evt-seal-{offset}").encode()),
            ("ce_source", b"urn:casebridge:agency:id-shelter-ngo"),
            ("ce_type", b"org.casebridge.referral.submitted.v1"),
            ("content-type", b"application/json"),
        ],
    )


def referral(case_id: str, n: int) -> bytes:
    name, phone, address = PERSONAL[case_id]
    return orjson.dumps(
        {
            "case_id": case_id,
            "reporting_agency": "id-shelter-ngo",
            "n": n,
            "person": {"name": name, "phone": phone, "address": address},
        }
    )


def rejected_value_b64(case_id: str) -> str:
    """A malformed referral's value as a dead-letter body carries it (base64)."""
    name, phone, _ = PERSONAL[case_id]
    original = f'{{"case_id": "{case_id}", "name": "{name}", "phone": "{phone}"'.encode()
    return base64.b64encode(original).decode()


def dead_letter(case_id: str) -> bytes:
    """A rejection carrying the original value of a malformed referral."""
    return orjson.dumps(
        {
            "error": {"code": "NOT_JSON"},
            "original": {
                "key_b64": base64.b64encode(case_id.encode()).decode(),
                "headers": [],
                "value_b64": rejected_value_b64(case_id),
            },
        }
    )


def log_records() -> list[ConsumerRecord[Any, Any]]:
    """Per case: three referrals, a plain-text note, a rejection; plus a record with no value."""
    records = []
    offset = 0
    for case_id in (ERASED, KEPT):
        name, phone, _ = PERSONAL[case_id]
        values = [referral(case_id, n) for n in range(3)]
        values.append(f"call {name} on {phone}".encode())  # not JSON: sealed by key
        for value in values:
            records.append(
                consumer_record("casebridge.in.id-shelter-ngo", offset, value, key=case_id.encode())
            )
            offset += 1
        records.append(
            consumer_record("casebridge.deadletter", offset, dead_letter(case_id), key=None)
        )
        offset += 1
    records.append(consumer_record("casebridge.routing.decisions", offset, None))
    return records


def readable(case_id: str) -> list[bytes]:
    """A person's values as a reader of the plaintext would find them: as UTF-8, and the
    rejected value as its dead-letter body carries it (base64)."""
    return [*(v.encode() for v in PERSONAL[case_id]), rejected_value_b64(case_id).encode()]


def stored_forms(case_id: str) -> list[bytes]:
    """Each readable form, and its hex spelling (how bytea prints as text)."""
    plain = readable(case_id)
    return [*plain, *(p.hex().encode() for p in plain)]


async def append_log(db: AuditDb) -> None:
    writer = Database(db.writer)
    await writer.start()
    try:
        log = AuditLog(writer, db.vault(), consumer="test.sealing")
        await log.append_batch([describe(r) for r in log_records()])
    finally:
        await writer.close()


async def sign(db: AuditDb, export_dir: Path) -> SignedTreeHead:
    pool = await asyncpg.create_pool(asyncpg_dsn(db.signer), min_size=1, max_size=1)
    try:
        signer = TreeHeadSigner(pool, KEY, export_dir=export_dir)
        await signer.start()
        await signer.poll()
        return await signer.sign()
    finally:
        await pool.close()


@pytest.fixture
async def sealed_log(audit_db: AuditDb, tmp_path: Path) -> AuditDb:
    await append_log(audit_db)
    await sign(audit_db, tmp_path)
    return audit_db


async def rows_as_owner(db: AuditDb) -> list[tuple[str, bytes]]:
    """Every column of every audit_log row as bytes (text, bytea, jsonb, numbers), plus each
    whole row in PostgreSQL's text form, which spells bytea in hex."""
    conn = await asyncpg.connect(asyncpg_dsn(db.owner))
    try:
        rows = await conn.fetch("SELECT * FROM audit_log ORDER BY seq")
        texts = await conn.fetch("SELECT a::text FROM audit_log a ORDER BY seq")
    finally:
        await conn.close()
    out: list[tuple[str, bytes]] = []
    for row in rows:
        for column, value in row.items():
            out.append((column, value if isinstance(value, bytes) else str(value).encode()))
    out += [("row", t[0].encode()) for t in texts]
    return out


def found(needles: Sequence[bytes], cells: Sequence[tuple[str, bytes]]) -> set[str]:
    return {column for column, cell in cells for n in needles if n in cell}


async def test_no_personal_value_is_stored_in_plain_text(audit_db: AuditDb) -> None:
    await append_log(audit_db)
    cells = await rows_as_owner(audit_db)
    assert {column for column, _ in cells} >= {"sealed_value", "data_key_id", "attributes"}
    assert found([*stored_forms(ERASED), *stored_forms(KEPT)], cells) == set()
    # Positive control: the same search over what the auditor's read opens finds them all.
    pool = await asyncpg.create_pool(asyncpg_dsn(audit_db.auditor), min_size=1, max_size=1)
    try:
        page = await find_events(pool, EventFilter(), limit=100, vault=audit_db.vault())
    finally:
        await pool.close()
    opened = [(str(r.seq), r.raw_value or b"") for r in page.items]
    for case_id in (ERASED, KEPT):
        assert all(found([p], opened) for p in readable(case_id)), case_id
    assert len(page.items) == 11
    assert page.items[-1].raw_value is None  # the record without a value


async def test_each_value_is_sealed_under_its_case_key(sealed_log: AuditDb) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(sealed_log.auditor))
    try:
        rows = await conn.fetch(
            "SELECT a.seq, k.subject FROM audit_log a LEFT JOIN data_key k"
            " ON k.key_id = a.data_key_id ORDER BY a.seq"
        )
    finally:
        await conn.close()
    subjects = [r["subject"] for r in rows]
    assert subjects == [case_subject(ERASED)] * 5 + [case_subject(KEPT)] * 5 + [None]


@asynccontextmanager
async def api_client(stack: Stack, db: AuditDb) -> AsyncIterator[httpx.AsyncClient]:
    """The API as deployed: the auditor's role, the vault the composition root builds."""
    database = Database(db.auditor)
    registry = AuditorRegistry({token_hash(TOKEN): Auditor("aud", frozenset({SCOPE_PAYLOAD}))})
    app = create_api(
        stack.settings(database=db.name),
        AuditSettings(),
        recorder=MemoryQueryRecorder(),
        database=database,
        auditors=registry,
        public_key=PUBLIC,
    )
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://audit",
                headers={"Authorization": f"Bearer {TOKEN}"},
            ) as client,
        ):
            yield client
    finally:
        await database.close()


async def erase(stack: Stack, db: AuditDb, case_id: str) -> None:
    """What the cases service does for an erasure request (its role may erase keys)."""
    conn = await asyncpg.connect(asyncpg_dsn(stack.url("casebridge_cases", db.name)))
    try:
        erasure = await db.vault().erase(
            conn, case_subject(case_id), reason="synthetic request", requested_by="dpo-test"
        )
    finally:
        await conn.close()
    assert erasure is not None


async def cli(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


async def test_an_erased_person_is_served_as_erased_and_the_log_still_verifies(
    stack: Stack,
    sealed_log: AuditDb,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    db = sealed_log
    # Before the erasure (the positive control): both people's values open and verify.
    async with api_client(stack, db) as client:
        before = (await client.get("/v1/events", params={"limit": 50})).json()["items"]
    assert [i["erased"] for i in before] == [False] * 11
    assert before[0]["payload"]["person"]["name"] == PERSONAL[ERASED][0]
    report = await verify_database(db.auditor, PUBLIC, kek=db.kek, workers=1)
    assert (report.ok, report.payloads_checked, report.erased) == (True, 11, 0), report.detail

    await erase(stack, db, ERASED)

    async with api_client(stack, db) as client:
        response = await client.get("/v1/events", params={"limit": 50})
        assert response.status_code == 200, response.text
        items = response.json()["items"]
        one = await client.get("/v1/events/1", params={"proof": "true"})
        export = await client.get(f"/v1/cases/{ERASED}/export")
    gone, kept = items[:5], items[5:]
    for item in gone:
        assert (item["erased"], item["payload"], item["raw_value"]) == (True, None, None)
        assert item["payload_digest"] == before[item["seq"]]["payload_digest"]
    for item in kept:
        assert item["erased"] is False
        assert base64.b64decode(item["raw_value"] or "") == base64.b64decode(
            before[item["seq"]]["raw_value"] or ""
        )
    assert kept[0]["payload"]["person"]["name"] == PERSONAL[KEPT][0]
    assert one.status_code == 200
    body = one.json()
    assert body["record"]["erased"] is True
    ok, message = check_inclusion(body["record"], body["inclusion_proof"], PUBLIC)
    assert ok, message  # an erased record still proves its place in the signed log
    lines = [orjson.loads(line) for line in export.text.splitlines()]
    # The case's own records (the rejection, keyless, is filed under no case id).
    assert [(r["seq"], r["erased"], r["raw_value"]) for r in lines] == [
        (s, True, None) for s in range(4)
    ]
    assert PERSONAL[ERASED][0] not in response.text + one.text + export.text

    # Full verification, from the database and from an export written outside it.
    report = await verify_database(db.auditor, PUBLIC, kek=db.kek, workers=1)
    assert (report.ok, report.payloads_checked, report.erased) == (True, 6, 5), report.detail
    assert "5 erased" in report.detail
    monkeypatch.setenv("CASEBRIDGE_RUN_DIR", str(db.secrets_dir.parent))
    monkeypatch.delenv("CASEBRIDGE_KEK", raising=False)
    key_file, out = tmp_path / "public.pem", tmp_path / "log.jsonl"
    key_file.write_text(public_key_pem(PUBLIC))
    heads = str(tmp_path / "tree-heads.jsonl")
    verify = ["verify", "--public-key", str(key_file), "--tree-heads", heads]
    assert await cli(*verify, "--database-url", db.auditor, "--json") == 0
    printed = orjson.loads(capsys.readouterr().out)
    assert (printed["ok"], printed["erased"], printed["payloads_checked"]) == (True, 5, 6)
    export_all = ["export", "--database-url", db.auditor, "--all", "--payload"]
    assert await cli(*export_all, "--output", str(out)) == 0
    exported = [orjson.loads(line) for line in out.read_text().splitlines()]
    assert [r["erased"] for r in exported] == [True] * 5 + [False] * 6
    assert all(r["raw_value"] is None for r in exported[:5])
    assert PERSONAL[ERASED][1] not in out.read_text()
    assert PERSONAL[KEPT][1] in out.read_text()  # the live person's values are exported
    report = verify_export(out, PUBLIC, read_tree_heads_file(Path(heads)))
    assert (report.ok, report.erased, report.payloads_checked) == (True, 5, 6), report.detail
    assert await cli(*verify, "--export", str(out)) == 0
    assert "5 erased" in capsys.readouterr().out


async def test_keys_of_a_batch_that_rolled_back_are_not_used_again(audit_db: AuditDb) -> None:
    """A batch that fails after its data key was created rolls the key back too: the writer
    must not go on sealing under a key that does not exist (nobody could ever open it)."""
    writer = Database(audit_db.writer)
    await writer.start()
    try:
        log = AuditLog(writer, audit_db.vault(), consumer="test.rollback")
        # Seq 0 is taken (as by another writer): the COPY fails, after the case's key was made.
        owner = await asyncpg.connect(asyncpg_dsn(audit_db.owner))
        try:
            await owner.execute("INSERT INTO audit_seq_range (seqs) VALUES ('[0,1)')")
            bad = consumer_record("casebridge.in.x", 0, referral(KEPT, 0))
            with pytest.raises(asyncpg.ExclusionViolationError):
                await log.append_batch([describe(bad)])
            await owner.execute("UPDATE audit_head SET next_seq = 1")
        finally:
            await owner.close()
        good = consumer_record("casebridge.in.x", 0, referral(KEPT, 0))
        await log.append_batch([describe(good)])
    finally:
        await writer.close()
    pool = await asyncpg.create_pool(asyncpg_dsn(audit_db.auditor), min_size=1, max_size=1)
    try:
        page = await find_events(pool, EventFilter(), vault=PersonVault(audit_db.kek()))
    finally:
        await pool.close()
    assert [r.raw_value for r in page.items] == [referral(KEPT, 0)]
