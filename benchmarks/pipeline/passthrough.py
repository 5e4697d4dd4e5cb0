"""(a) The baseline: a raw aiokafka passthrough on the same broker and connection settings."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from aiokafka import AIOKafkaConsumer

from benchmarks.pipeline.clients import producer, publish, wait_assigned
from benchmarks.pipeline.config import (
    BENCH_PRINCIPAL,
    FETCH_BYTES,
    METADATA_MAX_AGE_MS,
    PASSTHROUGH_PARTITIONS,
    READY_TIMEOUT_S,
)
from benchmarks.pipeline.cpu import CpuWindow
from benchmarks.pipeline.deployment import passthrough_group, passthrough_topics
from benchmarks.pipeline.events import BenchEvent
from services.runtime.credentials import (
    kafka_client,
)
from services.runtime.progress import Progress
from services.runtime.settings import Settings


@dataclass(frozen=True)
class PassthroughResult:
    messages: int
    seconds: float
    cpu: CpuWindow

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


async def passthrough(
    settings: Settings,
    events: Sequence[BenchEvent],
    *,
    timeout_s: float,
    probes: dict[str, Callable[[], float]],
    progress: bool | None = False,
) -> PassthroughResult:
    source, target = passthrough_topics(settings)
    client = kafka_client(settings, BENCH_PRINCIPAL)
    loader = producer(client, settings.producer_linger_ms)
    await loader.start()
    try:
        await publish(lambda _: loader, [replace(e, topic=source) for e in events], topic_prefix="")
    finally:
        await loader.stop()

    # The consumer as FastStream configures the services' batch subscribers
    # (services.runtime.kafka.batch_subscriber, create_broker).
    consumer = AIOKafkaConsumer(
        source,
        **client.aiokafka(),
        client_id=client.username,
        group_id=passthrough_group(settings),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=FETCH_BYTES,
        metadata_max_age_ms=METADATA_MAX_AGE_MS,
    )
    copier = producer(client, settings.producer_linger_ms)
    await copier.start()
    await consumer.start()
    try:
        await wait_assigned(consumer, PASSTHROUGH_PARTITIONS, READY_TIMEOUT_S)
        cpu = CpuWindow(probes=dict(probes))
        cpu.begin()
        copied = 0
        deadline = time.monotonic() + timeout_s
        shown = Progress("(a) passthrough", total=len(events), unit="messages", enabled=progress)
        with shown:
            while copied < len(events):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"passthrough copied {copied} of {len(events)} in time")
                batches = await consumer.getmany(
                    timeout_ms=settings.batch_timeout_ms, max_records=settings.batch_max_records
                )
                futures = [
                    await copier.send(target, r.value, key=r.key, headers=list(r.headers))
                    for records in batches.values()
                    for r in records
                ]
                if futures:
                    await asyncio.gather(*futures)
                    await consumer.commit()
                    copied += len(futures)
                    shown.update(copied)
        cpu.end()
    finally:
        await consumer.stop()
        await copier.stop()
    return PassthroughResult(messages=copied, seconds=cpu.wall, cpu=cpu)
