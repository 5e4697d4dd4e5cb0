"""The composition root: wires settings, logging, brokers, databases and services into apps.

Each service runs alone (`faststream run services.intake.app:app`) or several run in one
process for development (`casebridge run`); both are built here, so there is one wiring. Even
in one process each service keeps its own identities: its own Kafka principal (a broker
connection and a producer of its own) and its own database role, so what the broker and the
database allow it is the same wherever it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from faststream import FastStream
from faststream.kafka import KafkaBroker, KafkaRouter

from schemas.topics import CASE_EVENTS, DEADLETTER, ERASURES, EVENTS_VALID, ROUTING_DECISIONS
from services.audit.config import AuditSettings
from services.audit.handlers import AuditRecorder
from services.audit.handlers import build_router as audit_router
from services.audit.signer import SignerHealth, run_signer, watch_signer
from services.audit.store import AuditLog
from services.cases.coordinator import CaseCoordinator, directory_of
from services.cases.domain import CaseContext, Clock, SystemClock
from services.cases.domain import load_policy as load_case_policy
from services.cases.handlers import build_router as cases_router
from services.cases.handlers import run_deadline_clock, stop
from services.intake.handlers import Intake
from services.intake.handlers import build_router as intake_router
from services.intake.registry import Registry
from services.intake.seen_events import SeenEvents
from services.privacy.keys import person_key_secret_path, read_secret_file
from services.privacy.policy import load_policy as load_data_sharing_policy
from services.privacy.vault import person_vault
from services.router.handlers import Router
from services.router.handlers import build_router as router_router
from services.routing.policy import RoutingPolicy, deployment_policy
from services.runtime.credentials import (
    KafkaClientConfig,
    database_url,
    kafka_client,
    service_principal,
    service_role,
)
from services.runtime.database import Database
from services.runtime.health import (
    Check,
    HealthServer,
    Probe,
    Sampler,
    broker_check,
    database_check,
)
from services.runtime.kafka import KafkaPublisher, await_topics, consumer_group, create_broker
from services.runtime.logging import configure_logging
from services.runtime.metrics import CountingPublisher, middleware, sample_consumer_lag
from services.runtime.settings import Settings, get_settings

SERVICES = ("intake", "router", "audit", "cases")

_NEEDS: dict[str, tuple[str, ...]] = {
    "intake": (EVENTS_VALID.name, DEADLETTER.name),
    "router": (EVENTS_VALID.name, ROUTING_DECISIONS.name),
    "cases": (EVENTS_VALID.name, ERASURES.name, CASE_EVENTS.name),
    "audit": (),
}
"""Topics a service checks it can see before it consumes (set-up creates them)."""


@dataclass
class ServiceWiring:
    """One service's connections, each under the service's own identity."""

    name: str
    client: KafkaClientConfig
    broker: KafkaBroker
    publisher: KafkaPublisher | None = None
    """None for a service that only consumes (the audit), which may write nowhere."""
    db: Database | None = None
    cluster_id: str = field(default="", init=False)

    def counting_publisher(self) -> CountingPublisher:
        """The publisher, counting what it publishes (and dead letters by reason)."""
        assert self.publisher is not None
        return CountingPublisher(self.publisher, service=self.name)


@dataclass(frozen=True)
class Wiring:
    services: dict[str, ServiceWiring]
    logger: logging.Logger
    policy: RoutingPolicy
    coordinator: CaseCoordinator | None = None
    audit_log: AuditLog | None = None
    signer_health: SignerHealth = field(default_factory=SignerHealth)
    """The audit service's signer, as a health check reports it (`healthy`, `problem`)."""

    @property
    def brokers(self) -> list[KafkaBroker]:
        return [s.broker for s in self.services.values()]


