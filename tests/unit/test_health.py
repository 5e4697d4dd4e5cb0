"""The health and metrics server (services/runtime/health.py) with stand-in checks: `/readyz`
is 503 and names the check whenever one fails (broker, database, signer, a hung one), and 200
when all pass; `/healthz` answers regardless; `/metrics` carries the checks and our series.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from aiokafka import ConsumerRecord
from aiokafka.errors import KafkaConnectionError
from prometheus_client import REGISTRY

from schemas.topics import DEADLETTER, EVENTS_VALID
from services.audit.signer import SignerHealth
from services.bootstrap import _signer_check
from services.runtime.database import Database
from services.runtime.health import HealthServer, Probe, broker_check, database_check
from services.runtime.kafka import Outgoing
from services.runtime.metrics import CountingPublisher


class FakeConsumer:
    def __init__(self, *, reachable: bool = True) -> None:
        self.reachable = reachable

    async def topics(self) -> set[str]:
        if not self.reachable:
            raise KafkaConnectionError("no broker")
        return {"t"}


class FakeSubscriber:
    def __init__(self, consumer: FakeConsumer | None) -> None:
        self.consumer = consumer


class FakeBroker:
    def __init__(self, *consumers: FakeConsumer | None, running: bool = True) -> None:
        self.subscribers = [FakeSubscriber(c) for c in consumers]
        self.running = running


class FakePool:
    def __init__(self, *, fails: bool = False, hangs: bool = False) -> None:
        self.fails = fails
        self.hangs = hangs

    async def fetchval(self, query: str) -> int:
        if self.hangs:
            await asyncio.sleep(60)
        if self.fails:
            raise ConnectionRefusedError("database down")
        return 1


def database(pool: FakePool | None) -> Database:
    db = Database("postgresql://unused@127.0.0.1:1/unused")
    db._pool = pool
    return db


def signer(*, signing: bool = True, problem: str | None = None) -> SignerHealth:
    health = SignerHealth()
    health.signing = signing
    if problem is not None:
        health.fail(problem)
    return health


def server(
    *,
    consumer: FakeConsumer | None = None,
    pool: FakePool | None = None,
    health: SignerHealth | None = None,
    key_configured: bool = True,
) -> HealthServer:
    """An audit service's checks (broker, database, signer), working unless told otherwise."""
    broker: Any = FakeBroker(consumer if consumer is not None else FakeConsumer())
    db = database(pool if pool is not None else FakePool())
    probes = [
        Probe("audit", "broker", broker_check(broker)),
        Probe("audit", "database", database_check(db)),
        Probe(
            "audit",
            "signer",
            _signer_check(health if health is not None else signer(), signing=key_configured),
        ),
    ]
    return HealthServer(probes, timeout_s=0.3)


