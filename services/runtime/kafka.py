"""The one broker factory, the batch subscriber every consumer shares, and how a batch is run.

A batch either commits or is fetched again; what decides which is `handle_batch`: a bad
record is dealt with on its own (dead-lettered) and the partition moves on, an infrastructure
failure pauses the batch until it heals, and a record that fails for any other reason is
retried a few times, found, and dead-lettered as PROCESSING_FAILED.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    KafkaTimeoutError,
    LeaderNotAvailableError,
    NotLeaderForPartitionError,
)
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage, KafkaRouter
from faststream.message import StreamMessage

from schemas.errors import EventRejected, RejectionCode
from services.runtime.credentials import KafkaClientConfig
from services.runtime.failures import is_infrastructure
from services.runtime.header_names import tolerate_undecodable_header_names
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


LEADER_WARM_UP_S = 30.0
"""How long a partition may answer "not the leader" before that is an error, not warm-up."""


class LeaderWarmUp(logging.Filter):
    """Logs a partition's leader warm-up at DEBUG instead of aiokafka's ERROR, for a while.

    A consumer subscribed by pattern (intake, audit) picks up a topic set-up has just created
    before its partitions have a leader serving them, and aiokafka's fetcher logs every
    retry of the offset lookup at ERROR ("Failed fetch offsets from 1: NotLeaderForPartition
    Error"), dozens a second, although it recovers by itself. Those lines go to DEBUG, with
    one INFO line per topic saying what is happening. A partition still without a serving
    leader `grace_s` after its first such line is a fault, not warm-up: its lines pass at
    ERROR again. Any other error passes untouched.
    """

    MESSAGE = "Failed fetch offsets from %s: %s"
    """aiokafka's line (`aiokafka.consumer.fetcher`), matched exactly: a reworded line in a
    later aiokafka passes at ERROR rather than being hidden."""

    def __init__(
        self, grace_s: float = LEADER_WARM_UP_S, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.grace_s = grace_s
        self._clock = clock
        self._seen: dict[str, tuple[float, float]] = {}
        self._announced: set[str] = set()
        self.held_back = 0
        """Lines logged at DEBUG instead of ERROR (tests read it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if record.msg != self.MESSAGE or not isinstance(args, tuple) or len(args) != 2:
            return True
        error = args[1]
        if not isinstance(error, NotLeaderForPartitionError | LeaderNotAvailableError):
            return True
        where = error.args[0] if error.args else None
        partition = str(where)
        now = self._clock()
        first, last = self._seen.get(partition, (now, now))
        if now - last > self.grace_s:
            first = now  # quiet for a while: a new warm-up (a leader moved), not the old one
        self._seen[partition] = (first, now)
        if now - first >= self.grace_s:
            return True
        topic = str(getattr(where, "topic", partition))
        if topic not in self._announced:
            self._announced.add(topic)
            _log.info(
                "waiting for partition leaders (topic just created, or leadership moving);"
                f" retrying, an error if still waiting after {self.grace_s:g} s",
                topic=topic,
            )
        _log.debug("partition leader not serving yet", partition=partition, broker=str(args[0]))
        self.held_back += 1
        return False


def leader_warm_up() -> LeaderWarmUp:
    """The process's one `LeaderWarmUp`, installed on aiokafka's fetcher logger."""
    fetcher = logging.getLogger("aiokafka.consumer.fetcher")
    for existing in fetcher.filters:
        if isinstance(existing, LeaderWarmUp):
            return existing
    installed = LeaderWarmUp()
    fetcher.addFilter(installed)
    return installed


def create_broker(
    client: KafkaClientConfig, *, client_id: str, logger: logging.Logger
) -> KafkaBroker:
    """The broker one service consumes through, as its own principal (it publishes with
    `KafkaPublisher`, so FastStream's own producer and admin client are not started)."""
    if not any(isinstance(f, _TopicsMadeBySetUp) for f in logger.filters):
        logger.addFilter(_TopicsMadeBySetUp())
    leader_warm_up()
    tolerate_undecodable_header_names()
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


def consumer_group(settings: Settings, service: str) -> str:
    """The one consumer group of all of `service`'s instances."""
    return f"{settings.group_prefix}.{service}"


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
    rewound and fetched again. Handlers run their batch through `handle_batch`, which decides
    between the two so that no record can hold its partition forever. `read_committed`: a
    consumer never sees what intake or the router published in a transaction that was then
    aborted (`KafkaPublisher`).
    The parser shows FastStream no headers and the decoder decodes nothing: handlers read
    `message.raw_message`, so any key, header and value reaches the handler (and the
    dead-letter topic) intact.
    """
    finish_first = FinishBatchOnRevoke()
    subscriber = router.subscriber(
        *topics,
        pattern=pattern,
        listener=finish_first,
        batch=True,
        group_id=consumer_group(settings, service),
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_records=settings.batch_max_records,
        batch_timeout_ms=settings.batch_timeout_ms,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        max_partition_fetch_bytes=2 * 1024 * 1024,
        parser=_parse_without_headers,
        decoder=_no_decoding,
        title=service,
        description=description,
    )

    finish_first.batches = subscriber

    def register(handler: BatchHandler) -> BatchHandler:
        subscriber(handler)
        return handler

    return register


class FinishBatchOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """Before a rebalance takes partitions away, the batch in flight finishes and commits.

    Without it, a batch being handled when another instance joins or leaves the group
    commits after its partitions have moved: the commit is lost, the new owner handles the
    batch again from the last commit, and every record the batch already published goes out
    twice. FastStream holds the subscriber's lock (`graceful_timeout`, the same wait a
    shutdown makes) from fetch to commit; the revocation waits for it, within a bound that
    keeps this member in the group (the rebalance would otherwise evict it)."""

    WAIT_S = 30.0

    def __init__(self) -> None:
        self.batches: Any = None
        """The subscriber whose batches are waited for (set once it exists)."""

    async def on_partitions_revoked(self, revoked: Any) -> None:
        lock = getattr(self.batches, "lock", None)
        if lock is not None and hasattr(lock, "wait_release"):
            await lock.wait_release(self.WAIT_S)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        return None


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


def fits(record: Outgoing) -> bool:
    """Whether the producer will take `record` (at most `MAX_RECORD_BYTES`, with room for
    the batch's own overhead): a dead letter carries what it rejects, which may not fit."""
    size = len(record.value) + len(record.key or b"")
    size += sum(len(k.encode()) + len(v.encode()) for k, v in record.headers.items())
    return size + 1024 <= MAX_RECORD_BYTES


class Publisher(Protocol):
    """Where services put the records they produce: the broker must have every one of them
    before `publish_all` returns.

    `consumed`: the records these were made from. A publisher that works in transactions
    commits their offsets atomically with the records, so that a process killed between
    publishing and committing publishes nothing twice; one that does not leaves the commit to
    the subscriber, after `publish_all` returns (at least once)."""

    async def publish_all(
        self, records: Sequence[Outgoing], *, consumed: Sequence[ConsumerRecord[Any, Any]] = ()
    ) -> None: ...


TRANSACTION_TIMEOUT_MS = 20_000
"""How long the broker lets a transaction stay open before it aborts it. A transaction here
lasts from the first send to the commit of one batch's records (milliseconds); the bound is
how long readers at `read_committed` wait behind the open transaction of a process that died
without a successor under its transactional id (`Settings.instance`)."""


class KafkaPublisher:
    """The process's one producer for a service: idempotent, acks=all, batched (linger), order
    kept per partition. Plain aiokafka rather than FastStream's publish path, which costs about
    twice the CPU per record on the hot paths that publish several records per event.

    With `group_id` (intake and the router: consume, transform, produce) it is transactional:
    `publish_all` sends the records and the consumed offsets of that consumer group in one
    Kafka transaction, so the records appear to `read_committed` readers exactly when the
    input is marked done, and a crash in between aborts both. Its transactional id is
    `<group_id>.<Settings.instance>`: a restarted instance fences its predecessor and aborts
    whatever that one left open. A failed transaction is aborted (or, when the producer can no
    longer abort it, the producer is replaced, which settles it); if the broker committed it
    after all, `publish_all` returns as if it had succeeded.
    """

    def __init__(
        self, settings: Settings, client: KafkaClientConfig, *, group_id: str | None = None
    ) -> None:
        self._settings = settings
        self._client = client
        self._prefix = settings.topic_prefix
        self._group_id = group_id
        self.transactional_id = f"{group_id}.{settings.instance_name}" if group_id else None
        self._producer: AIOKafkaProducer | None = None
        self._transaction = asyncio.Lock()

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
                transactional_id=self.transactional_id,
                transaction_timeout_ms=TRANSACTION_TIMEOUT_MS,
            )
            await producer.start()
            self._producer = producer

    async def stop(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()

    async def publish_all(
        self, records: Sequence[Outgoing], *, consumed: Sequence[ConsumerRecord[Any, Any]] = ()
    ) -> None:
        """Send concurrently; return once every record is acknowledged (and, transactional,
        committed with the offsets after `consumed`), or raise: the caller's batch is then
        retried rather than committed."""
        if self._producer is None:
            raise RuntimeError("publisher not started")
        if self.transactional_id is None:
            await self._send(self._producer, records)
        elif records:
            async with self._transaction:
                await self._publish_in_transaction(records, next_offsets(consumed))

    async def _send(self, producer: AIOKafkaProducer, records: Sequence[Outgoing]) -> None:
        send = producer.send
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

    async def _publish_in_transaction(
        self, records: Sequence[Outgoing], offsets: dict[TopicPartition, int]
    ) -> None:
        producer = self._producer
        assert producer is not None
        assert self._group_id is not None
        try:
            await producer.begin_transaction()
            await self._send(producer, records)
            if offsets:
                await producer.send_offsets_to_transaction(offsets, self._group_id)
            await producer.commit_transaction()
        except Exception:
            if await self._settle(producer, offsets):
                _log.warning(
                    "transaction reported failure but the broker committed it",
                    transactional_id=self.transactional_id,
                )
                return
            raise

    async def _settle(self, producer: AIOKafkaProducer, offsets: dict[TopicPartition, int]) -> bool:
        """After a failed transaction: abort it, or replace a producer that cannot (its new
        epoch makes the coordinator finish what the old one left: an abort, or a commit
        already decided). True if the broker committed the transaction after all."""
        try:
            await asyncio.wait_for(producer.abort_transaction(), TRANSACTION_TIMEOUT_MS / 1000)
            return False
        except Exception:
            _log.warning(
                "replacing the transactional producer", transactional_id=self.transactional_id
            )
        try:
            await producer.stop()
        except Exception:
            _log.warning("the old producer did not stop cleanly", exc_info=True)
        self._producer = None
        await self.start()
        return bool(offsets) and await self._committed_past(offsets)

    async def _committed_past(self, offsets: dict[TopicPartition, int]) -> bool:
        """Whether the group's committed offsets already reach `offsets` (the transaction that
        carried them was committed)."""
        assert self._group_id is not None
        admin = AIOKafkaAdminClient(**self._client.aiokafka())
        await admin.start()
        try:
            committed: dict[TopicPartition, Any] = await admin.list_consumer_group_offsets(
                self._group_id, partitions=list(offsets)
            )
        finally:
            await admin.close()
        return all(
            (meta := committed.get(tp)) is not None and meta.offset >= offset
            for tp, offset in offsets.items()
        )


def next_offsets(consumed: Iterable[ConsumerRecord[Any, Any]]) -> dict[TopicPartition, int]:
    """The offset to commit per partition once `consumed` are done: one past the last."""
    offsets: dict[TopicPartition, int] = {}
    for record in consumed:
        tp = TopicPartition(record.topic, record.partition)
        offsets[tp] = max(offsets.get(tp, 0), record.offset + 1)
    return offsets


def header_map(record: ConsumerRecord[Any, Any]) -> dict[str, bytes]:
    """Kafka headers as a dict; the last value wins when a header is repeated."""
    return {name: value for name, value in (record.headers or ()) if value is not None}


def origin_of(record: ConsumerRecord[Any, Any]) -> str:
    """`topic/partition/offset`: where a record sits, a stable name for it."""
    return f"{record.topic}/{record.partition}/{record.offset}"


async def await_topics(
    client: KafkaClientConfig, topics: Iterable[str], *, within_s: float = 30.0
) -> str:
    """Wait until every topic in `topics` exists, is visible to `client`'s principal (the
    broker hides topics a principal may not describe) and has a leader serving each of its
    partitions; return the cluster id.

    Services do not create topics: set-up does. A service started before set-up, or without
    the ACLs it needs, says which topics it cannot see instead of consuming nothing. One
    started while set-up is creating them waits for their leaders: a consumer that starts
    first makes aiokafka log every retry of its offset lookup at ERROR.
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
        if wanted:
            described: list[dict[str, Any]] = await admin.describe_topics(sorted(wanted))
            partitions = [
                TopicPartition(t["topic"], p["partition"])
                for t in described
                for p in t.get("partitions") or ()
            ]
            await _await_leaders(client, partitions, within_s=max(deadline - loop.time(), 1.0))
        cluster: dict[str, Any] = await admin.describe_cluster()
        return str(cluster.get("cluster_id") or "")
    finally:
        await admin.close()


async def _await_leaders(
    client: KafkaClientConfig, partitions: Sequence[TopicPartition], *, within_s: float
) -> None:
    """Return once each partition's leader answers an offset lookup, the first request a
    consumer makes. Metadata naming a leader is not enough: a broker announces leadership of
    a new partition before it serves it. aiokafka retries this lookup quietly (DEBUG)."""
    probe = AIOKafkaConsumer(
        **client.aiokafka(),
        group_id=None,
        enable_auto_commit=False,
        request_timeout_ms=max(int(within_s * 1000), 1000),
    )
    await probe.start()
    try:
        await asyncio.wait_for(probe.beginning_offsets(list(partitions)), within_s + 1.0)
    except (TimeoutError, KafkaTimeoutError) as error:
        topics = sorted({p.topic for p in partitions})
        raise RuntimeError(
            f"no leader served the partitions of {topics} within {within_s:.0f} s"
        ) from error
    finally:
        await probe.stop()


async def _no_decoding(_: StreamMessage[Any]) -> None:
    return


async def _parse_without_headers(
    records: Sequence[ConsumerRecord[Any, Any]],
    parse: Callable[[tuple[ConsumerRecord[Any, Any], ...]], Awaitable[StreamMessage[Any]]],
) -> StreamMessage[Any]:
    """FastStream's own batch parser, shown the records without their headers.

    It decodes every header value as UTF-8 (one that is not, or is null, fails the parse, and
    FastStream then neither commits nor rewinds: the batch would be skipped unprocessed), and
    treats some as instructions (`reply_to`: publish the handler's result there). Handlers read
    the untouched records from `raw_message`.
    """
    message = await parse(tuple(replace(r, headers=()) for r in records))
    message.raw_message = records
    return message


def batch_of(message: KafkaMessage) -> Sequence[ConsumerRecord[Any, Any]]:
    """The records of a batch message (the test broker hands a list, the real one a tuple)."""
    raw = message.raw_message
    return raw if isinstance(raw, tuple | list) else (raw,)


Process = Callable[[Sequence[ConsumerRecord[Any, Any]]], Awaitable[None]]
"""A service's batch logic: handles each record (dead-lettering the bad ones itself) and
raises only when it cannot go on."""
Quarantine = Callable[[ConsumerRecord[Any, Any], EventRejected], Awaitable[None]]
"""Sets one record aside with its reason (publishes its dead letter) so the partition can
move past it."""


async def handle_batch(
    process: Process,
    message: KafkaMessage,
    *,
    service: str,
    pause_s: float,
    quarantine: Quarantine | None = None,
    attempts: int = 3,
) -> None:
    """Run `process` on a batch so that no record can hold its partition forever.

    Returns (the batch is committed) once every record has had its effect or been quarantined.
    An infrastructure failure (`services.runtime.failures`) pauses `pause_s` and re-raises: the
    batch is fetched again, nothing moves on. Any other failure is retried `attempts` times in
    all, then the batch is isolated: halved, each half processed in order (so a case's records
    keep their order), a half that fails halved again, down to the record that fails alone,
    which is quarantined as PROCESSING_FAILED or, if it raised `EventRejected`, with that
    reason. A poison record costs a few transactions, not one per record of its batch. Without
    `quarantine` the batch is retried until it succeeds, as for an infrastructure failure.
    """
    records = batch_of(message)
    failure = await _attempt(process, records, service=service, pause_s=pause_s, times=attempts)
    if failure is None:
        return
    if quarantine is None:
        _log.error(
            "batch failed and nothing may set a record aside; it will be retried",
            service=service,
            records=len(records),
            exc_info=failure,
        )
        await asyncio.sleep(pause_s)
        raise failure
    if len(records) == 1:
        await _set_aside(quarantine, records[0], failure, service=service, pause_s=pause_s)
        return
    _log.warning("isolating the record that fails its batch", service=service, records=len(records))
    await _isolate(process, records, failure, quarantine, service=service, pause_s=pause_s)


async def _isolate(
    process: Process,
    records: Sequence[ConsumerRecord[Any, Any]],
    failure: Exception,
    quarantine: Quarantine,
    *,
    service: str,
    pause_s: float,
) -> None:
    """`records` fail together: process each half in order, and halve again the one that
    fails, until the record that fails alone is set aside."""
    if len(records) == 1:
        await _set_aside(quarantine, records[0], failure, service=service, pause_s=pause_s)
        return
    middle = len(records) // 2
    for part in (records[:middle], records[middle:]):
        failed = await _attempt(process, part, service=service, pause_s=pause_s, times=1)
        if failed is not None:
            await _isolate(process, part, failed, quarantine, service=service, pause_s=pause_s)


async def _attempt(
    process: Process,
    records: Sequence[ConsumerRecord[Any, Any]],
    *,
    service: str,
    pause_s: float,
    times: int,
) -> Exception | None:
    """Run `process` up to `times` times; None once it succeeds, else the last failure. An
    infrastructure failure pauses and propagates; `EventRejected` is not retried (a record
    that does not parse will not parse next time)."""
    failure: Exception | None = None
    for attempt in range(1, max(times, 1) + 1):
        try:
            await process(records)
        except Exception as error:
            if is_infrastructure(error):
                _log.exception(
                    "batch failed on infrastructure; it will be retried",
                    service=service,
                    records=len(records),
                )
                await asyncio.sleep(pause_s)
                raise
            failure = error
            _log.warning(
                "batch failed",
                service=service,
                records=len(records),
                attempt=attempt,
                error=type(error).__name__,
            )
            if isinstance(error, EventRejected):
                return error
            if attempt < times:
                await asyncio.sleep(pause_s)
        else:
            return None
    return failure


async def _set_aside(
    quarantine: Quarantine,
    record: ConsumerRecord[Any, Any],
    failure: Exception,
    *,
    service: str,
    pause_s: float,
) -> None:
    """Quarantine one record that keeps failing. If even that fails on infrastructure, the
    batch is retried; if it fails otherwise, the record is left behind (it stays at its origin,
    and in the audit log), logged by its identifiers, rather than stall the partition."""
    reason = (
        failure
        if isinstance(failure, EventRejected)
        else EventRejected(
            RejectionCode.PROCESSING_FAILED,
            f"{service} failed to process the record ({type(failure).__name__}) after retries",
        )
    )
    ids = record_ids(record)
    _log.error(
        "dead-lettering a record that keeps failing",
        service=service,
        reason=str(reason.code),
        exc_info=failure,
        **ids,
    )
    try:
        await quarantine(record, reason)
    except Exception as error:
        if is_infrastructure(error):
            await asyncio.sleep(pause_s)
            raise
        _log.exception("record could not be dead-lettered; left behind", service=service, **ids)


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