def wire(settings: Settings, services: Iterable[str], *, clock: Clock | None = None) -> Wiring:
    """A broker per service with its router included, and the database pools they use."""
    wanted = tuple(services)
    unknown = sorted(set(wanted) - set(SERVICES))
    if unknown:
        raise ValueError(f"unknown services {unknown}; known: {SERVICES}")
    logger = configure_logging(fmt=settings.log_format, level=settings.log_level)
    policy = deployment_policy(settings)
    sharing = load_data_sharing_policy(settings.data_sharing_policy_path)
    wired: dict[str, ServiceWiring] = {}

    def connect(
        name: str, *, database: bool, publishes: bool = True, transforms: bool = False
    ) -> ServiceWiring:
        """`transforms`: every record it publishes is made from records it consumed, so it
        publishes them in a transaction with their offsets (`KafkaPublisher`)."""
        client = kafka_client(settings, service_principal(name))
        broker = create_broker(client, client_id=client.username, logger=logger)
        broker.add_middleware(middleware(name))
        service = ServiceWiring(
            name=name,
            client=client,
            broker=broker,
            publisher=KafkaPublisher(
                settings, client, group_id=consumer_group(settings, name) if transforms else None
            )
            if publishes
            else None,
            db=Database(database_url(settings, service_role(name))) if database else None,
        )
        wired[name] = service
        return service

    def include(service: ServiceWiring, router: KafkaRouter) -> None:
        service.broker.include_router(router)

    if "intake" in wanted:
        s = connect("intake", database=True, transforms=True)
        assert s.db is not None
        intake = Intake(
            s.counting_publisher(),
            SeenEvents(s.db),
            Registry(policy, sharing),
            topic_prefix=settings.topic_prefix,
        )
        include(s, intake_router(intake, settings))
    if "router" in wanted:
        s = connect("router", database=False, transforms=True)
        include(s, router_router(Router(s.counting_publisher(), policy, sharing), settings))
    audit_log = None
    if "audit" in wanted:
        s = connect("audit", database=True, publishes=False)
        assert s.db is not None
        audit_log = AuditLog(
            s.db, person_vault(settings), consumer=consumer_group(settings, "audit")
        )
        recorder = AuditRecorder(audit_log, topic_prefix=settings.topic_prefix)
        include(s, audit_router(recorder, settings))
    coordinator = None
    if "cases" in wanted:
        s = connect("cases", database=True)
        assert s.db is not None
        ctx = CaseContext(
            agencies=directory_of(policy),
            policy=load_case_policy(settings.case_policy_path),
            person_key_secret=_person_key_secret(settings),
            data_sharing=sharing,
        )
        coordinator = CaseCoordinator(
            publisher=s.counting_publisher(),
            db=s.db,
            vault=person_vault(settings),
            ctx=ctx,
            routing=policy,
            clock=clock or SystemClock(),
            erasures_topic=settings.topic_prefix + ERASURES.name,
        )
        include(s, cases_router(coordinator, settings))
    return Wiring(
        services=wired,
        logger=logger,
        policy=policy,
        coordinator=coordinator,
        audit_log=audit_log,
    )


def build_app(
    *services: str,
    settings: Settings | None = None,
    clock: Clock | None = None,
    audit: AuditSettings | None = None,
) -> FastStream:
    return build(*services, settings=settings, clock=clock, audit=audit)[0]


