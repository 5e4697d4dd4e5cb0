"""The one broker factory, the subscriber options every batch consumer shares, and topics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage, KafkaRouter
from faststream.message import StreamMessage

from services.runtime.credentials import KafkaClientConfig
from services.runtime.logging import get_logger
from services.runtime.settings import Settings

_log = get_logger("casebridge.kafka")


MAX_RECORD_BYTES = 4 * 1024 * 1024
"""What CaseBridge itself may publish: a dead-letter record carries a rejected record whole
(base64), and the broker accepts inbound records up to its default 1 MiB."""


class _TopicsMadeBySetUp(logging.Filter):
    """Drops FastStream's per-subscriber warning that a consumer-only broker creates no topics:
    services may not create topics (no ACL allows it); set-up (`casebridge agencies sync`)
    does, and `await_topics` checks them at start."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Topic creation is skipped" not in record.getMessage()


def create_broker(
    client: KafkaClientConfig, *, client_id: str, logger: logging.Logger
) -> KafkaBroker:
    """The broker one service consumes through, as its own principal (it publishes with
    `KafkaPublisher`, so FastStream's own producer and admin client are not started)."""
    if not any(isinstance(f, _TopicsMadeBySetUp) for f in logger.filters):
        logger.addFilter(_TopicsMadeBySetUp())
    return KafkaBroker(
        client.bootstrap,
        security=client.faststream(),
        client_id=client_id,
        consumer_only=True,
        metadata_max_age_ms=5_000,
        logger=logger,
        log_level=logging.DEBUG,
    )


BatchHandler = Callable[[Any, KafkaMessage], Awaitable[None]]


