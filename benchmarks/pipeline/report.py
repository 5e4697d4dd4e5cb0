"""What the benchmark prints: figures, CPU costs and where each service spent its CPU."""

from __future__ import annotations

import math
import pstats
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from services.runtime.settings import REPO_ROOT


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
