"""Synthetic audit records written the way the audit consumer writes them (values sealed per
case through the person vault), and the signer, each as its own database role."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import asyncpg
import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.audit.canonical import (
    AuditEntry,
    canonical_attributes,
    entry_leaf_hash,
    original_digest,
)
from services.audit.sealed import seal_value
from services.audit.signer import TreeHeadSigner
from services.audit.store import COLUMNS
from services.audit.tree_head import SignedTreeHead
from services.audit.verify_stored import KekLoader
from services.privacy.keys import load_kek
from services.privacy.vault import PersonVault, case_subject
from services.runtime.credentials import service_role
from services.runtime.database import asyncpg_dsn

CASES = ("CASE-A", "CASE-B", "CASE-C")
AGENCIES = ("id-police-aht", "id-shelter-ngo", "th-police-aht")
TYPES = ("org.casebridge.referral.submitted.v1", "org.casebridge.sar.alert.v1")
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
PUBLIC = KEY.public_key()
T0 = datetime(2026, 3, 30, 12, 0, tzinfo=UTC)

WRITER_ROLE = service_role("audit")
SIGNER_ROLE = service_role("signer")


@dataclass(frozen=True)
class AuditDb:
    """A database of the test's own, with a URL (password included) per role."""

    name: str
    owner: str
    """The table owner (casebridge_owner): can disable the append-only triggers, i.e. the
    tamperer."""
    writer: str
    """The audit consumer's role (casebridge_audit): INSERT on audit_log and the sequence
    counter, nothing to read the log back or change it."""
    signer: str
    """The signer's role (casebridge_signer): reads the log, adds tree heads."""
    auditor: str
    """The read-only role (casebridge_auditor): the auditors' API, verify, proofs, export."""
    secrets_dir: Path
    """The stack's deployment secrets: its key-encryption key is `keys/kek` there."""

    @property
    def kek(self) -> KekLoader:
        return partial(load_kek, secrets_dir=self.secrets_dir)

    def vault(self) -> PersonVault:
        return PersonVault(self.kek())


SEALED, KEY_ID = COLUMNS.index("sealed_value"), COLUMNS.index("data_key_id")


@dataclass(frozen=True)
class Row:
    values: tuple[object, ...]
    """In `COLUMNS` order, with `sealed_value` and `data_key_id` NULL: `append` seals."""
    raw: bytes | None
    case: str

    @property
    def seq(self) -> int:
        seq = self.values[0]
        assert isinstance(seq, int)
        return seq

    def sealed(self, key_id: int, data_key: bytes) -> tuple[object, ...]:
        """The values with the raw value sealed as the audit consumer seals it."""
        assert self.raw is not None
        values = list(self.values)
        values[SEALED], values[KEY_ID] = seal_value(data_key, self.raw, self.seq), key_id
        return tuple(values)


def make_row(
    seq: int,
    *,
    case: str | None = None,
    raw: bytes | None = b"",
    day: int = 0,
    version: int = 2,
    original: bytes | None = None,
) -> Row:
    """Record `seq`: cases, agencies and types cycle; times cross a month boundary so two
    partitions are used. `raw=b""` means a JSON payload, None a record without a value.
    `version`: the leaf format, 2 as the writer logs today or 1 as it did before 0017."""
    case = case if case is not None else CASES[seq % len(CASES)]
    agency = AGENCIES[seq % len(AGENCIES)]
    event_type = TYPES[seq % len(TYPES)]
    recorded_at = T0 + timedelta(days=day, hours=seq)
    if raw == b"":
        raw = orjson.dumps(
            {"case_id": case, "reporting_agency": agency, "n": seq, "note": "sÿnthetic"}
        )
    digest = hashlib.sha256(raw or b"").digest()
    event_id = f"evt-{seq:04d}"
    source = f"urn:casebridge:agency:{agency}"
    topic = "casebridge.in.id-shelter-ngo"
    attributes = {"ce_id": event_id, "ce_source": source, "ce_type": event_type}
    entry = AuditEntry(
        seq=seq,
        event_id=event_id,
        event_source=source,
        event_type=event_type,
        subject=case,
        kafka_topic=topic,
        kafka_partition=seq % 3,
        kafka_offset=seq,
        recorded_at=recorded_at,
        outcome="received",
        reason_code=None,
        payload_digest=digest,
        **(
            {
                "agency": agency,
                "attributes": canonical_attributes(attributes),
                "original_digest": original_digest(original),
                "leaf_version": 2,
            }
            if version == 2
            else {}
        ),
    )
    values = {
        "seq": seq,
        "recorded_at": recorded_at,
        "event_id": event_id,
        "event_source": source,
        "event_type": event_type,
        "subject": case,
        "agency": agency,
        "outcome": "received",
        "reason_code": None,
        "kafka_topic": topic,
        "kafka_partition": seq % 3,
        "kafka_offset": seq,
        "attributes": orjson.dumps(attributes).decode(),
        "sealed_value": None,
        "data_key_id": None,
        "payload_digest": digest,
        "leaf_hash": entry_leaf_hash(entry),
        "original_bytes": original,
        "leaf_version": version,
    }
    return Row(tuple(values[c] for c in COLUMNS), raw, case)


async def append(db: AuditDb, rows: list[Row]) -> None:
    """COPY rows as the audit consumer's role, each value sealed under its case's data key,
    and advance audit_head, as `AuditLog.append_batch` does."""
    conn = await asyncpg.connect(asyncpg_dsn(db.writer))
    try:
        async with conn.transaction():
            keys = await db.vault().keys_for(conn, {case_subject(r.case) for r in rows})
            records = [
                r.values
                if r.raw is None
                else r.sealed(keys[case_subject(r.case)].key_id, keys[case_subject(r.case)].key)
                for r in rows
            ]
            await conn.copy_records_to_table("audit_log", columns=COLUMNS, records=records)
            await conn.execute("UPDATE audit_head SET next_seq = $1 WHERE id = 1", rows[-1].seq + 1)
    finally:
        await conn.close()


async def seed_and_sign(
    db: AuditDb,
    export_dir: Path | None,
    sizes: tuple[int, ...] = (10, 20, 40),
    *,
    version_of: Callable[[int], int] = lambda seq: 2,
    rows: bool = True,
) -> list[SignedTreeHead]:
    """Append records 0..max(sizes)-1 as the writer, signing a tree head at each size as the
    signer would with some cadence (as the signer's role). Returns the heads. `version_of`:
    each record's leaf format; `rows=False` signs what the log already holds."""
    pool = await asyncpg.create_pool(asyncpg_dsn(db.signer), min_size=1, max_size=2)
    heads: list[SignedTreeHead] = []
    try:
        signer = TreeHeadSigner(pool, KEY, export_dir=export_dir)
        await signer.start()
        start = 0
        for size in sizes:
            if rows:
                await append(db, [make_row(s, version=version_of(s)) for s in range(start, size)])
            await signer.poll()
            heads.append(await signer.sign())
            start = size
    finally:
        await pool.close()
    return heads
