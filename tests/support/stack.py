"""A real Kafka broker and PostgreSQL server for one test session, on free ports.

Started by the project's own infra/stack.sh into a temporary run directory and torn down
afterwards. Set CASEBRIDGE_TEST_STACK=dev to reuse the developer's running stack (default
ports) instead, for quick iterations. `start_cluster` starts a stack whose Kafka is a
three-node cluster instead (`KAFKA_BROKERS=3`), always its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from pydantic import SecretStr

from services.access import broker
from services.privacy.keys import ensure_deployment_keys
from services.runtime.credentials import OWNER_ROLE, database_url
from services.runtime.database import asyncpg_dsn
from services.runtime.migrations import upgrade
from services.runtime.settings import REPO_ROOT, Settings

STACK_SH = REPO_ROOT / "infra" / "stack.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def free_ports(n: int) -> list[int]:
    """`n` distinct free ports (all held open while chosen, so none comes back twice)."""
    with contextlib.ExitStack() as held:
        sockets = [held.enter_context(socket.socket()) for _ in range(n)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]


@dataclass(frozen=True)
class Stack:
    kafka_bootstrap: str
    pg_port: int
    run_dir: Path
    env: dict[str, str]
    owned: bool

    def base_settings(self, database: str = "casebridge") -> Settings:
        return Settings(
            kafka_bootstrap=self.kafka_bootstrap,
            database_url=f"postgresql+asyncpg://127.0.0.1:{self.pg_port}/{database}",
            run_dir=self.run_dir,
        )

    def url(self, role: str, database: str = "casebridge") -> str:
        """The database as `role`, with the role's password (set-up wrote it)."""
        return database_url(self.base_settings(database), role)

    def settings(self, *, database: str = "casebridge", **overrides: object) -> Settings:
        """Settings for services under test; each test passes its own topic/group prefix."""
        values: dict[str, object] = {
            "kafka_bootstrap": self.kafka_bootstrap,
            "database_url": f"postgresql+asyncpg://127.0.0.1:{self.pg_port}/{database}",
            "run_dir": self.run_dir,
            "log_format": "json",
            "retry_backoff_s": 0.2,
        }
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]

    def deployment(self, *, database: str = "casebridge", **overrides: object) -> Settings:
        """`settings(**overrides)` for a deployment of its own (its topic prefix), set up."""
        settings = self.settings(database=database, **overrides)
        self.deploy(settings)
        return settings

    def deploy(self, settings: Settings, agencies: list[str] | None = None) -> None:
        """Set-up for one deployment (topic prefix): topics, credentials and ACLs, as
        `casebridge agencies sync` does; the registry's agencies unless `agencies` is given."""
        broker.sync(settings, broker.deployment_plan(settings, agencies))

    def service_env(self, settings: Settings) -> dict[str, str]:
        """The environment that makes a service process use `settings`."""
        env = dict(os.environ)
        for name, value in settings.model_dump().items():
            if value is None or name == "instance":  # each process is an instance of its own
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            env[f"CASEBRIDGE_{name.upper()}"] = str(value)
        return env

    async def create_database(self) -> str:
        """A new, migrated database, for tests that must not share audit state."""
        name = f"cb_{uuid.uuid4().hex[:12]}"
        conn = await asyncpg.connect(asyncpg_dsn(self.url("postgres", "postgres")))
        try:
            await conn.execute(f'CREATE DATABASE "{name}" OWNER {OWNER_ROLE}')
        finally:
            await conn.close()
        await asyncio.to_thread(upgrade, self.url(OWNER_ROLE, name))
        return name

    async def drop_database(self, name: str) -> None:
        """Drop a database `create_database` made, whoever is still connected."""
        conn = await asyncpg.connect(asyncpg_dsn(self.url("postgres", "postgres")))
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


def start_stack() -> Stack:
    if os.environ.get("CASEBRIDGE_TEST_STACK") == "dev":
        env = dict(os.environ)
        stack = Stack("127.0.0.1:19092", 15432, REPO_ROOT / ".run", env, owned=False)
    else:
        run_dir = Path(tempfile.mkdtemp(prefix="cb-test-"))
        run_dir.chmod(0o755)
        env = dict(os.environ)
        # One broker, whatever the caller's shell says.
        for name in ("KAFKA_BROKERS", "KAFKA_PORTS", "KAFKA_CONTROLLER_PORTS"):
            env.pop(name, None)
        # Every test deploys its own topic prefix on this one broker: a session ends with
        # thousands of topics, more than a deployment's 512 MB heap holds.
        env.setdefault("KAFKA_HEAP_OPTS", "-Xms256m -Xmx1g")
        env.update(
            CASEBRIDGE_RUN_DIR=str(run_dir),
            KAFKA_PORT=str(free_port()),
            KAFKA_CONTROLLER_PORT=str(free_port()),
            PG_PORT=str(free_port()),
        )
        subprocess.run([str(STACK_SH), "up"], env=env, check=True, stdout=subprocess.DEVNULL)
        stack = Stack(
            f"127.0.0.1:{env['KAFKA_PORT']}", int(env["PG_PORT"]), run_dir, env, owned=True
        )
    _prepare(stack)
    return stack


def _prepare(stack: Stack) -> None:
    ensure_deployment_keys(stack.run_dir / "secrets")
    upgrade(stack.url(OWNER_ROLE))


def start_cluster(brokers: int = 3) -> Stack:
    """A stack of its own whose Kafka is a `brokers`-node KRaft cluster on this machine
    (`KAFKA_BROKERS`), in a temporary run dir on free ports; `stop_stack` ends it. Its
    `kafka_bootstrap` lists every node."""
    run_dir = Path(tempfile.mkdtemp(prefix="cb-cluster-"))
    run_dir.chmod(0o755)
    ports = free_ports(2 * brokers + 1)
    client, controller = ports[:brokers], ports[brokers : 2 * brokers]
    env = dict(os.environ)
    env.update(
        CASEBRIDGE_RUN_DIR=str(run_dir),
        KAFKA_BROKERS=str(brokers),
        KAFKA_PORTS=",".join(map(str, client)),
        KAFKA_CONTROLLER_PORTS=",".join(map(str, controller)),
        KAFKA_PORT=str(client[0]),
        KAFKA_CONTROLLER_PORT=str(controller[0]),
        PG_PORT=str(ports[-1]),
    )
    bootstrap = ",".join(f"127.0.0.1:{p}" for p in client)
    stack = Stack(bootstrap, ports[-1], run_dir, env, owned=True)
    try:
        subprocess.run([str(STACK_SH), "up"], env=env, check=True, stdout=subprocess.DEVNULL)
        _prepare(stack)
    except BaseException:
        stop_stack(stack)
        raise
    return stack


def kafka_node_pid(stack: Stack, node_id: int) -> int:
    """The process of node `node_id` of a `start_cluster` stack (its Kafka node id)."""
    pid_file = stack.run_dir / "kafka" / f"node-{node_id}" / "kafka.pid"
    return int(pid_file.read_text().strip())


def stop_stack(stack: Stack) -> None:
    if not stack.owned:
        return
    log = stack.run_dir / "kafka" / "kafka.log"
    if log.exists() and b"OutOfMemoryError" in log.read_bytes():
        # Said before the run directory goes: a broker lost mid-session fails every later test.
        print(f"[stack] the test broker ran out of memory ({log})", file=sys.stderr)
    try:
        subprocess.run(
            [str(STACK_SH), "down"], env=stack.env, check=False, stdout=subprocess.DEVNULL
        )
    finally:
        shutil.rmtree(stack.run_dir, ignore_errors=True)
