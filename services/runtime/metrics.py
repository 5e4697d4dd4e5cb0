"""CaseBridge's Prometheus metrics, defined in one place.

The places that see a fact count it (the publisher wrapper below for dead letters, the case
coordinator for transitions and escalations, the audit recorder and the signer); the gauges
that describe a state (consumer lag, outbox backlog) are sampled when Prometheus scrapes
(`services.runtime.health`). Everything lives in the process's default registry, beside
prometheus-client's process metrics and FastStream's `faststream_*` consumer metrics
(`middleware`), so one `/metrics` serves every service a process runs.

Labels hold only bounded values that name no one: service names, consumer groups, topic
names and partitions, reason codes, case kinds and actions, deadline rule ids. Never a
message body, a key, an event id or a field about a person.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import time
from collections.abc import Iterable, Sequence
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition
from faststream.kafka import KafkaBroker
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from prometheus_client import REGISTRY, Counter, Gauge

from schemas.errors import RejectionCode
from schemas.topics import DEADLETTER
from services.runtime.kafka import Outgoing, Publisher

# --- what the services publish -------------------------------------------------------------

RECORDS_PUBLISHED = Counter(
    "casebridge_records_published",
    "Records a service published and the broker acknowledged.",
    ["service"],
)
DEAD_LETTERS = Counter(
    "casebridge_dead_letters",
    "Records dead-lettered (published to the dead-letter topic), by the rejecting service and"
    " the rejection code.",
    ["service", "reason"],
)
CONSUMER_LAG = Gauge(
    "casebridge_consumer_lag",
    "Records on a partition the group's consumer has not fetched yet (end offset minus its"
    " position), sampled at each scrape.",
    ["group", "topic", "partition"],
)

AUDIT, CASES = "audit", "cases"
"""The `service` label of the series only one service has."""

# --- cases ------------------------------------------------------------------------------------

CASE_TRANSITIONS = Counter(
    "casebridge_case_transitions",
    "Case changes committed, by case kind and the action (or case_opened) that made them.",
    ["kind", "action"],
)
CASE_REJECTIONS = Counter(
    "casebridge_case_transitions_rejected",
    "Case actions refused (the sender is told), by reason.",
    ["reason"],
)
DEADLINES_BREACHED = Counter(
    "casebridge_case_deadlines_breached",
    "Case deadlines missed (each raises one escalation), by deadline rule.",
    ["rule"],
)
ESCALATIONS = Counter(
    "casebridge_case_escalations",
    "Escalation notices sent to agencies (the owner and each fallback or supervisor), by"
    " deadline rule.",
    ["rule"],
)
OUTBOX_BACKLOG = Gauge(
    "casebridge_cases_outbox_backlog",
    "Case records written but not yet published (case_outbox rows), sampled at each scrape.",
    ["service"],
)

# --- audit ------------------------------------------------------------------------------------

AUDIT_APPENDED = Counter(
    "casebridge_audit_records_appended",
    "Records appended to the audit log, by outcome (received, rejected, ...).",
    ["outcome"],
)
AUDIT_TREE_SIZE = Gauge(
    "casebridge_audit_tree_size",
    "Records the signer has read from the audit log and checked (its Merkle tree's size).",
    ["service"],
)
AUDIT_SIGNED_SIZE = Gauge(
    "casebridge_audit_signed_tree_size",
    "Size of the latest signed tree head.",
    ["service"],
)
AUDIT_HEAD_TIMESTAMP = Gauge(
    "casebridge_audit_signed_head_timestamp_seconds",
    "When the latest signed tree head was signed (Unix time).",
    ["service"],
)
AUDIT_HEAD_AGE = Gauge(
    "casebridge_audit_signed_head_age_seconds",
    "Seconds since the latest signed tree head.",
    ["service"],
)
AUDIT_VERIFICATION_FAILURES = Counter(
    "casebridge_audit_verification_failures",
    "Times the signer found the log or its exported heads contradicting what it signed (and"
    " refused to sign), by what failed: log, file, table or kafka.",
    ["check"],
)

# --- health -----------------------------------------------------------------------------------

HEALTH_CHECK = Gauge(
    "casebridge_health_check_up",
    "1 if a readiness check passes, 0 if not (the same checks as /readyz), per service.",
    ["service", "check"],
)

_signed_at: list[float] = []
"""When the latest head was signed (Unix time); empty before the first. A process runs one
signer at most, which reports here."""


def _head_age() -> float:
    return max(time.time() - _signed_at[-1], 0.0) if _signed_at else math.nan


def signer_state(*, tree_size: int, signed_size: int | None, signed_at_ms: int | None) -> None:
    """What the signer has read and signed; called by the signer after each round. The
    series appear with the first report: a process without a signer has none."""
    AUDIT_TREE_SIZE.labels(AUDIT).set(tree_size)
    if signed_size is not None and signed_at_ms is not None:
        if not _signed_at:
            AUDIT_HEAD_AGE.labels(AUDIT).set_function(_head_age)
        _signed_at[:] = [signed_at_ms / 1000]
        AUDIT_SIGNED_SIZE.labels(AUDIT).set(signed_size)
        AUDIT_HEAD_TIMESTAMP.labels(AUDIT).set(signed_at_ms / 1000)


def middleware(service: str) -> KafkaPrometheusMiddleware:
    """FastStream's consumer metrics for one service's broker (`app_name` = the service)."""
    return KafkaPrometheusMiddleware(registry=REGISTRY, app_name=service)


class CountingPublisher:
    """A service's publisher, counting what the broker acknowledged: every record, and each
    dead letter by its rejection code (`cb_error_code`), which is the reason as the sender and
    the operators see it. Counted after the broker has the batch, so a retried batch that
    failed before is not counted twice."""

    def __init__(self, inner: Publisher, *, service: str) -> None:
        self._inner = inner
        self._service = service
        self._published = RECORDS_PUBLISHED.labels(service)
        for code in RejectionCode:  # from 0, so that `increase` sees the first one
            DEAD_LETTERS.labels(service, str(code))

    async def publish_all(
        self, records: Sequence[Outgoing], *, consumed: Sequence[ConsumerRecord[Any, Any]] = ()
    ) -> None:
        await self._inner.publish_all(records, consumed=consumed)
        self._published.inc(len(records))
        for record in records:
            if record.topic == DEADLETTER.name:
                reason = record.headers.get("cb_error_code", "UNKNOWN")
                DEAD_LETTERS.labels(self._service, reason).inc()


def case_outcomes(transitions: Iterable[tuple[str, str]], rejections: Iterable[str]) -> None:
    """Count a committed transaction's case changes ((kind, action)) and refusals (reason)."""
    for kind, action in transitions:
        CASE_TRANSITIONS.labels(kind, action).inc()
    for reason in rejections:
        CASE_REJECTIONS.labels(reason).inc()


