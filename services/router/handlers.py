"""Router's consumer: route each valid event and publish the decision and the deliveries."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiokafka import ConsumerRecord
from faststream.kafka import KafkaMessage, KafkaRouter
from structlog.contextvars import bound_contextvars

from schemas.errors import EventRejected
from schemas.topics import EVENTS_VALID
from services.privacy.policy import DataSharingPolicy
from services.router.copies import inbox_copy
from services.router.decisions import routing_records
from services.routing.facts import is_case_action, opening_of
from services.routing.policy import RoutingPolicy, opening_owner, route
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

log = get_logger("casebridge.router")
SERVICE = "router"


class Router:
    def __init__(
        self, publisher: Publisher, policy: RoutingPolicy, sharing: DataSharingPolicy
    ) -> None:
        self._publisher = publisher
        self._policy = policy
        self._sharing = sharing

    async def process(self, records: Sequence[ConsumerRecord[Any, Any]]) -> None:
        outgoing: list[Outgoing] = []
        for record in records:
            if is_case_action(record):
                continue  # lifecycle actions on existing cases are the cases service's
            try:
                opening = opening_of(record)
            except EventRejected as error:
                # Intake validated this event; a failure here means the contract moved under
                # a running system. Dead-letter it rather than stall the partition.
                with bound_contextvars(**record_ids(record)):
                    log.error("valid event failed routing", reason=str(error.code))
                outgoing.append(dead_letter(record, error, rejected_by=SERVICE))
                continue
            chosen = route(self._policy, opening.facts, self._sharing.sharing_agreements)
            owner = opening_owner(opening.payload, [d.agency for d in chosen.deliveries])
            copies = {
                d.agency: inbox_copy(
                    opening, d.agency, owner=owner, sharing=self._sharing, directory=self._policy
                )
                for d in chosen.deliveries
            }
            outgoing += routing_records(
                record,
                chosen,
                copies,
                case_id=opening.case_id,
                policy_version=f"{self._policy.version}+{self._sharing.version}",
            )
        await self._publisher.publish_all(outgoing, consumed=records)

    async def quarantine(self, record: ConsumerRecord[Any, Any], error: EventRejected) -> None:
        """Dead-letter a record the batch runner set aside (it kept failing)."""
        await self._publisher.publish_all(
            [dead_letter(record, error, rejected_by=SERVICE)], consumed=[record]
        )


def build_router(router_service: Router, settings: Settings) -> KafkaRouter:
    router = KafkaRouter()

    @batch_subscriber(
        router,
        settings.topic_prefix + EVENTS_VALID.name,
        settings=settings,
        service=SERVICE,
        description="Routes each valid event to the agency inboxes its policy names.",
    )
    async def on_valid(_: Any, message: KafkaMessage) -> None:
        await handle_batch(
            router_service.process,
            message,
            service=SERVICE,
            pause_s=settings.retry_backoff_s,
            quarantine=router_service.quarantine,
            attempts=settings.record_attempts,
        )

    return router
