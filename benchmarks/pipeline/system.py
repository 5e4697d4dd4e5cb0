"""(b) and (c): CaseBridge measured end to end, through its audit log.

(b) runs intake, router and audit: an event is done when the audit log holds its received,
validated, routed and delivered rows. (c) runs the whole system, the cases service too: an
event is done when, in addition, the case it opens has been published by the cases service's
outbox relay (its case event and its updates to the agencies) and those records are in the
audit log (`published` rows whose `ce_causationid` is the event). One set of service
processes serves several measured phases in turn (a burst, then a paced run).
"""

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
from schemas.topics import CASE_EVENTS
from services.runtime.credentials import AUDITOR_ROLE, OWNER_ROLE, database_url
from services.runtime.database import asyncpg_dsn
from services.runtime.progress import Progress
from services.runtime.settings import Settings

PIPELINE_OUTCOMES = ("received", "validated", "routed", "delivered")
QUIET_S = 1.0
"""(c): once every case event is in, rows still arriving within this long are waited for
(the updates the relay sent with it)."""


@dataclass(frozen=True)
class Phase:
    """One measured stretch: these events, published at a rate (0: full speed) that may
    depend on the phases measured before it (half the burst's, say)."""

    label: str
    events: Sequence[BenchEvent]
    rate_of: Callable[[Sequence[PipelineResult]], float] = lambda _: 0.0


@dataclass(frozen=True)
class PipelineResult:
    label: str
    events: int
    rows: int
    publish_s: float
    seconds: float
    latency_last_ms: list[float]
    """Publish -> the event's last audit row ((b)) or its last case record audited ((c))."""
    latency_routed_ms: list[float]
    problems: list[str]
    cpu: CpuWindow
    stages: dict[str, float]
    """Seconds from the first publish until each stage had handled its last event."""
    rate_asked: float = 0.0
    peak_rss_mb: dict[str, float | None] | None = None

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


