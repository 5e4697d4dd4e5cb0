"""Audit's consumer: every CaseBridge topic, appended to the audit log in batches."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from aiokafka import ConsumerRecord
from faststream.kafka import KafkaMessage, KafkaRouter

from services.audit.records import describe
from services.audit.store import AuditLog
from services.runtime.kafka import batch_subscriber, handle_batch
from services.runtime.logging import get_logger
from services.runtime.settings import Settings

log = get_logger("casebridge.audit")
SERVICE = "audit"

AUDITED_TOPICS = (
    r"casebridge\."
    r"(in\..+|routing\.decisions|inbox\..+|deadletter|rejections\..+|updates\..+|cases\..+"
    r"|audit\.queries|erasures)"
)
"""Everything CaseBridge reads from agencies or writes for them (but not the validated-event
topic, a copy of inbound, nor the tree heads, which are about the log itself)."""


class Auditor:
    def __init__(self, audit_log: AuditLog, *, topic_prefix: str = "") -> None:
        self._log = audit_log
        self._prefix = topic_prefix

    async def process(self, records: Sequence[ConsumerRecord[Any, Any]]) -> None:
        appended = await self._log.append_batch(
            [describe(r, topic_prefix=self._prefix) for r in records]
        )
        if appended:
            log.debug("appended", first_seq=appended[0].seq, count=len(appended))


def build_router(auditor: Auditor, settings: Settings) -> KafkaRouter:
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
            auditor.process, message, service=SERVICE, pause_s=settings.retry_backoff_s
        )

    return router
