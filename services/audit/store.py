"""The audit log in PostgreSQL: append-only, gapless, replay-proof.

One transaction per batch does everything: it takes the next sequence numbers from
`audit_head` (whose row lock serialises writers, so numbers are gapless and in commit order),
skips records at or below the offsets this consumer already stored (so a replay after a crash
adds nothing), drops byte-identical copies a service re-published (`_first_copies`), COPYs
the rows, and advances both. Kafka offsets are committed only after this transaction, and a
record that is redelivered anyway is skipped by the stored offsets. The database itself
refuses a seq used twice (migration 0016: a statement trigger claims each COPY's seq ranges
in `audit_seq_range`, whose exclusion constraint admits no overlap).

No value is stored in plain text: within the same transaction the batch's data keys come from
the person vault (one query for the whole batch, none when its cache holds them) and each value
is sealed under its subject's key, bound to its seq (services/audit/sealed.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from services.audit.canonical import (
    CURRENT_LEAF_VERSION,
    AuditEntry,
    canonical_attributes,
    entry_leaf_hash,
    original_digest,
)
from services.audit.records import AuditRecord
from services.audit.sealed import seal_value
from services.privacy.vault import DataKey, PersonVault
from services.runtime.database import Database

COLUMNS = (
    "seq",
    "recorded_at",
    "event_id",
    "event_source",
    "event_type",
    "subject",
    "agency",
    "outcome",
    "reason_code",
    "kafka_topic",
    "kafka_partition",
    "kafka_offset",
    "attributes",
    "sealed_value",
    "data_key_id",
    "payload_digest",
    "leaf_hash",
    "original_bytes",
    "leaf_version",
)


def entry_of(seq: int, recorded_at: datetime, r: AuditRecord) -> AuditEntry:
    """The record's leaf entry in the current format (v2): besides v1's fields it covers the
    agency, the attributes exactly as stored (`attributes` column) and the digest of
    `original_bytes`, so none of what auditors filter on or are shown can change unnoticed."""
    return AuditEntry(
        seq=seq,
        event_id=r.event_id,
        event_source=r.event_source,
        event_type=r.event_type,
        subject=r.subject,
        kafka_topic=r.kafka_topic,
        kafka_partition=r.kafka_partition,
        kafka_offset=r.kafka_offset,
        recorded_at=recorded_at,
        outcome=r.outcome,
        reason_code=r.reason_code,
        payload_digest=r.payload_digest,
        agency=r.agency,
        attributes=canonical_attributes(r.attributes),
        original_digest=original_digest(r.original),
        leaf_version=CURRENT_LEAF_VERSION,
    )


class AuditLog:
    """Appends batches of audit records for one consumer (its offsets are kept per consumer)."""

    def __init__(self, db: Database, vault: PersonVault, *, consumer: str) -> None:
        self._db = db
        self._vault = vault
        self._consumer = consumer
        self._name = consumer

    def on_cluster(self, cluster_id: str) -> None:
        """Key the stored offsets by Kafka cluster too: offsets of a cluster that was rebuilt
        (same topic names, offsets from 0 again) must not make the audit skip new records."""
        self._consumer = f"{self._name}@{cluster_id}" if cluster_id else self._name

    async def append_batch(self, records: Sequence[AuditRecord]) -> list[AuditEntry]:
        """Append the records not yet stored; return the entries appended, in seq order."""
        if not records:
            return []
        try:
            async with self._db.pool.acquire() as conn, conn.transaction():
                return await self._append(conn, records)
        except BaseException:
            # Keys the vault created in a transaction that did not commit do not exist: they
            # must not stay in its cache, or later values would be sealed under them.
            for subject in {r.data_subject for r in records}:
                self._vault.forget(subject)
            raise

    async def _append(self, conn: Any, records: Sequence[AuditRecord]) -> list[AuditEntry]:
        next_seq: int = await conn.fetchval(
            "SELECT next_seq FROM audit_head WHERE id = 1 FOR UPDATE"
        )
        stored = {
            (row[0], row[1]): row[2]
            for row in await conn.fetch(
                "SELECT kafka_topic, kafka_partition, next_offset"
                " FROM audit_consumer_offset WHERE consumer = $1",
                self._consumer,
            )
        }
        fresh = [
            r
            for r in records
            if r.kafka_offset >= stored.get((r.kafka_topic, r.kafka_partition), 0)
        ]
        fresh = await _first_copies(conn, fresh)
        if not fresh:
            return []
        recorded_at = datetime.now(UTC)
        entries = [entry_of(next_seq + i, recorded_at, r) for i, r in enumerate(fresh)]
        subjects = {r.data_subject for r in fresh if r.raw_value is not None}
        keys = await self._vault.keys_for(conn, subjects) if subjects else {}
        await conn.copy_records_to_table(
            "audit_log",
            columns=COLUMNS,
            records=[
                (
                    e.seq,
                    recorded_at,
                    r.event_id,
                    r.event_source,
                    r.event_type,
                    r.subject,
                    r.agency,
                    r.outcome,
                    r.reason_code,
                    r.kafka_topic,
                    r.kafka_partition,
                    r.kafka_offset,
                    _attributes_json(r.attributes),
                    *_sealed(keys, r, e.seq),
                    r.payload_digest,
                    entry_leaf_hash(e),
                    r.original,
                    e.leaf_version,
                )
                for e, r in zip(entries, fresh, strict=True)
            ],
        )
        advanced: dict[tuple[str, int], int] = {}
        for r in fresh:
            key = (r.kafka_topic, r.kafka_partition)
            advanced[key] = max(advanced.get(key, 0), r.kafka_offset + 1)
        await conn.executemany(
            "INSERT INTO audit_consumer_offset"
            " (consumer, kafka_topic, kafka_partition, next_offset)"
            " VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (consumer, kafka_topic, kafka_partition)"
            " DO UPDATE SET next_offset = EXCLUDED.next_offset",
            [(self._consumer, t, p, o) for (t, p), o in advanced.items()],
        )
        await conn.execute(
            "UPDATE audit_head SET next_seq = $1 WHERE id = 1", next_seq + len(entries)
        )
        return entries


def _sealed(keys: dict[str, DataKey], r: AuditRecord, seq: int) -> tuple[bytes | None, int | None]:
    """`sealed_value` and `data_key_id` of a row: both NULL for a record without a value."""
    if r.raw_value is None:
        return None, None
    key = keys[r.data_subject]
    return seal_value(key.key, r.raw_value, seq), key.key_id


_CLAIM_COPIES = """
INSERT INTO audit_emitted (kafka_topic, record_digest)
SELECT * FROM unnest($1::text[], $2::bytea[])
ON CONFLICT DO NOTHING
RETURNING kafka_topic, record_digest
"""


async def _first_copies(conn: Any, records: list[AuditRecord]) -> list[AuditRecord]:
    """Drop re-published copies: records identical in key, value and every header but
    `ce_time` to one already in the log, on a topic only CaseBridge's services write
    (`copy_digest`).

    A record is dropped only when the log already holds all of it but its time, so a copy
    written first by anyone, under any guessed id, hides nothing: the real record differs in
    some byte and is kept. Inbound records and erasure requests have no `copy_digest`: a
    repeat there is a distinct act (intake dead-letters an agency's repeat), and the log
    shows both.
    """
    claims = [(r.kafka_topic, r.copy_digest) for r in records if r.copy_digest is not None]
    if not claims:
        return records
    fresh = {
        (row[0], bytes(row[1]))
        for row in await conn.fetch(_CLAIM_COPIES, [c[0] for c in claims], [c[1] for c in claims])
    }
    kept: list[AuditRecord] = []
    for r in records:
        if r.copy_digest is None:
            kept.append(r)
        elif (r.kafka_topic, r.copy_digest) in fresh:
            fresh.discard((r.kafka_topic, r.copy_digest))  # a second copy in this batch too
            kept.append(r)
    return kept


def _attributes_json(attributes: dict[str, str]) -> str:
    return orjson.dumps(attributes).decode()
