"""What the benchmark prints: figures, CPU costs and where each service spent its CPU."""

from __future__ import annotations

import math
import os
import pstats
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.pipeline.config import BENCH_PRINCIPAL, P99_TARGET_MS, RSS_TARGET_MB, TARGETS
from benchmarks.pipeline.events import KINDS, BenchEvent
from benchmarks.pipeline.passthrough import PassthroughResult
from benchmarks.pipeline.system import PipelineResult
from services.runtime.settings import REPO_ROOT, Settings


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of an ascending sequence."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[rank - 1]


BASELINE_PARTS = ("benchmark", "kafka")


def costs_line(costs: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:,.0f} us" for k, v in costs.items())


def print_profile(name: str, path: Path, events: int, top: int = 12) -> None:
    """The functions that cost most CPU in a service process (own time), per event."""
    if not path.exists():
        print(f"  profile of {name}: missing (did the process stop cleanly?)")
        return
    stats = pstats.Stats(str(path))
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
    total = sum(tt for _, _, tt, _, _ in raw.values())
    print(
        f"  profile of {name} (CPU time, run and warm-up events): {total:.2f} s,"
        f" {1e6 * total / events:,.0f} us per event; most own time:"
    )
    ranked = sorted(raw.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    for (filename, line, function), (_, calls, tt, ct, _) in ranked:
        where = _short(filename)
        print(
            f"    {1e6 * tt / events:8,.1f} us/event own {1e6 * ct / events:8,.1f} cumul"
            f"  {calls:>9,} calls  {function} ({where}:{line})"
        )


def print_samples(name: str, path: Path, top: int = 14) -> None:
    """On-CPU samples of a service in the measured window: where its CPU time went."""
    if not path.exists():
        print(f"  samples of {name}: missing (see {path.with_suffix('.log')})")
        return
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_short_frame(f) for f in stack.split(";")]
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count
    if total == 0:
        print(f"  samples of {name}: none")
        return
    print(f"  on-CPU samples of {name} in the measured window: {total:,}")
    ours = [f for f in inclusive if "services/" in f or "schemas/" in f]
    print("    inclusive, CaseBridge code:")
    for frame in sorted(ours, key=lambda f: inclusive[f], reverse=True)[:top]:
        print(f"      {100.0 * inclusive[frame] / total:5.1f}%  {frame}")
    print("    own time, any code:")
    for frame in sorted(own, key=lambda f: own[f], reverse=True)[:top]:
        print(f"      {100.0 * own[frame] / total:5.1f}%  {frame}")


def _short_frame(frame: str) -> str:
    for marker in ("site-packages/", str(REPO_ROOT) + "/"):
        frame = frame.replace(marker, "")
    return frame


