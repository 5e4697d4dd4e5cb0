"""(b) and (c): CaseBridge measured end to end, through its audit log."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import asyncpg

from benchmarks.pipeline.clients import AgencyProducers, publish
from benchmarks.pipeline.config import POLL_S, READY_TIMEOUT_S
from benchmarks.pipeline.cpu import CpuWindow
from benchmarks.pipeline.events import BenchEvent
from benchmarks.pipeline.processes import ServiceProcesses
from services.runtime.credentials import (
    AUDITOR_ROLE,
    OWNER_ROLE,
    database_url,
)
from services.runtime.database import asyncpg_dsn
from services.runtime.settings import Settings


@dataclass(frozen=True)
class PipelineResult:
    events: int
    rows: int
    publish_s: float
    seconds: float
    latency_last_ms: list[float]
    latency_routed_ms: list[float]
    problems: list[str]
    cpu: CpuWindow
    stages: dict[str, float]
    """Seconds from the first publish until each stage had handled its last event."""

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


class AuditWatch:
    """Reads the audit log of the run: progress by `audit_head`, then the run's rows."""

    def __init__(self, conn: asyncpg.Connection, topic_prefix: str) -> None:
        self._conn = conn
        self._prefix = topic_prefix
        self.first_seq = 0

    async def next_seq(self) -> int:
        """The seq the next row will get (seqs are gap-free and committed in order; the
        auditor role may read the log, not the writer's `audit_head`)."""
        value: int = await self._conn.fetchval("SELECT coalesce(max(seq) + 1, 0) FROM audit_log")
        return value

    async def mark(self) -> None:
        """Rows from here on are this run's (the topic prefix filters out anything else)."""
        self.first_seq = await self.next_seq()

    async def wait_for(
        self, rows: int, timeout_s: float, alive: Callable[[], None] | None = None
    ) -> int:
        """Wait until `rows` rows were appended since `mark`; the number seen."""
        deadline = time.monotonic() + timeout_s
        seen = await self.next_seq() - self.first_seq
        while seen < rows and time.monotonic() < deadline:
            if alive is not None:
                alive()
            await asyncio.sleep(POLL_S)
            seen = await self.next_seq() - self.first_seq
        return seen

    async def rows(self, from_seq: int) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self._conn.fetch(
            "SELECT outcome, event_id, attributes->>'ce_causationid' AS cause, recorded_at,"
            " attributes->>'ce_time' AS ce_time"
            " FROM audit_log WHERE seq >= $1 AND starts_with(kafka_topic, $2)",
            from_seq,
            self._prefix,
        )
        return rows


async def intake_done(settings: Settings, event_ids: list[str]) -> float:
    """When intake's last transaction for these events began (its batch's start).

    Intake's table is readable by intake and the owner only: read as the owner (the role that
    set the database up), once the measurement is over.
    """
    conn = await asyncpg.connect(asyncpg_dsn(database_url(settings, OWNER_ROLE)))
    try:
        at: datetime | None = await conn.fetchval(
            "SELECT max(first_seen_at) FROM intake_seen_event WHERE event_id = ANY($1::text[])",
            event_ids,
        )
    finally:
        await conn.close()
    return at.timestamp() if at is not None else 0.0


def router_done(rows: Sequence[asyncpg.Record]) -> float:
    """When the router made its last decision (the decision events' `ce_time`)."""
    times = [
        datetime.fromisoformat(r["ce_time"]).timestamp()
        for r in rows
        if r["outcome"] == "routed" and r["ce_time"]
    ]
    return max(times, default=0.0)


