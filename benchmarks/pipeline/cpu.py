"""Where the cores and the memory went: CPU, run-queue waits and peak RSS of processes, from
Linux /proc."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat_fields(pid: int) -> list[str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process; 0 if it is gone."""
    fields = _stat_fields(pid)
    return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / _TICK


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process, its live children and its children that have exited.

    For PostgreSQL's postmaster: every backend is a child, and one that ended meanwhile is
    in the postmaster's cutime/cstime.
    """
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    total = sum(int(v) for v in fields[11:15]) / _TICK
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            child = _stat_fields(int(entry.name))
            if child is not None and child[1] == str(pid):
                total += (int(child[11]) + int(child[12])) / _TICK
    return total


def runqueue_wait_s(pid: int) -> float:
    """Seconds the threads of a process spent runnable but waiting for a CPU (schedstat)."""
    total = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += int((task / "schedstat").read_text().split()[1])
    except OSError:
        return 0.0
    return total / 1e9


def machine_busy_s() -> float:
    """CPU seconds all cores spent not idle (nor waiting for I/O) since boot."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return 0.0
    ticks = [int(v) for v in first[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / _TICK


def _pid_in(path: Path) -> int | None:
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if Path(f"/proc/{pid}").exists() else None


def peak_rss_mb(pid: int) -> float | None:
    """The process's peak resident set (VmHWM), in MiB; None once it has exited."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        return None
    return None


def stack_probes(run_dir: Path) -> dict[str, Callable[[], float]]:
    """CPU probes for the Kafka broker and PostgreSQL of `infra/stack.sh` (when found)."""
    probes: dict[str, Callable[[], float]] = {}
    kafka = _pid_in(run_dir / "kafka" / "kafka.pid")
    if kafka is not None:
        probes["kafka"] = lambda: process_cpu_s(kafka)
    postgres = _pid_in(run_dir / "pg" / "data" / "postmaster.pid")
    if postgres is not None:
        probes["postgres"] = lambda: tree_cpu_s(postgres)
    return probes


@dataclass
class CpuWindow:
    """CPU seconds used over a window by each probe, this process and the whole machine."""

    probes: dict[str, Callable[[], float]]
    waits: dict[str, Callable[[], float]] = field(default_factory=dict)
    """Runqueue-wait probes: how long a process was ready to run but had no CPU."""
    start: dict[str, float] = field(default_factory=dict)
    used: dict[str, float] = field(default_factory=dict)
    waited: dict[str, float] = field(default_factory=dict)
    start_wall: float = 0.0
    wall: float = 0.0

    def _read(self) -> dict[str, float]:
        values = {name: probe() for name, probe in self.probes.items()}
        values["benchmark"] = time.process_time()
        values["machine"] = machine_busy_s()
        values.update({f"wait:{name}": probe() for name, probe in self.waits.items()})
        return values

    def begin(self) -> None:
        self.start = self._read()
        self.start_wall = time.perf_counter()

    def end(self) -> None:
        self.wall = time.perf_counter() - self.start_wall
        now = self._read()
        delta = {name: now[name] - self.start[name] for name in now}
        self.waited = {k[5:]: v for k, v in delta.items() if k.startswith("wait:")}
        self.used = {k: v for k, v in delta.items() if not k.startswith("wait:")}
        accounted = sum(v for k, v in self.used.items() if k != "machine")
        self.used["rest"] = max(0.0, self.used["machine"] - accounted)

    def describe_waits(self) -> str:
        """Each probed process's time ready to run but without a CPU, as % of the window."""
        return ", ".join(f"{k} {100.0 * v / self.wall:.0f}%" for k, v in self.waited.items())

    def describe(self) -> str:
        """Each part's share of one core, e.g. `intake 80%`; `rest` is everything else."""
        if self.wall <= 0:
            return "n/a"
        cores = os.cpu_count() or 1
        parts = [
            f"{k} {100.0 * v / self.wall:.0f}%" for k, v in self.used.items() if k != "machine"
        ]
        return (
            ", ".join(parts)
            + f"; machine {100.0 * self.used['machine'] / self.wall:.0f}% of {100 * cores}%"
        )

    def per_event_us(self, events: int, parts: Sequence[str]) -> dict[str, float]:
        return {p: 1e6 * self.used[p] / events for p in parts if p in self.used}