class AuditWatch:
    """Reads the audit log of the run: progress by sequence number, then the run's rows."""

    def __init__(
        self, conn: asyncpg.Connection, topic_prefix: str, *, progress: bool | None = False
    ) -> None:
        self._conn = conn
        self._prefix = topic_prefix
        self.first_seq = 0
        self.progress = progress
        """Show the waits' progress on stderr (`services.runtime.progress`)."""

    async def next_seq(self) -> int:
        """The seq the next row will get (seqs are gap-free and committed in order; the
        auditor role may read the log, not the writer's `audit_head`)."""
        value: int = await self._conn.fetchval("SELECT coalesce(max(seq) + 1, 0) FROM audit_log")
        return value

    async def mark(self) -> None:
        """Rows from here on are this run's (the topic prefix filters out anything else)."""
        self.first_seq = await self.next_seq()

    async def wait_for(
        self,
        rows: int,
        timeout_s: float,
        alive: Callable[[], None] | None = None,
        *,
        label: str = "warm-up",
    ) -> int:
        """Wait until `rows` rows were appended since `mark`; the number seen."""
        deadline = time.monotonic() + timeout_s
        seen = await self.next_seq() - self.first_seq
        with Progress(label, total=rows, unit="audit rows", enabled=self.progress) as shown:
            while seen < rows and time.monotonic() < deadline:
                if alive is not None:
                    alive()
                await asyncio.sleep(POLL_S)
                seen = await self.next_seq() - self.first_seq
                shown.update(seen)
        return seen

    async def cases_published(self, event_ids: list[str]) -> int:
        """How many of the events have their case event published and audited."""
        value: int = await self._conn.fetchval(
            "SELECT count(DISTINCT attributes->>'ce_causationid') FROM audit_log"
            " WHERE seq >= $1 AND kafka_topic = $2 AND outcome = 'published'"
            " AND attributes->>'ce_causationid' = ANY($3::text[])",
            self.first_seq,
            self._prefix + CASE_EVENTS.name,
            event_ids,
        )
        return value

    async def wait_for_cases(
        self,
        events: Sequence[BenchEvent],
        rows: int,
        timeout_s: float,
        alive: Callable[[], None],
        *,
        label: str = "warm-up",
    ) -> int:
        """(c): wait until every event's case event is audited and at least `rows` rows are
        in, then until the log has been quiet for QUIET_S; the number of events done."""
        ids = [e.event_id for e in events]
        deadline = time.monotonic() + timeout_s
        done = 0
        with Progress(label, total=len(ids), unit="cases", enabled=self.progress) as shown:
            while time.monotonic() < deadline:
                alive()
                done = await self.cases_published(ids)
                shown.update(done)
                if done >= len(ids) and await self.next_seq() - self.first_seq >= rows:
                    break
                await asyncio.sleep(max(POLL_S, 0.5))
        last, quiet_since = await self.next_seq(), time.monotonic()
        while time.monotonic() - quiet_since < QUIET_S and time.monotonic() < deadline:
            await asyncio.sleep(POLL_S)
            now = await self.next_seq()
            if now != last:
                last, quiet_since = now, time.monotonic()
        return done

    async def rows(self, from_seq: int) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self._conn.fetch(
            "SELECT outcome, event_id, attributes->>'ce_causationid' AS cause, recorded_at,"
            " attributes->>'ce_time' AS ce_time, kafka_topic"
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


@dataclass
class Measured:
    latency_last_ms: list[float]
    latency_routed_ms: list[float]
    end: float
    pipeline_end: float
    cases_end: float
    problems: list[str]


def measure(
    events: Sequence[BenchEvent],
    sent_at: Sequence[float],
    rows: Sequence[asyncpg.Record],
    *,
    with_cases: bool,
) -> Measured:
    """Latencies and problems from the run's audit rows. With the cases service, an event is
    done at its last `published` row caused by it (case event, updates), and must have one on
    the case events topic."""
    index = {e.event_id: i for i, e in enumerate(events)}
    last = [0.0] * len(events)
    routed = [0.0] * len(events)
    case_at = [0.0] * len(events)
    case_event = [0] * len(events)
    counts = [[0, 0, 0, 0] for _ in events]  # received, validated, routed, delivered
    column = {o: n for n, o in enumerate(PIPELINE_OUTCOMES)}
    case_topic = CASE_EVENTS.name
    unexpected = 0
    for row in rows:
        outcome = row["outcome"]
        at = row["recorded_at"].timestamp()
        if with_cases and outcome == "published":
            i = index.get(row["cause"] or "")
            if i is not None:  # follow-ups have causes of their own ("<id>:<case>")
                case_at[i] = max(case_at[i], at)
                case_event[i] += row["kafka_topic"].endswith(case_topic)
            continue
        i = index.get(row["cause"] if outcome == "routed" else row["event_id"])
        if i is None or outcome not in column:
            unexpected += 1
            continue
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
    if with_cases:
        no_case = sum(1 for n in case_event if n == 0)
        twice = sum(1 for n in case_event if n > 1)
        if no_case:
            problems.append(f"{no_case} events have no case event published and audited")
        if twice:
            problems.append(f"{twice} events have more than one case event (duplicates)")
    pipeline_end = max((t for t in last if t > 0), default=0.0)
    cases_end = max(case_at, default=0.0)
    if with_cases:
        last = [max(a, b) if b > 0 else 0.0 for a, b in zip(last, case_at, strict=True)]
    done = [i for i in range(len(events)) if last[i] > 0]
    return Measured(
        latency_last_ms=sorted((last[i] - sent_at[i]) * 1000.0 for i in done),
        latency_routed_ms=sorted((routed[i] - sent_at[i]) * 1000.0 for i in done if routed[i]),
        end=max((last[i] for i in done), default=0.0),
        pipeline_end=pipeline_end,
        cases_end=cases_end if with_cases else 0.0,
        problems=problems,
    )


def _want(event: BenchEvent) -> tuple[int, int, int, int]:
    return (1, 1, 1, event.deliveries)


async def run_system(
    settings: Settings,
    warmup: Sequence[BenchEvent],
    phases: Sequence[Phase],
    *,
    groups: list[tuple[str, ...]],
    log_dir: Path,
    timeout_s: float,
    profile: str | None,
    probes: dict[str, Callable[[], float]],
    backlog: bool = False,
    progress: bool | None = False,
) -> list[PipelineResult]:
    """Start the service processes, warm them up, then measure each phase in turn.

    `backlog`: the (one) phase's events are published before the services start, so they
    work through a backlog (what memory it takes is the point). `progress`: each wait's
    progress on stderr."""
    with_cases = any("cases" in g for g in groups)
    # The audit log is read as the auditors read it: the read-only role.
    conn = await asyncpg.connect(asyncpg_dsn(database_url(settings, AUDITOR_ROLE)))
    services = ServiceProcesses(groups=groups, settings=settings, log_dir=log_dir, profile=profile)
    prod = AgencyProducers(settings)
    results: list[PipelineResult] = []
    try:
        watch = AuditWatch(conn, settings.topic_prefix, progress=progress)
        await watch.mark()
        everything = [*warmup, *(e for p in phases for e in p.events)]
        await prod.start([e.agency for e in everything])
        backlog_sent: list[float] = []
        backlog_s = 0.0
        if backlog:
            t0 = time.perf_counter()
            backlog_sent = await publish(prod, phases[0].events, topic_prefix=settings.topic_prefix)
            backlog_s = time.perf_counter() - t0
        services.start()
        if not backlog:
            await _warm_up(watch, services, prod, settings, warmup, with_cases, log_dir)
        for phase in phases:
            if not backlog:  # a backlog's rows may start before this line: marked above
                await watch.mark()
            cpu = CpuWindow(probes={**services.probes(), **probes}, waits=services.waits())
            services.start_sampling()
            cpu.begin()
            t0 = time.perf_counter()
            rate = phase.rate_of(results)
            if backlog:
                sent_at = backlog_sent
            else:
                sent_at = await publish(
                    prod, phase.events, topic_prefix=settings.topic_prefix, rate=rate
                )
            publish_s = backlog_s if backlog else time.perf_counter() - t0
            want = sum(e.audit_rows for e in phase.events)
            if with_cases:
                done = await watch.wait_for_cases(
                    phase.events, want, timeout_s, services.check_alive, label=phase.label
                )
                seen_note = f"only {done} of {len(phase.events)} cases published and audited"
                complete = done >= len(phase.events)
            else:
                seen = await watch.wait_for(
                    want, timeout_s, services.check_alive, label=phase.label
                )
                seen_note = f"only {seen} of {want} audit rows"
                complete = seen >= want
            cpu.end()
            await services.stop_sampling()
            rows = await watch.rows(watch.first_seq)
            m = measure(phase.events, sent_at, rows, with_cases=with_cases)
            done_at = {
                "published": sent_at[-1],
                "intake": await intake_done(settings, [e.event_id for e in phase.events]),
                "router": router_done(rows),
                "audit": m.pipeline_end,
            }
            if with_cases:
                done_at["cases (audited)"] = m.cases_end
            if not complete:
                m.problems.insert(0, f"{seen_note} after {timeout_s:.0f} s")
            results.append(
                PipelineResult(
                    label=phase.label,
                    events=len(phase.events),
                    rows=len(rows),
                    publish_s=publish_s,
                    seconds=m.end - sent_at[0] if m.end else 0.0,
                    latency_last_ms=m.latency_last_ms,
                    latency_routed_ms=m.latency_routed_ms,
                    problems=m.problems,
                    cpu=cpu,
                    stages={k: v - sent_at[0] for k, v in done_at.items() if v > 0},
                    rate_asked=rate,
                    peak_rss_mb=services.peak_rss_mb(),
                )
            )
        return results
    finally:
        await prod.stop()
        await services.stop()
        await conn.close()


async def _warm_up(
    watch: AuditWatch,
    services: ServiceProcesses,
    prod: AgencyProducers,
    settings: Settings,
    warmup: Sequence[BenchEvent],
    with_cases: bool,
    log_dir: Path,
) -> None:
    """Every consumer group has joined, and the code paths are warm, once the warm-up
    events have all their effects in the audit log."""
    await publish(prod, warmup, topic_prefix=settings.topic_prefix)
    want = sum(e.audit_rows for e in warmup)
    if with_cases:
        done = await watch.wait_for_cases(warmup, want, READY_TIMEOUT_S, services.check_alive)
        short = done < len(warmup)
        seen_note = f"{done} of {len(warmup)} cases published"
    else:
        seen = await watch.wait_for(want, READY_TIMEOUT_S, services.check_alive)
        short = seen < want
        seen_note = f"{seen} of {want} audit rows"
    if short:
        raise TimeoutError(
            f"warm-up: {seen_note} after {READY_TIMEOUT_S:.0f} s; see the service logs in {log_dir}"
        )