def measure(
    events: Sequence[BenchEvent], sent_at: Sequence[float], rows: Sequence[asyncpg.Record]
) -> tuple[list[float], list[float], float, list[str]]:
    """Latencies (to the last row, to the routed row), the last row's time, and problems."""
    index = {e.event_id: i for i, e in enumerate(events)}
    last = [0.0] * len(events)
    routed = [0.0] * len(events)
    counts = [[0, 0, 0, 0] for _ in events]  # received, validated, routed, delivered
    column = {"received": 0, "validated": 1, "routed": 2, "delivered": 3}
    unexpected = 0
    for row in rows:
        outcome = row["outcome"]
        i = index.get(row["cause"] if outcome == "routed" else row["event_id"])
        if i is None or outcome not in column:
            unexpected += 1
            continue
        at = row["recorded_at"].timestamp()
        counts[i][column[outcome]] += 1
        last[i] = max(last[i], at)
        if outcome == "routed":
            routed[i] = at
    problems: list[str] = []
    wrong = [i for i, e in enumerate(events) if counts[i] != list(_want(e))]
    if wrong:
        missing = sum(
            1 for i in wrong if any(c < w for c, w in zip(counts[i], _want(events[i]), strict=True))
        )
        problems.append(
            f"{len(wrong)} events have other audit rows than expected"
            f" ({missing} with rows missing, {len(wrong) - missing} with extra rows)"
        )
    if unexpected:
        problems.append(f"{unexpected} audit rows of this run belong to no published event")
    done = [i for i in range(len(events)) if last[i] > 0]
    latency_last = sorted((last[i] - sent_at[i]) * 1000.0 for i in done)
    latency_routed = sorted((routed[i] - sent_at[i]) * 1000.0 for i in done if routed[i] > 0)
    end = max((last[i] for i in done), default=0.0)
    return latency_last, latency_routed, end, problems


def _want(event: BenchEvent) -> tuple[int, int, int, int]:
    return (1, 1, 1, event.deliveries)


async def pipeline(
    settings: Settings,
    warmup: Sequence[BenchEvent],
    events: Sequence[BenchEvent],
    *,
    groups: list[tuple[str, ...]],
    log_dir: Path,
    rate: float,
    timeout_s: float,
    profile: str | None,
    probes: dict[str, Callable[[], float]],
) -> PipelineResult:
    # The audit log is read as the auditors read it: the read-only role.
    conn = await asyncpg.connect(asyncpg_dsn(database_url(settings, AUDITOR_ROLE)))
    services = ServiceProcesses(groups=groups, settings=settings, log_dir=log_dir, profile=profile)
    prod = AgencyProducers(settings)
    try:
        watch = AuditWatch(conn, settings.topic_prefix)
        await watch.mark()
        services.start()
        await prod.start([e.agency for e in (*warmup, *events)])
        # Warm-up: every consumer group has joined, and the code paths are warm, once the
        # warm-up events are all in the audit log.
        await publish(prod, warmup, topic_prefix=settings.topic_prefix)
        want = sum(e.audit_rows for e in warmup)
        seen = await watch.wait_for(want, READY_TIMEOUT_S, services.check_alive)
        if seen < want:
            raise TimeoutError(
                f"warm-up: {seen} of {want} audit rows after {READY_TIMEOUT_S:.0f} s;"
                f" see the service logs in {log_dir}"
            )
        await watch.mark()
        cpu = CpuWindow(probes={**services.probes(), **probes}, waits=services.waits())
        services.start_sampling()
        cpu.begin()
        t0 = time.perf_counter()
        sent_at = await publish(prod, events, topic_prefix=settings.topic_prefix, rate=rate)
        publish_s = time.perf_counter() - t0
        want = sum(e.audit_rows for e in events)
        seen = await watch.wait_for(want, timeout_s, services.check_alive)
        cpu.end()
        await services.stop_sampling()
        rows = await watch.rows(watch.first_seq)
        latency_last, latency_routed, end, problems = measure(events, sent_at, rows)
        done = {
            "published": sent_at[-1],
            "intake": await intake_done(settings, [e.event_id for e in events]),
            "router": router_done(rows),
            "audit": end,
        }
        stages = {k: v - sent_at[0] for k, v in done.items() if v > 0}
        if seen < want:
            problems.insert(0, f"only {seen} of {want} audit rows after {timeout_s:.0f} s")
        return PipelineResult(
            events=len(events),
            rows=len(rows),
            publish_s=publish_s,
            seconds=end - sent_at[0] if end else 0.0,
            latency_last_ms=latency_last,
            latency_routed_ms=latency_routed,
            problems=problems,
            cpu=cpu,
            stages=stages,
        )
    finally:
        await prod.stop()
        await services.stop()
        await conn.close()
