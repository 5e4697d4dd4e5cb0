"""Intake's consumer: screen a batch, drop repeats, forward or reject, then commit."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from aiokafka import ConsumerRecord
from faststream.kafka import KafkaMessage, KafkaRouter
from structlog.contextvars import bound_contextvars

from schemas.errors import EventRejected, RejectionCode
from schemas.topics import INBOUND_PREFIX, agency_of_inbound, rejections_topic
from services.intake.registry import Registry
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
    """Turns a batch of inbound records into forwarded and rejected records.

    The acting agency is the one whose inbound topic carried the record: the broker lets only
    that agency write there. A rejection goes to the full dead-letter stream (operators) and
    to the agency's own rejections topic.
    """

    def __init__(
        self,
        publisher: Publisher,
        seen: SeenEvents,
        registry: Registry,
        *,
        topic_prefix: str = "",
    ) -> None:
        self._publisher = publisher
        self._seen = seen
        self._registry = registry
        self._prefix = topic_prefix

    async def process(self, records: Sequence[ConsumerRecord[Any, Any]]) -> None:
        outgoing: list[Outgoing] = []
        valid: list[tuple[ConsumerRecord[Any, Any], Screened]] = []
        for record in records:
            agency = agency_of_inbound(record.topic.removeprefix(self._prefix))
            try:
                if agency is None:
                    raise EventRejected(
                        RejectionCode.AGENCY_MISMATCH, "the topic is not an agency's inbound topic"
                    )
                valid.append((record, screen(record, agency, self._registry)))
            except EventRejected as error:
                outgoing.extend(self._reject(record, error, agency))
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
                outgoing.extend(self._reject(record, duplicate, event.agency))
        await self._publisher.publish_all(outgoing, consumed=records)
        log.debug("batch screened", records=len(records), accepted=sum(first))

    async def quarantine(self, record: ConsumerRecord[Any, Any], error: EventRejected) -> None:
        """Reject a record the batch runner set aside (it kept failing), as any rejection."""
        agency = agency_of_inbound(record.topic.removeprefix(self._prefix))
        await self._publisher.publish_all(self._reject(record, error, agency), consumed=[record])

    @staticmethod
    def _reject(
        record: ConsumerRecord[Any, Any], error: EventRejected, agency: str | None
    ) -> list[Outgoing]:
        with bound_contextvars(**record_ids(record)):
            log.warning("event rejected", reason=str(error.code), agency=agency)
        full = dead_letter(record, error, rejected_by=SERVICE, agency=agency)
        if agency is None:
            return [full]
        return [full, full.to(rejections_topic(agency))]


def build_router(intake: Intake, settings: Settings) -> KafkaRouter:
    router = KafkaRouter()

    @batch_subscriber(
        router,
        pattern=re.escape(settings.topic_prefix + INBOUND_PREFIX) + r"[a-z0-9][a-z0-9-]*$",
        settings=settings,
        service=SERVICE,
        description="Validates each agency's inbound CloudEvents and who sent them; forwards "
        "valid ones, rejects the rest to the dead-letter stream and the agency's rejections.",
    )
    async def on_inbound(_: Any, message: KafkaMessage) -> None:
        await handle_batch(
            intake.process,
            message,
            service=SERVICE,
            pause_s=settings.retry_backoff_s,
            quarantine=intake.quarantine,
            attempts=settings.record_attempts,
        )

    return router
