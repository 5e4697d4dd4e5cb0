"""The chaos run's moving parts: the service processes, and the faults done to them and to the
broker and the database.

Each service runs as `casebridge run --services <name>` in its own OS process (its own session,
as a deployed service: a Ctrl-C of the run does not reach it), as its own Kafka principal and
database role, reading its secrets from the run directory, exactly as `benchmarks.pipeline`
runs them. Faults are done from outside, with signals and the stack's own scripts:
SIGKILL (a crash), SIGSTOP/SIGCONT (a network partition: the process neither heartbeats nor
answers, and the group coordinator fences it once its session times out; no root network
tools are needed), a Kafka node SIGKILLed and started again with infra/kafka/kafka.sh, and
PostgreSQL stopped with `pg_ctl stop -m immediate` (no shutdown checkpoint: a crash) and
started again with infra/postgres/postgres.sh.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import asyncpg
from confluent_kafka.admin import AdminClient

from benchmarks.chaos_oracle import committed, headers_at, high_watermarks, partitions_of
from benchmarks.pipeline.processes import service_env
from services.runtime.credentials import OWNER_ROLE, database_url
from services.runtime.database import asyncpg_dsn
from services.runtime.settings import REPO_ROOT, Settings
from tests.support.stack import Stack, kafka_node_pid

SERVICES = ("intake", "router", "cases", "audit")
EVERY_INSTANCE: list[Instance] = []
"""Every process started, for the last-resort clean-up (`kill_all`)."""
STOP_TIMEOUT_S = 30.0
KAFKA_SH = REPO_ROOT / "infra" / "kafka" / "kafka.sh"
POSTGRES_SH = REPO_ROOT / "infra" / "postgres" / "postgres.sh"


@dataclass
class Instance:
    """One process of one service."""

    service: str
    number: int
    command: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    paused: bool = False
    down: bool = True
    """Stopped or killed on purpose (not a crash)."""
    _log: TextIO | None = None

    @property
    def name(self) -> str:
        return f"{self.service}-{self.number}"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError(f"{self.name} is not running")
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        self._close_log()
        self._log = self.log_path.open("a")
        self.proc = subprocess.Popen(
            self.command,
            cwd=REPO_ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.paused = False
        self.down = False

    def signal(self, sig: signal.Signals) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def pause(self) -> None:
        self.signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        self.signal(signal.SIGCONT)
        self.paused = False

    async def kill(self) -> None:
        """SIGKILL, as a crash: nothing is flushed, nothing is committed."""
        self.down = True
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
            assert self.proc is not None
            await asyncio.to_thread(self.proc.wait)
        self._close_log()

    async def stop(self) -> None:
        """SIGTERM (FastStream stops consuming, finishes its batch, leaves the group), then
        SIGKILL after STOP_TIMEOUT_S."""
        self.down = True
        if self.alive():
            assert self.proc is not None
            if self.paused:
                self.resume()
            self.proc.terminate()
            try:
                await asyncio.to_thread(self.proc.wait, STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                await asyncio.to_thread(self.proc.wait)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


@dataclass
class Fleet:
    """Every service process of one recipe; `poison` runs them under the poison wrapper."""

    settings: Settings
    log_dir: Path
    poison: bool = False
    instances: dict[str, list[Instance]] = field(default_factory=dict)

    def _command(self, service: str) -> list[str]:
        module = "benchmarks.chaos_poison" if self.poison else "services.cli"
        return [sys.executable, "-m", module, "run", "--services", service]

    def add(self, service: str) -> Instance:
        """Start one more process of `service` (it joins the service's consumer group)."""
        number = len(self.instances.get(service, [])) + 1
        env = service_env(self.settings)
        env["PYTHONPATH"] = str(REPO_ROOT)
        env["CASEBRIDGE_INSTANCE"] = f"{service}-{number}"  # kept across its restarts
        instance = Instance(
            service,
            number,
            self._command(service),
            env,
            self.log_dir / f"{service}-{number}.log",
        )
        EVERY_INSTANCE.append(instance)
        instance.start()
        self.instances.setdefault(service, []).append(instance)
        return instance

    def first(self, service: str) -> Instance:
        return self.instances[service][0]

    def start(self) -> None:
        for service in SERVICES:
            self.add(service)

    def exited(self) -> list[str]:
        """Restart every process that exited on its own (as a supervisor would); one line
        for each, naming its exit code and log (a crash nobody caused is a finding)."""
        out = []
        for group in self.instances.values():
            for i in group:
                if not i.down and i.proc is not None and i.proc.poll() is not None:
                    out.append(f"{i.name} exited by itself ({i.proc.returncode}), see {i.log_path}")
                    i.start()
        return out

    async def stop(self) -> None:
        await asyncio.gather(*(i.stop() for g in self.instances.values() for i in g))


def kill_all() -> None:
    """SIGKILL whatever service process still runs (after an interruption)."""
    for i in EVERY_INSTANCE:
        if i.alive():
            if i.paused:
                i.resume()
            os.kill(i.pid, signal.SIGKILL)


# --- aiming a kill between the database commit and the offset commit -----------------------


@dataclass(frozen=True)
class Aim:
    """What a kill hit: whether the killed process had effects in the database for records
    whose offsets it had not committed (the window between the two commits)."""

    service: str
    in_window: bool
    tries: int
    detail: str


async def db_ahead(
    service: str, settings: Settings, stack: Stack, owner: asyncpg.Connection
) -> str:
    """Non-empty (saying where) when `service` has database effects for records past its
    group's committed offsets: a kill now lands between its database commit and its offset
    commit, and the records will be delivered again."""
    admin = _admin(settings)
    group = f"{settings.group_prefix}.{service}"
    done = await asyncio.to_thread(committed, admin, group)
    if service == "audit":
        rows = await owner.fetch(
            "SELECT kafka_topic, kafka_partition, next_offset FROM audit_consumer_offset"
        )
        ahead = [(t, p, o - done.get((t, p), 0)) for t, p, o in rows if o > done.get((t, p), 0)]
    elif service == "intake":
        rows = await owner.fetch(
            "SELECT kafka_topic, kafka_partition, max(kafka_offset) + 1"
            " FROM intake_seen_event GROUP BY 1, 2"
        )
        ahead = [(t, p, o - done.get((t, p), 0)) for t, p, o in rows if o > done.get((t, p), 0)]
    elif service == "cases":
        topic = settings.topic_prefix + "casebridge.events.valid"
        ends = await asyncio.to_thread(
            high_watermarks, admin, await asyncio.to_thread(partitions_of, admin, [topic])
        )
        next_up = [
            (t, p, done.get((t, p), 0)) for (t, p), end in ends.items() if end > done.get((t, p), 0)
        ]
        records = await asyncio.to_thread(headers_at, settings, next_up)
        pairs = [(h.get("ce_source", b"").decode(), h.get("ce_id", b"").decode()) for h in records]
        claimed = 0
        if pairs:
            claimed = await owner.fetchval(
                "SELECT count(*) FROM case_message_seen s JOIN unnest($1::text[], $2::text[])"
                " AS x(s, i) ON s.source = x.s AND s.event_id = x.i",
                [s for s, _ in pairs],
                [i for _, i in pairs],
            )
        ahead = [("events.valid", -1, int(claimed))] if claimed else []
    else:
        return ""
    if not ahead:
        return ""
    records = sum(n for _, _, n in ahead)
    return (
        f"{records} records in the database past the committed offsets of {len(ahead)} partitions"
    )


async def aimed_kill(
    instance: Instance, settings: Settings, stack: Stack, *, tries: int = 60
) -> Aim:
    """SIGKILL `instance` while it has committed to the database what it has not committed
    to Kafka. How: freeze it (SIGSTOP, so nothing moves while we look), compare its effects in
    the database with its group's committed offsets, and kill it if the database is ahead;
    otherwise let it run a few milliseconds more and look again. The audit's window (one
    transaction, then the offset commit) is a few milliseconds wide, so for it we first wait
    for its next commit to show (its head moves) and freeze it right then. The router has no
    database: it is killed as it runs."""
    if instance.service == "router":
        await instance.kill()
        return Aim(instance.service, False, 1, "no database: killed mid-stream")
    owner = await asyncpg.connect(asyncpg_dsn(database_url(settings, OWNER_ROLE)))
    try:
        for attempt in range(1, tries + 1):
            if instance.service == "audit":
                await _next_audit_commit(owner)
            else:
                await asyncio.sleep(random.uniform(0.01, 0.15))
            instance.pause()
            try:
                where = await db_ahead(instance.service, settings, stack, owner)
            except Exception:
                where = ""
            if where:
                await instance.kill()
                return Aim(instance.service, True, attempt, where)
            instance.resume()
        await instance.kill()
        return Aim(instance.service, False, tries, "window not caught; killed anyway")
    finally:
        await owner.close()


async def _next_audit_commit(owner: asyncpg.Connection, within_s: float = 5.0) -> None:
    start = await owner.fetchval("SELECT coalesce(max(seq), -1) FROM audit_log")
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if await owner.fetchval("SELECT coalesce(max(seq), -1) FROM audit_log") != start:
            return
        await asyncio.sleep(0.001)


# --- broker and database ---------------------------------------------------------------------


def _admin(settings: Settings) -> AdminClient:
    from services.access.broker import admin_client

    return admin_client(settings)


def busiest_leader(settings: Settings, topic: str) -> tuple[int, int]:
    """(partition, leader node id) of the first partition of `topic` (keyed by case: every
    partition is as busy as the next)."""
    admin = _admin(settings)
    info = admin.list_topics(topic, timeout=30).topics[topic].partitions
    partition = sorted(info)[0]
    return partition, info[partition].leader


def kill_node(stack: Stack, node: int) -> None:
    os.kill(kafka_node_pid(stack, node), signal.SIGKILL)


def start_nodes(stack: Stack) -> None:
    """Start every node of the cluster that is not running (infra/kafka/kafka.sh start)."""
    subprocess.run([str(KAFKA_SH), "start"], env=stack.env, check=True, capture_output=True)


def wait_nodes(stack: Stack) -> None:
    subprocess.run([str(KAFKA_SH), "wait"], env=stack.env, check=True, capture_output=True)


def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not found:
        raise RuntimeError("pg_ctl not found under /usr/lib/postgresql/*/bin")
    return found[-1]


def stop_postgres_immediately(stack: Stack) -> None:
    """`pg_ctl stop -m immediate` on the run's data directory, as its owner: every backend is
    killed at once, no checkpoint, as if the server crashed (it recovers from WAL on start)."""
    data = stack.run_dir / "pg" / "data"
    command = [str(_pg_bin()), "stop", "-m", "immediate", "-D", str(data)]
    if os.geteuid() == 0:
        owner = data.owner()
        command = ["runuser", "-u", owner, "--", *command]
    subprocess.run(command, check=True, capture_output=True, cwd="/")


def start_postgres(stack: Stack) -> None:
    subprocess.run([str(POSTGRES_SH), "start"], env=stack.env, check=True, capture_output=True)
    subprocess.run([str(POSTGRES_SH), "wait"], env=stack.env, check=True, capture_output=True)
