"""The agencies' producers and the other Kafka helpers of the benchmark."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from benchmarks.pipeline.config import METADATA_MAX_AGE_MS, POLL_S, PRODUCER_BATCH_BYTES
from benchmarks.pipeline.cpu import machine_busy_s
from benchmarks.pipeline.events import BenchEvent
from services.runtime.credentials import (
    KafkaClientConfig,
    kafka_client,
)
from services.runtime.kafka import MAX_RECORD_BYTES
from services.runtime.settings import Settings


def producer(client: KafkaClientConfig, linger_ms: int) -> AIOKafkaProducer:
    """An idempotent, acks=all producer connected as `client` (SASL_SSL, SCRAM-SHA-512, the
    deployment's CA) and batching exactly like the services' producer
    (services.runtime.kafka.KafkaPublisher)."""
    return AIOKafkaProducer(
        **client.aiokafka(),
        client_id=client.username,
        enable_idempotence=True,
        acks="all",
        linger_ms=linger_ms,
        max_batch_size=PRODUCER_BATCH_BYTES,
        max_request_size=MAX_RECORD_BYTES,
        metadata_max_age_ms=METADATA_MAX_AGE_MS,
    )


@dataclass
class AgencyProducers:
    """One producer per agency, each connected with that agency's own credentials: the broker
    lets an agency write its own inbound topic only."""

    settings: Settings
    producers: dict[str, AIOKafkaProducer] = field(default_factory=dict)

    async def start(self, agencies: Sequence[str]) -> None:
        for agency in sorted(set(agencies)):
            prod = producer(kafka_client(self.settings, agency), self.settings.producer_linger_ms)
            self.producers[agency] = prod
            await prod.start()

    def __call__(self, event: BenchEvent) -> AIOKafkaProducer:
        return self.producers[event.agency]

    async def stop(self) -> None:
        for prod in self.producers.values():
            await prod.stop()
        self.producers.clear()


async def publish(
    producer_of: Callable[[BenchEvent], AIOKafkaProducer],
    events: Sequence[BenchEvent],
    *,
    topic_prefix: str,
    rate: float = 0.0,
) -> list[float]:
    """Publish `events` in order, each with `producer_of(event)` (paced at `rate`/s when > 0);
    wall-clock send time of each.

    Returns once the broker has acknowledged every event; raises if any send failed.
    """
    sent_at = [0.0] * len(events)
    futures: list[asyncio.Future[Any]] = []
    start = time.perf_counter()
    for i, e in enumerate(events):
        if rate > 0:
            delay = start + i / rate - time.perf_counter()
            if delay > 0.001:  # sleep in steps of at least 1 ms, not once per event
                await asyncio.sleep(delay)
        sent_at[i] = time.time()
        futures.append(
            await producer_of(e).send(topic_prefix + e.topic, e.value, key=e.key, headers=e.headers)
        )
    await asyncio.gather(*futures)
    return sent_at


async def machine_load(seconds: float = 1.0) -> float:
    """How busy the machine is, in % of one core, over the next `seconds`."""
    before, t0 = machine_busy_s(), time.perf_counter()
    await asyncio.sleep(seconds)
    return 100.0 * (machine_busy_s() - before) / (time.perf_counter() - t0)


async def wait_assigned(consumer: AIOKafkaConsumer, partitions: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while len(consumer.assignment()) < partitions:
        if time.monotonic() > deadline:
            raise TimeoutError("the passthrough consumer got no partitions")
        await asyncio.sleep(POLL_S)
