"""A record the audit keeps failing on is logged as `unrecordable` and its partition moves on,
rather than retried forever (which would stop the audit of everything after it)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, cast

from aiokafka import ConsumerRecord
from faststream.kafka import KafkaMessage

from services.audit.handlers import AuditRecorder
from services.audit.records import UNRECORDABLE, AuditRecord
from services.audit.store import AuditLog
from services.runtime.kafka import handle_batch

TOPIC = "casebridge.in.id-police-aht"


def record(offset: int, value: bytes) -> ConsumerRecord[Any, Any]:
    headers = (("ce_id", f"e-{offset}".encode()),)
    return ConsumerRecord(TOPIC, 2, offset, 0, 0, b"CASE-1", value, None, 6, len(value), headers)


class FlakyLog:
    """Stores batches, except that it refuses any batch holding the value `poison` (as a bug
    in the store would): only a record logged without it gets through."""

    def __init__(self, poison: bytes) -> None:
        self.poison = poison
        self.rows: list[AuditRecord] = []

    async def append_batch(self, records: Sequence[AuditRecord]) -> list[Any]:
        if any(r.raw_value == self.poison and r.outcome != UNRECORDABLE for r in records):
            raise ValueError("the store cannot take this record")
        self.rows.extend(records)
        return []


async def run(recorder: AuditRecorder, *records: ConsumerRecord[Any, Any]) -> None:
    class Batch:
        raw_message = records

    await handle_batch(
        recorder.process,
        cast(KafkaMessage, Batch()),
        service="audit",
        pause_s=0.0,
        quarantine=recorder.quarantine,
        attempts=2,
    )


async def test_a_record_that_keeps_failing_is_logged_as_unrecordable_and_the_rest_as_usual() -> (
    None
):
    poison = b'{"x": "the store refuses this"}'
    store = FlakyLog(poison)
    recorder = AuditRecorder(cast(AuditLog, store))
    await run(recorder, record(10, b"{}"), record(11, poison), record(12, b'{"a": 1}'))

    by_offset = {r.kafka_offset: r for r in store.rows}
    assert sorted(by_offset) == [10, 11, 12]
    assert by_offset[10].outcome == by_offset[12].outcome == "received"
    bad = by_offset[11]
    assert bad.outcome == UNRECORDABLE
    assert bad.reason_code == "PROCESSING_FAILED"
    assert (bad.kafka_topic, bad.kafka_partition) == (TOPIC, 2)
    assert bad.payload_digest == hashlib.sha256(poison).digest()
    assert bad.raw_value == poison  # sealed at rest like every value, never dropped


async def test_records_the_store_takes_are_never_logged_as_unrecordable() -> None:
    store = FlakyLog(b"nothing sends this")
    recorder = AuditRecorder(cast(AuditLog, store))
    await run(recorder, record(1, b"{}"), record(2, b"[]"))
    assert [r.outcome for r in store.rows] == ["received", "received"]
