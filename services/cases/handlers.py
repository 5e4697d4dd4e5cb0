"""The cases service's consumer and its deadline clock."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from faststream.kafka import KafkaMessage, KafkaRouter

from schemas.topics import ERASURES, EVENTS_VALID
from services.cases.coordinator import CaseCoordinator
from services.runtime.kafka import batch_subscriber, handle_batch
from services.runtime.logging import get_logger
from services.runtime.settings import Settings

log = get_logger("casebridge.cases")
SERVICE = "cases"


def build_router(coordinator: CaseCoordinator, settings: Settings) -> KafkaRouter:
    router = KafkaRouter()

    # One consumer for both topics: the cases service's one consumer group, one batch loop.
    @batch_subscriber(
        router,
        settings.topic_prefix + EVENTS_VALID.name,
        settings.topic_prefix + ERASURES.name,
        settings=settings,
        service=SERVICE,
        description="Opens cases and applies agencies' case actions; carries out the "
        "data-protection officer's erasure requests; publishes case updates.",
    )
    async def on_valid(_: Any, message: KafkaMessage) -> None:
        await handle_batch(
            coordinator.process,
            message,
            service=SERVICE,
            pause_s=settings.retry_backoff_s,
            quarantine=coordinator.quarantine,
            attempts=settings.record_attempts,
        )

    return router


async def run_deadline_clock(coordinator: CaseCoordinator, *, every_s: float) -> None:
    """Raise due escalations every `every_s` seconds and relay anything left in the outbox.

    Deadlines live in the database, so a restart loses none: the first tick after it raises
    whatever fell due while the service was down.
    """
    while True:
        try:
            await coordinator.tick()
            await coordinator.relay()
        except Exception:
            log.exception("deadline tick failed; retrying on the next tick")
        await asyncio.sleep(every_s)


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