async def get(health: HealthServer, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=health.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://health") as client:
        return await client.get(path)


async def test_ready_when_every_check_passes() -> None:
    response = await get(server(), "/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {"audit.broker": "ok", "audit.database": "ok", "audit.signer": "ok"},
        "failing": [],
    }


@pytest.mark.parametrize(
    ("failing", "kwargs", "says"),
    [
        ("audit.broker", {"consumer": FakeConsumer(reachable=False)}, "cannot reach the Kafka"),
        ("audit.database", {"pool": FakePool(fails=True)}, "ConnectionRefusedError"),
        ("audit.database", {"pool": FakePool(hangs=True)}, "no answer within"),
        ("audit.signer", {"health": signer(problem="SigningRefusedError: table")}, "table"),
        ("audit.signer", {"health": signer(signing=False)}, "not running"),
        ("audit.signer", {"key_configured": False}, "no signing key"),
    ],
)
async def test_each_failing_check_makes_readyz_503_and_says_which(
    failing: str, kwargs: dict[str, Any], says: str
) -> None:
    response = await get(server(**kwargs), "/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not ready"
    assert body["failing"] == [failing]
    assert says in body["checks"][failing]
    assert all(v == "ok" for k, v in body["checks"].items() if k != failing)


async def test_a_stopped_consumer_or_closed_pool_is_not_ready() -> None:
    broker: Any = FakeBroker(FakeConsumer(), None)  # one subscriber stopped
    probes = [
        Probe("cases", "broker", broker_check(broker)),
        Probe("cases", "database", database_check(database(None))),
    ]
    response = await get(HealthServer(probes), "/readyz")
    assert response.status_code == 503
    assert response.json()["failing"] == ["cases.broker", "cases.database"]


async def test_a_broker_still_starting_is_not_ready_and_not_asked() -> None:
    consumer = FakeConsumer(reachable=False)  # asking it would say "cannot reach"
    starting: Any = FakeBroker(consumer, running=False)
    response = await get(
        HealthServer([Probe("intake", "broker", broker_check(starting))]), "/readyz"
    )
    assert response.status_code == 503
    assert response.json()["checks"]["intake.broker"].startswith("not consuming")


async def test_healthz_answers_while_not_ready() -> None:
    health = server(consumer=FakeConsumer(reachable=False))
    assert (await get(health, "/readyz")).status_code == 503
    response = await get(health, "/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "alive"}


async def test_metrics_carry_the_checks_and_sampled_gauges() -> None:
    sampled: list[str] = []

    async def sample() -> None:
        sampled.append("lag")

    async def broken() -> None:
        raise RuntimeError("sampler down")

    health = server(pool=FakePool(fails=True))
    health.samplers = [broken, sample]
    response = await get(health, "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'casebridge_health_check_up{check="database",service="audit"} 0.0' in text
    assert 'casebridge_health_check_up{check="broker",service="audit"} 1.0' in text
    assert sampled == ["lag"]  # a failing sampler does not keep the others from running


class Inner:
    def __init__(self, *, fails: bool = False) -> None:
        self.fails = fails

    async def publish_all(
        self, records: Sequence[Outgoing], *, consumed: Sequence[ConsumerRecord[Any, Any]] = ()
    ) -> None:
        if self.fails:
            raise ConnectionError("broker down")


def dead_letters(service: str, reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "casebridge_dead_letters_total", {"service": service, "reason": reason}
    )
    return value or 0.0


async def test_dead_letters_are_counted_by_reason_once_the_broker_has_them() -> None:
    letter = Outgoing(DEADLETTER.name, b"{}", headers={"cb_error_code": "NOT_JSON"})
    valid = Outgoing(EVENTS_VALID.name, b"{}")
    before = dead_letters("unit-intake", "NOT_JSON")
    with pytest.raises(ConnectionError):
        await CountingPublisher(Inner(fails=True), service="unit-intake").publish_all([letter])
    assert dead_letters("unit-intake", "NOT_JSON") == before  # not published: not counted
    await CountingPublisher(Inner(), service="unit-intake").publish_all([letter, valid, letter])
    assert dead_letters("unit-intake", "NOT_JSON") == before + 2


async def test_the_server_listens_on_a_free_port_and_stops() -> None:
    health = HealthServer([], port=0)
    await health.start()
    try:
        assert health.port > 0
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{health.port}/readyz")
        assert response.status_code == 200
    finally:
        await health.stop()
    with socket.socket() as s:  # the port is free again
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", health.port))


async def test_a_port_in_use_fails_the_start() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        health = HealthServer([], port=int(taken.getsockname()[1]))
        with pytest.raises(OSError, match="in use"):
            await health.start()


async def test_a_stopping_process_is_not_ready_and_leaves_its_clients_alone() -> None:
    touched: list[str] = []

    async def check() -> None:
        touched.append("check")

    async def sample() -> None:
        touched.append("sample")

    health = HealthServer([Probe("router", "broker", check)], [sample])
    assert (await get(health, "/readyz")).status_code == 200  # the control
    touched.clear()
    await health.stopping()
    response = await get(health, "/readyz")
    assert response.status_code == 503
    assert response.json()["checks"] == {"router.broker": "the process is stopping"}
    assert (await get(health, "/metrics")).status_code == 200
    assert touched == []


async def test_stopping_waits_for_the_checks_under_way() -> None:
    """Consumers and pools are closed only once no check or sample is using them."""
    release = asyncio.Event()
    ended: list[str] = []

    async def slow() -> None:
        await release.wait()
        ended.append("check")

    health = HealthServer([Probe("intake", "broker", slow)], timeout_s=5)
    asking = asyncio.create_task(health.readiness())
    await asyncio.sleep(0.05)
    stopping = asyncio.create_task(health.stopping())
    await asyncio.sleep(0.05)
    assert not stopping.done()  # the check is still under way
    release.set()
    await stopping
    assert ended == ["check"]
    assert (await asking) == {"intake.broker": None}
