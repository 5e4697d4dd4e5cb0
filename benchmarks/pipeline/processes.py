"""The service processes of a run: one OS process per service, as in production."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from benchmarks.pipeline.config import RUN_SETTINGS, STOP_TIMEOUT_S
from benchmarks.pipeline.cpu import peak_rss_mb, process_cpu_s, runqueue_wait_s
from services.runtime.settings import REPO_ROOT, Settings


def service_env(settings: Settings) -> dict[str, str]:
    """This environment plus what the run overrides; every other setting (batch sizes, linger,
    secrets) reaches the services as the benchmark itself read it."""
    env = dict(os.environ)
    for name in RUN_SETTINGS:
        env[f"CASEBRIDGE_{name.upper()}"] = str(getattr(settings, name))
    return env


_CPROFILED = """
import cProfile, sys, time
import services.bootstrap  # imported before profiling starts: the profile shows run time only
from services.cli import main
profile = cProfile.Profile(time.process_time)
try:
    profile.runcall(main, sys.argv[2:])
finally:
    profile.dump_stats(sys.argv[1])
"""
"""Runs `casebridge <args>` under cProfile timed by CPU time, not wall time, so that other
processes competing for the two cores do not inflate the profile."""


def _py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise RuntimeError("--profile py-spy needs py-spy (pip install py-spy)")
    return found


def _cpu_of(pid: int) -> Callable[[], float]:
    return lambda: process_cpu_s(pid)


def _wait_of(pid: int) -> Callable[[], float]:
    return lambda: runqueue_wait_s(pid)


@dataclass
class ServiceProcesses:
    """The service processes of one run, their logs, and how they are stopped."""

    groups: list[tuple[str, ...]]
    settings: Settings
    log_dir: Path
    profile: str | None = None
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    samplers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _logs: list[TextIO] = field(default_factory=list)

    def start(self) -> None:
        env = service_env(self.settings)
        for group in self.groups:
            name = "+".join(group)
            command = [sys.executable]
            if self.profile == "cprofile":
                command += ["-c", _CPROFILED, str(self.log_dir / f"{name}.prof")]
            elif self.profile == "pyinstrument":
                command += [
                    "-m",
                    "pyinstrument",
                    "--renderer",
                    "text",
                    "--outfile",
                    str(self.log_dir / f"{name}.pyinstrument.txt"),
                    "-m",
                    "services.cli",
                ]
            else:
                command += ["-m", "services.cli"]
            command += ["run", "--services", ",".join(group)]
            log = (self.log_dir / f"{name}.log").open("w")
            self._logs.append(log)
            # A session of its own, as a deployed service has: with the kernel's autogroup
            # scheduling, processes of one session share one fair share of the CPUs.
            self.procs[name] = subprocess.Popen(
                command,
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def start_sampling(self) -> None:
        """py-spy on every service process, on-CPU samples only, until `stop_sampling`."""
        if self.profile != "py-spy":
            return
        spy = _py_spy()
        for name, p in self.procs.items():
            log = (self.log_dir / f"{name}.py-spy.log").open("w")
            self._logs.append(log)
            self.samplers[name] = subprocess.Popen(
                [
                    spy,
                    "record",
                    "--pid",
                    str(p.pid),
                    "--format",
                    "raw",
                    "--function",
                    "--nonblocking",
                    "--rate",
                    "250",
                    "--output",
                    str(self.log_dir / f"{name}.py-spy.txt"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    async def stop_sampling(self) -> None:
        for sampler in self.samplers.values():
            sampler.send_signal(signal.SIGINT)
        for sampler in self.samplers.values():
            try:
                await asyncio.to_thread(sampler.wait, STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                sampler.kill()
                await asyncio.to_thread(sampler.wait)
        self.samplers.clear()

    def probes(self) -> dict[str, Callable[[], float]]:
        return {name: _cpu_of(p.pid) for name, p in self.procs.items()}

    def peak_rss_mb(self) -> dict[str, float | None]:
        """Each service process's peak resident memory so far (MiB)."""
        return {name: peak_rss_mb(p.pid) for name, p in self.procs.items()}

    def waits(self) -> dict[str, Callable[[], float]]:
        return {name: _wait_of(p.pid) for name, p in self.procs.items()}

    def check_alive(self) -> None:
        for name, p in self.procs.items():
            code = p.poll()
            if code is not None:
                raise RuntimeError(
                    f"service process {name} exited with {code}; see {self.log_dir}/{name}.log"
                )

    async def stop(self) -> None:
        await self.stop_sampling()
        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for p in self.procs.values():
            try:
                await asyncio.to_thread(p.wait, max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                await asyncio.to_thread(p.wait)
        for log in self._logs:
            log.close()