def escalated(rule: str, *, notices: int) -> None:
    """Count one missed deadline of `rule` and the escalation notices it raised."""
    DEADLINES_BREACHED.labels(rule).inc()
    ESCALATIONS.labels(rule).inc(notices)


def audit_appended(outcomes: Iterable[str]) -> None:
    """Count records appended to the audit log, by outcome."""
    for outcome, count in collections.Counter(outcomes).items():
        AUDIT_APPENDED.labels(outcome).inc(count)


_lag_series: dict[str, set[tuple[str, str, str]]] = {}
"""The lag series each group reported last, so a partition that moved away is dropped."""


async def sample_consumer_lag(broker: KafkaBroker, *, position_wait_s: float = 0.2) -> None:
    """Set `casebridge_consumer_lag` for every partition the broker's consumers hold now.

    The end offsets are asked of the broker (one request per consumer); the position is the
    consumer's own. A stuck consumer keeps its position while the end moves on, so its lag
    grows; a partition whose position is not known yet (just assigned) is left out.
    """
    if not broker.running:
        return  # starting or stopping: its consumers are not to be asked
    for subscriber in broker.subscribers:
        consumer: Any = getattr(subscriber, "consumer", None)
        group = getattr(subscriber, "group_id", None)
        if consumer is None or not group:
            continue
        assigned: list[TopicPartition] = sorted(consumer.assignment())
        ends = await consumer.end_offsets(assigned) if assigned else {}
        positions = await asyncio.gather(
            *(_position(consumer, tp, position_wait_s) for tp in assigned)
        )
        now: set[tuple[str, str, str]] = set()
        for tp, position in zip(assigned, positions, strict=True):
            if position is None or tp not in ends:
                continue
            labels = (str(group), tp.topic, str(tp.partition))
            CONSUMER_LAG.labels(*labels).set(max(ends[tp] - position, 0))
            now.add(labels)
        for gone in _lag_series.get(str(group), set()) - now:
            with contextlib.suppress(KeyError):
                CONSUMER_LAG.remove(*gone)
        _lag_series[str(group)] = now


async def _position(consumer: Any, tp: TopicPartition, wait_s: float) -> int | None:
    try:
        position: int = await asyncio.wait_for(consumer.position(tp), wait_s)
    except Exception:  # not assigned any more, or no position yet: nothing to say
        return None
    return position
