"""Each process's one small HTTP server: `/healthz`, `/readyz` and `/metrics`.

- `/healthz`: 200 while the process answers at all (its event loop runs).
- `/readyz`: 200 only if every check of every service the process runs passes (its broker
  connection, its database, the audit service's signer: `services/bootstrap.py` composes
  them), else 503; the JSON body names each check and what is wrong with the failing ones.
- `/metrics`: Prometheus's text format, after running the same checks (they set
  `casebridge_health_check_up`, which the alert rules watch) and sampling the gauges that
  describe a state (consumer lag, outbox backlog).

A check returns None when all is well, else a short problem for a person (never data).
Checks run concurrently, each within `timeout_s`, so a hung dependency makes `/readyz` answer
503 in time instead of hanging. The server runs in the services' own event loop (the checks
use their pools and consumers) on a socket bound before it starts, so a port in use fails the
start and port 0 means a free one; uvicorn is kept off the process's signals, which are
FastStream's.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import uvicorn
from aiokafka.errors import KafkaError
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from faststream.kafka import KafkaBroker
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from services.runtime.database import Database
from services.runtime.logging import get_logger
from services.runtime.metrics import HEALTH_CHECK

log = get_logger("casebridge.health")

Check = Callable[[], Awaitable[str | None]]
"""None when the thing checked works, else what is wrong with it."""
Sampler = Callable[[], Awaitable[None]]
"""Refreshes gauges before a scrape."""
T = TypeVar("T")


@dataclass(frozen=True)
class Probe:
    """One readiness check of one service."""

    service: str
    name: str
    check: Check

    @property
    def key(self) -> str:
        return f"{self.service}.{self.name}"


def broker_check(broker: KafkaBroker) -> Check:
    """The service consumes (its consumers exist: started, not stopped) and its connection
    to the cluster answers a metadata request."""

    async def check() -> str | None:
        consumers: list[Any] = [getattr(s, "consumer", None) for s in broker.subscribers]
        if not broker.running or not consumers or any(c is None for c in consumers):
            # Not asked until every consumer has started: one still starting has no broker
            # to ask yet.
            return "not consuming (not started yet, or stopped)"
        try:
            await consumers[0].topics()
        except KafkaError as exc:
            return f"cannot reach the Kafka cluster ({type(exc).__name__})"
        return None

    return check


def database_check(db: Database) -> Check:
    """The service's pool hands out a connection that answers."""

    async def check() -> str | None:
        try:
            pool = db.pool
        except RuntimeError:
            return "not connected (not started yet, or closed)"
        await pool.fetchval("SELECT 1")
        return None

    return check


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # SIGINT and SIGTERM stop the FastStream app, which stops this server


class HealthServer:
    """The process's health and metrics endpoints (see the module docstring)."""

    def __init__(
        self,
        probes: Sequence[Probe],
        samplers: Sequence[Sampler] = (),
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        timeout_s: float = 3.0,
    ) -> None:
        self.probes = list(probes)
        self.samplers = list(samplers)
        self.host = host
        self._port = port
        self._timeout = timeout_s
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._asking: set[asyncio.Future[Any]] = set()
        """Checks and samples under way (they use the services' consumers and pools)."""
        self.app = self._build_app()

    @property
    def port(self) -> int:
        """The port listened on (the one chosen, when configured as 0)."""
        return self._port

    async def stopping(self) -> None:
        """The process is shutting down: from now on every check fails without touching the
        consumers and pools, and nothing is sampled; the endpoints still answer until `stop`.

        Returns once the checks and samples under way have ended (each within the timeout):
        a request still in flight on a consumer being stopped made aiokafka's stop wait
        for 30 s."""
        self._stopping = True
        if self._asking:
            await asyncio.wait(list(self._asking), timeout=self._timeout + 1)

    async def _asked(self, *calls: Awaitable[T]) -> list[T]:
        """Run `calls` concurrently, known to `stopping` until they end."""
        asking = asyncio.gather(*calls)
        self._asking.add(asking)
        try:
            return list(await asking)
        finally:
            self._asking.discard(asking)

    async def readiness(self) -> dict[str, str | None]:
        """Every check's problem (None: passes), keyed `service.check`; sets the gauge."""
        if self._stopping:
            results: list[str | None] = ["the process is stopping"] * len(self.probes)
        else:
            results = await self._asked(*(self._run(p) for p in self.probes))
        for probe, problem in zip(self.probes, results, strict=True):
            HEALTH_CHECK.labels(probe.service, probe.name).set(0 if problem else 1)
        return {p.key: problem for p, problem in zip(self.probes, results, strict=True)}

    async def _run(self, probe: Probe) -> str | None:
        try:
            return await asyncio.wait_for(probe.check(), self._timeout)
        except TimeoutError:
            return f"no answer within {self._timeout:g} s"
        except Exception as exc:
            return f"check failed ({type(exc).__name__})"

    async def sample(self) -> None:
        """Refresh the sampled gauges; one that fails keeps its last values (readiness says
        what is down)."""

        async def one(sampler: Sampler) -> None:
            try:
                await asyncio.wait_for(sampler(), self._timeout)
            except Exception as exc:
                log.debug("metrics sample failed", error=type(exc).__name__)

        if not self._stopping:
            await self._asked(*(one(s) for s in self.samplers))

    def _build_app(self) -> FastAPI:
        app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

        @app.get("/healthz")
        async def healthz() -> JSONResponse:
            return JSONResponse({"status": "alive"})

        @app.get("/readyz")
        async def readyz() -> JSONResponse:
            checks = await self.readiness()
            failing = sorted(k for k, problem in checks.items() if problem)
            body = {
                "status": "not ready" if failing else "ready",
                "checks": {k: problem or "ok" for k, problem in checks.items()},
                "failing": failing,
            }
            return JSONResponse(body, status_code=503 if failing else 200)

        @app.get("/metrics")
        async def metrics() -> Response:
            await asyncio.gather(self.readiness(), self.sample())
            return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

        return app

    async def start(self) -> None:
        """Listen (an error here, such as a port in use, fails the process's start)."""
        if self._task is not None:
            return
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self._port))
            sock.listen(64)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            self.app,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises why it ended
                raise RuntimeError("the health server ended at start")
            await asyncio.sleep(0.01)
        log.info("health and metrics served", host=self.host, port=self._port)

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        try:
            await asyncio.wait_for(self._task, 10)
        finally:
            self._server = None
            self._task = None