def _short(filename: str) -> str:
    for marker in ("site-packages/", str(REPO_ROOT) + "/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def ms_line(values: Sequence[float]) -> str:
    if not values:
        return "n/a"
    return (
        f"p50 {percentile(values, 50):,.0f} ms, p99 {percentile(values, 99):,.0f} ms"
        f" (min {values[0]:,.0f}, max {values[-1]:,.0f})"
    )


def header(
    args: Any, events: Sequence[BenchEvent], measured: Sequence[BenchEvent], base: Settings
) -> None:
    sizes = sorted(len(e.value) for e in measured)
    rows = sum(e.audit_rows for e in measured)
    mode = (
        "a backlog" if args.backlog else f"+{args.warmup:,} warm-up, +{args.paced_events:,} paced"
    )
    print(
        f"CaseBridge benchmark: {args.events:,} events ({mode}), {os.cpu_count()} cores,"
        f" Kafka {args.bootstrap} (SASL_SSL, SCRAM-SHA-512, ACLs), a fresh database per"
        " measurement (scram-sha-256, a role per service)"
    )
    print(
        f"  events: value {sizes[0]}-{sizes[-1]} bytes (median {sizes[len(sizes) // 2]}),"
        f" 7 CloudEvents headers, published by {len({e.agency for e in events})} agencies,"
        " each with its own credentials to its own inbound topic; mix "
        + ", ".join(f"{k} {sum(1 for e in measured if e.kind == k)}" for k, _ in KINDS)
        + f"; {rows:,} pipeline audit rows expected"
    )
    print(
        f"  settings: batch_max_records={base.batch_max_records}"
        f" batch_timeout_ms={base.batch_timeout_ms}"
        f" producer_linger_ms={base.producer_linger_ms}; layout {args.layout}"
    )


def passthrough(result: PassthroughResult) -> None:
    print(
        f"(a) raw aiokafka passthrough as {BENCH_PRINCIPAL} over the same SASL_SSL"
        f" (getmany + idempotent acks=all producer, commit per batch):"
        f" {result.messages:,} messages in {result.seconds:.2f} s = {result.rate:,.0f} messages/s"
    )
    print(f"    CPU, % of one core: {result.cpu.describe()}")
    print(
        "    CPU per message: "
        + costs_line(result.cpu.per_event_us(result.messages, BASELINE_PARTS))
    )


def system(
    result: PipelineResult, groups: Sequence[tuple[str, ...]], base: PassthroughResult | None
) -> None:
    pace = f"at {result.rate_asked:,.0f} events/s" if result.rate_asked > 0 else "at full speed"
    ratio = f" = {result.rate / base.rate:.3f} x (a)" if base is not None and base.rate else ""
    print(
        f"{result.label}: {result.events:,} events published {pace} in {result.publish_s:.2f} s;"
        f" all done {result.seconds:.2f} s after the first publish ="
        f" {result.rate:,.0f} events/s{ratio}"
    )
    to = "case update audited" if any("cases" in g for g in groups) else "last audit row"
    print(f"    latency publish -> {to}: {ms_line(result.latency_last_ms)}")
    print(f"    latency publish -> routing-decision audit row: {ms_line(result.latency_routed_ms)}")
    print(
        "    last event done, s after the first publish: "
        + ", ".join(f"{k} {v:.2f}" for k, v in result.stages.items())
    )
    print(f"    CPU, % of one core: {result.cpu.describe()}")
    parts = [*("+".join(g) for g in groups), "kafka", "postgres"]
    costs = result.cpu.per_event_us(result.events, parts)
    total = sum(costs.values())
    cores = os.cpu_count() or 1
    bound = f"; total {total:,.0f} us, at most {cores * 1e6 / total:,.0f} events/s" if total else ""
    print("    CPU per event: " + costs_line(costs) + bound)
    print(f"    ready to run but waiting for a CPU: {result.cpu.describe_waits()}")
    if result.peak_rss_mb:
        print("    peak RSS: " + rss_line(result.peak_rss_mb))
    for problem in result.problems:
        print(f"    PROBLEM: {problem}")


def rss_line(peaks: dict[str, float | None]) -> str:
    return ", ".join(f"{k} {'?' if v is None else f'{v:,.0f}'} MB" for k, v in peaks.items())


def profiles(profile: str | None, groups: Sequence[tuple[str, ...]], log_dir: Path, n: int) -> None:
    for group in groups:
        name = "+".join(group)
        if profile == "cprofile":
            print_profile(name, log_dir / f"{name}.prof", n)
        elif profile == "py-spy":
            print_samples(name, log_dir / f"{name}.py-spy.txt")


def summary(
    base: PassthroughResult | None,
    pipeline: PipelineResult | None,
    whole: Sequence[PipelineResult],
    *,
    backlog: bool,
) -> None:
    """The targets, each MET or NOT MET with the figure it was judged on."""

    def verdict(ok: bool) -> str:
        return "MET" if ok else "NOT MET"

    if backlog:
        peaks = whole[0].peak_rss_mb or {}
        worst = max((v for v in peaks.values() if v is not None), default=0.0)
        print(
            f"target peak RSS <= {RSS_TARGET_MB:,.0f} MB per service on a backlog of"
            f" {whole[0].events:,}: {verdict(0 < worst <= RSS_TARGET_MB)} (largest {worst:,.0f} MB)"
        )
        return
    if base is not None and base.rate > 0:
        for name, result in (("b/a", pipeline), ("c/a", whole[0] if whole else None)):
            if result is not None:
                ratio = result.rate / base.rate
                ok = ratio >= TARGETS[name] and not result.problems
                print(f"ratio {name}: {ratio:.3f} (target >= {TARGETS[name]}): {verdict(ok)}")
    if len(whole) > 1:
        paced = whole[1]
        p99 = percentile(paced.latency_last_ms, 99) if paced.latency_last_ms else math.inf
        ok = p99 <= P99_TARGET_MS and not paced.problems
        print(
            f"latency p99 publish -> case update at {paced.rate_asked:,.0f} events/s (half the"
            f" burst's rate): {p99:,.0f} ms (target <= {P99_TARGET_MS:,.0f} ms): {verdict(ok)}"
        )
