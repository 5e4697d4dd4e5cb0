"""Intake's consumer: screen a batch, drop repeats, forward or dead-letter, then commit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiokafka import ConsumerRecord
from faststream.kafka import KafkaMessage, KafkaRouter
from structlog.contextvars import bound_contextvars

from schemas.errors import EventRejected, RejectionCode
from schemas.topics import INBOUND_TOPICS
from services.intake.screening import Screened, forward, screen
from services.intake.seen_events import SeenEvents, Sighting
from services.runtime.dead_letter import dead_letter
from services.runtime.kafka import (
    Outgoing,
    Publisher,
    batch_subscriber,
    handle_batch,
    record_ids,
)
from services.runtime.logging import get_logger
from services.runtime.settings import Settings

log = get_logger("casebridge.intake")
SERVICE = "intake"


class Intake:
    """Turns a batch of inbound records into forwarded and dead-lettered records."""

    def __init__(self, publisher: Publisher, seen: SeenEvents) -> None:
        self._publisher = publisher
        self._seen = seen

    async def process(self, records: Sequence[ConsumerRecord[Any, Any]]) -> None:
        outgoing: list[Outgoing] = []
        valid: list[tuple[ConsumerRecord[Any, Any], Screened]] = []
        for record in records:
            try:
                valid.append((record, screen(record)))
            except EventRejected as error:
                outgoing.append(self._reject(record, error))
        first = await self._seen.first_sightings(
            [
                Sighting(e.envelope.source, e.envelope.id, r.topic, r.partition, r.offset)
                for r, e in valid
            ]
        )
        for (record, event), is_first in zip(valid, first, strict=True):
            if is_first:
                outgoing.append(forward(record, event))
            else:
                duplicate = EventRejected(
                    RejectionCode.DUPLICATE_EVENT,
                    "an event with this source and id was already accepted",
                )
                outgoing.append(self._reject(record, duplicate))
        await self._publisher.publish_all(outgoing)
        log.debug("batch screened", records=len(records), accepted=sum(first))

    @staticmethod
    def _reject(record: ConsumerRecord[Any, Any], error: EventRejected) -> Outgoing:
        with bound_contextvars(**record_ids(record)):
            log.warning("event rejected", reason=str(error.code))
        return dead_letter(record, error, rejected_by=SERVICE)


def build_router(intake: Intake, settings: Settings) -> KafkaRouter:
    router = KafkaRouter()

    @batch_subscriber(
        router,
        *(settings.topic_prefix + t.name for t in INBOUND_TOPICS),
        settings=settings,
        service=SERVICE,
        description="Validates inbound CloudEvents; forwards valid ones, dead-letters the rest.",
    )
    async def on_inbound(_: Any, message: KafkaMessage) -> None:
        await handle_batch(
            intake.process, message, service=SERVICE, pause_s=settings.retry_backoff_s
        )

    return router
