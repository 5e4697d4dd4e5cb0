"""Router's consumer: route each valid event and publish the decision and the deliveries."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiokafka import ConsumerRecord
from faststream.kafka import KafkaMessage, KafkaRouter
from structlog.contextvars import bound_contextvars

from schemas.errors import EventRejected
from schemas.topics import EVENTS_VALID
from services.router.decisions import routing_records
from services.routing.facts import facts_of, is_case_action
from services.routing.policy import RoutingPolicy, route
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
    def __init__(self, publisher: Publisher, policy: RoutingPolicy) -> None:
        self._publisher = publisher
        self._policy = policy

    async def process(self, records: Sequence[ConsumerRecord[Any, Any]]) -> None:
        outgoing: list[Outgoing] = []
        for record in records:
            if is_case_action(record):
                continue  # lifecycle actions on existing cases are the cases service's
            try:
                facts, case_id = facts_of(record)
            except EventRejected as error:
                # Intake validated this event; a failure here means the contract moved under
                # a running system. Dead-letter it rather than stall the partition.
                with bound_contextvars(**record_ids(record)):
                    log.error("valid event failed routing", reason=str(error.code))
                outgoing.append(dead_letter(record, error, rejected_by=SERVICE))
                continue
            outgoing += routing_records(
                record,
                route(self._policy, facts),
                case_id=case_id,
                policy_version=self._policy.version,
            )
        await self._publisher.publish_all(outgoing)


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
            router_service.process, message, service=SERVICE, pause_s=settings.retry_backoff_s
        )

    return router
