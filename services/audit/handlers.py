"""Audit's consumer: every CaseBridge topic, appended to the audit log in batches."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from aiokafka import ConsumerRecord
from faststream.kafka import KafkaMessage, KafkaRouter

from schemas.errors import EventRejected
from services.audit.records import describe, describe_unrecordable
from services.audit.store import AuditLog
from services.runtime.kafka import batch_subscriber, handle_batch
from services.runtime.logging import get_logger
from services.runtime.metrics import audit_appended
from services.runtime.settings import Settings

log = get_logger("casebridge.audit")
SERVICE = "audit"

AUDITED_TOPICS = (
    r"casebridge\."
    r"(in\..+|events\.valid|routing\.decisions|inbox\..+|deadletter|rejections\..+"
    r"|updates\..+|cases\..+|audit\.queries|erasures|console\.activity|statistics\.regional)"
)
"""Every topic anyone acts on: what agencies send, what intake admits (the router and the
cases service act on the validated stream, so it is audited too, although each record there
is also in the log as `received`) and everything CaseBridge writes for agencies or itself.
Only the tree heads are not: they are about the log itself, and the signer keeps them.
A test checks this against every topic of the access plan."""


class AuditRecorder:
    """Appends each consumed batch to the audit log (the auditors, who read it, are
    services/audit/config.py `Auditor`)."""

    def __init__(self, audit_log: AuditLog, *, topic_prefix: str = "") -> None:
        self._log = audit_log
        self._prefix = topic_prefix

    async def process(self, records: Sequence[ConsumerRecord[Any, Any]]) -> None:
        appended = await self._log.append_batch(
            [describe(r, topic_prefix=self._prefix) for r in records]
        )
        audit_appended(e.outcome for e in appended)
        if appended:
            log.debug("appended", first_seq=appended[0].seq, count=len(appended))

    async def quarantine(self, record: ConsumerRecord[Any, Any], error: EventRejected) -> None:
        """What `handle_batch` does with a record that fails alone after retries: log it as
        `unrecordable`, so nothing the services acted on is missing from the log, and move
        on (an infrastructure failure here re-raises, and the batch is fetched again)."""
        unrecordable = describe_unrecordable(record, str(error.code))
        audit_appended(e.outcome for e in await self._log.append_batch([unrecordable]))


def build_router(recorder: AuditRecorder, settings: Settings) -> KafkaRouter:
    router = KafkaRouter()

    @batch_subscriber(
        router,
        pattern=re.escape(settings.topic_prefix) + AUDITED_TOPICS,
        settings=settings,
        service=SERVICE,
        description="Appends every CaseBridge record to the append-only audit log.",
    )
    async def on_any(_: Any, message: KafkaMessage) -> None:
        await handle_batch(
            recorder.process,
            message,
            service=SERVICE,
            pause_s=settings.retry_backoff_s,
            quarantine=recorder.quarantine,
            attempts=settings.record_attempts,
        )

    return router