def build(
    *services: str,
    settings: Settings | None = None,
    clock: Clock | None = None,
    audit: AuditSettings | None = None,
) -> tuple[FastStream, Wiring]:
    """The app and its wiring (tests reach the case coordinator through it).

    With "audit" and a signing key configured (CASEBRIDGE_AUDIT_SIGNING_KEY[_FILE]), the audit
    service also runs the tree-head signer (as the signer's own principal and role); without
    one it only appends (and says so).

    If the signer refuses to sign or its task ends unasked, that is logged at error level at
    once, `Wiring.signer_health` turns unhealthy, and the audit service stops consuming: its
    uncommitted records wait in Kafka, which nobody can rewrite, instead of piling up in
    PostgreSQL with no head signed outside it, where the owner could still rewrite them
    unnoticed. The process keeps running (other services in it are unaffected) so that the
    health state can be read; nothing is lost while the topics' retention lasts, and a
    restarted service appends them once the signer signs again.
    """
    settings = settings or get_settings()
    w = wire(settings, services or SERVICES, clock=clock)
    audit = audit or AuditSettings()
    has_key = audit.signing_key is not None or audit.signing_key_file is not None
    sign = "audit" in w.services and has_key
    signer_stop = asyncio.Event()
    signers: list[asyncio.Task[None]] = []
    app = FastStream(*w.brokers, logger=w.logger)
    health = None
    if settings.metrics_port is not None:
        health = health_server(w, settings, signing=sign)
        app.on_startup(health.start)  # first: /healthz answers while the services connect
        app.on_shutdown(health.stopping)  # first: not ready while the services close
    clocks: list[asyncio.Task[None]] = []
    prefix = settings.topic_prefix

    @app.on_startup
    async def _start() -> None:
        for s in w.services.values():
            needs = [prefix + t for t in _NEEDS[s.name]]
            s.cluster_id = await await_topics(s.client, needs)
            if s.db is not None:
                await s.db.start()
            if s.publisher is not None:
                await s.publisher.start()
        if w.audit_log is not None:
            w.audit_log.on_cluster(w.services["audit"].cluster_id)

    @app.after_startup
    async def _start_clock() -> None:
        if w.coordinator is not None:
            every = settings.deadline_tick_s
            clocks.append(asyncio.create_task(run_deadline_clock(w.coordinator, every_s=every)))
        if sign:
            task = asyncio.create_task(run_signer(settings, audit, signer_stop))
            signers.append(task)
            watch_signer(task, w.signer_health, stopping=signer_stop, on_failure=_stop_auditing)
        elif "audit" in w.services:
            w.logger.warning("no audit signing key configured: tree heads are not signed")

    async def _stop_auditing() -> None:
        """The signer is gone: stop appending what no head will cover (see above)."""
        await w.services["audit"].broker.stop()
        w.logger.error("audit consumer stopped: no signer covers new records")

    @app.on_shutdown
    async def _stop_clock() -> None:
        for task in clocks:
            await stop(task)
        signer_stop.set()  # the signer signs what is left, then returns
        for task in signers:
            if not task.done():  # a signer that ended early was reported when it did
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(task, timeout=60)

    @app.after_shutdown
    async def _stop() -> None:
        for s in w.services.values():
            if s.publisher is not None:
                await s.publisher.stop()
            if s.db is not None:
                await s.db.close()
        if health is not None:
            await health.stop()

    return app, w


def health_server(w: Wiring, settings: Settings, *, signing: bool) -> HealthServer:
    """The process's `/healthz`, `/readyz` and `/metrics` (services.runtime.health): each
    service is ready when its broker connection and its database (if it has one) work, and
    the audit service also when its signer signs."""
    probes: list[Probe] = []
    samplers: list[Sampler] = []
    for s in w.services.values():
        probes.append(Probe(s.name, "broker", broker_check(s.broker)))
        if s.db is not None:
            probes.append(Probe(s.name, "database", database_check(s.db)))
        samplers.append(functools.partial(sample_consumer_lag, s.broker))
    if "audit" in w.services:
        probes.append(Probe("audit", "signer", _signer_check(w.signer_health, signing=signing)))
    if w.coordinator is not None:
        samplers.append(w.coordinator.sample_outbox)
    return HealthServer(
        probes, samplers, host=settings.metrics_host, port=settings.metrics_port or 0
    )


def _signer_check(health: SignerHealth, *, signing: bool) -> Check:
    """Without a signer, records are appended that no signed head covers: not ready."""

    async def check() -> str | None:
        if not signing:
            return "no signing key configured: tree heads are not signed"
        if not health.healthy:
            return health.problem
        return None if health.signing else "the signer is not running"

    return check


def _person_key_secret(settings: Settings) -> bytes | None:
    """`CASEBRIDGE_PERSON_KEY_SECRET` if set, else the deployment's secret file (set-up makes
    one); without either, possible duplicates are not detected."""
    if settings.person_key_secret is not None:
        return settings.person_key_secret.get_secret_value().encode()
    path = person_key_secret_path(settings.secrets_dir)
    return read_secret_file(path) if path.exists() else None