def batch_subscriber(
    router: KafkaRouter,
    *topics: str,
    settings: Settings,
    service: str,
    description: str,
    pattern: str | None = None,
) -> Callable[[BatchHandler], BatchHandler]:
    """Subscribe a batch handler that commits only after the batch's effects are durable.

    NACK_ON_ERROR: a handler that returns acks (commits) the batch; one that raises is
    rewound and fetched again. Handlers therefore catch per-message problems themselves
    (dead-lettering them) and raise only on infrastructure failures, which a retry can heal.
    The decoder decodes nothing: handlers read `message.raw_message`, so a body that is not
    JSON reaches the handler (and the dead-letter topic) intact.
    """
    subscriber = router.subscriber(
        *topics,
        pattern=pattern,
        batch=True,
        group_id=f"{settings.group_prefix}.{service}",
        auto_offset_reset="earliest",
        max_records=settings.batch_max_records,
        batch_timeout_ms=settings.batch_timeout_ms,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        max_partition_fetch_bytes=2 * 1024 * 1024,
        decoder=_no_decoding,
        title=service,
        description=description,
    )

    def register(handler: BatchHandler) -> BatchHandler:
        subscriber(handler)
        return handler

    return register


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One record a handler wants published; handlers return these instead of publishing."""

    topic: str
    value: bytes
    key: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def to(self, topic: str) -> Outgoing:
        """The same record, for another topic."""
        return Outgoing(topic=topic, value=self.value, key=self.key, headers=self.headers)


class Publisher(Protocol):
    """Where services put the records they produce: the broker must have every one of them
    before `publish_all` returns."""

    async def publish_all(self, records: Sequence[Outgoing]) -> None: ...


class KafkaPublisher:
    """The process's one producer: idempotent, acks=all, batched (linger), order kept per
    partition. Plain aiokafka rather than FastStream's publish path, which costs about twice
    the CPU per record on the hot paths that publish several records per event."""

    def __init__(self, settings: Settings, client: KafkaClientConfig) -> None:
        self._settings = settings
        self._client = client
        self._prefix = settings.topic_prefix
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        if self._producer is None:
            producer = AIOKafkaProducer(
                **self._client.aiokafka(),
                client_id=self._client.username,
                enable_idempotence=True,
                acks="all",
                linger_ms=self._settings.producer_linger_ms,
                max_batch_size=256 * 1024,
                max_request_size=MAX_RECORD_BYTES,
                metadata_max_age_ms=5_000,
            )
            await producer.start()
            self._producer = producer

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def publish_all(self, records: Sequence[Outgoing]) -> None:
        """Send concurrently; return once every record is acknowledged, or raise (so the
        caller's batch is retried rather than committed)."""
        if self._producer is None:
            raise RuntimeError("publisher not started")
        send = self._producer.send
        futures = [
            await send(
                self._prefix + r.topic,
                r.value,
                key=r.key,
                headers=[(k, v.encode()) for k, v in r.headers.items()],
            )
            for r in records
        ]
        if futures:
            await asyncio.gather(*futures)


def header_map(record: ConsumerRecord[Any, Any]) -> dict[str, bytes]:
    """Kafka headers as a dict; the last value wins when a header is repeated."""
    return {name: value for name, value in (record.headers or ()) if value is not None}


def origin_of(record: ConsumerRecord[Any, Any]) -> str:
    """`topic/partition/offset`: where a record sits, a stable name for it."""
    return f"{record.topic}/{record.partition}/{record.offset}"


async def await_topics(
    client: KafkaClientConfig, topics: Iterable[str], *, within_s: float = 30.0
) -> str:
    """Wait until every topic in `topics` exists and is visible to `client`'s principal (the
    broker hides topics a principal may not describe); return the cluster id.

    Services do not create topics: set-up does. A service started before set-up, or without
    the ACLs it needs, says which topics it cannot see instead of consuming nothing.
    """
    admin = AIOKafkaAdminClient(**client.aiokafka())
    await admin.start()
    try:
        wanted = set(topics)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        missing = wanted - set(await admin.list_topics())
        while missing and loop.time() < deadline:
            await asyncio.sleep(0.5)
            missing = wanted - set(await admin.list_topics())
        if missing:
            raise RuntimeError(
                f"{client.username} cannot see topics {sorted(missing)}: "
                "run `casebridge agencies sync` (creates topics, credentials and ACLs)"
            )
        cluster: dict[str, Any] = await admin.describe_cluster()
        return str(cluster.get("cluster_id") or "")
    finally:
        await admin.close()


async def _no_decoding(_: StreamMessage[Any]) -> None:
    return


def batch_of(message: KafkaMessage) -> Sequence[ConsumerRecord[Any, Any]]:
    """The records of a batch message (the test broker hands a list, the real one a tuple)."""
    raw = message.raw_message
    return raw if isinstance(raw, tuple | list) else (raw,)


async def handle_batch(
    process: Callable[[Sequence[ConsumerRecord[Any, Any]]], Awaitable[None]],
    message: KafkaMessage,
    *,
    service: str,
    pause_s: float,
) -> None:
    """Run `process` on a batch; on failure pause, then re-raise so the batch is fetched again.

    Only infrastructure failures get here (per-record problems are dead-lettered inside
    `process`), and those heal with time: the pause keeps a database outage from turning
    into a hot loop of refetches, and nothing is committed meanwhile.
    """
    records = batch_of(message)
    try:
        await process(records)
    except Exception:
        _log.exception("batch failed; it will be retried", service=service, records=len(records))
        await asyncio.sleep(pause_s)
        raise


def record_ids(record: ConsumerRecord[Any, Any]) -> dict[str, str | None]:
    """The identifiers a log line about one record carries: never its value.

    Bound per record (`structlog.contextvars.bound_contextvars(**record_ids(r))`) so every
    line logged while handling it names the event, the case and the correlation chain.
    """
    headers = header_map(record)

    def text(name: str) -> str | None:
        raw = headers.get(name)
        return raw.decode("utf-8", "replace")[:256] if raw else None

    key = record.key
    return {
        "event_id": text("ce_id"),
        "case_id": key.decode("utf-8", "replace")[:64] if key else None,
        "correlation_id": text("ce_correlationid") or text("ce_id"),
        "origin": origin_of(record),
    }
