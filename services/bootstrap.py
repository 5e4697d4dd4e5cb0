"""The composition root: wires settings, logging, broker, database and services into apps.

Each service runs alone (`faststream run services.intake.app:app`) or several run in one
process for development (`casebridge run`); both are built here, so there is one wiring.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from faststream import FastStream
from faststream.kafka import KafkaBroker

from schemas.registry import EVENT_TYPES
from schemas.topics import FIXED_TOPICS, inbox_topic, updates_topic
from services.audit.checkpoints import run_signer
from services.audit.config import AuditSettings
from services.audit.handlers import Auditor
from services.audit.handlers import build_router as audit_router
from services.audit.store import AuditLog
from services.cases.coordinator import CaseCoordinator, directory_of
from services.cases.domain import CaseContext, Clock, SystemClock
from services.cases.domain import load_policy as load_case_policy
from services.cases.handlers import build_router as cases_router
from services.cases.handlers import run_deadline_clock, stop
from services.intake.handlers import Intake
from services.intake.handlers import build_router as intake_router
from services.intake.seen_events import SeenEvents
from services.router.handlers import Router
from services.router.handlers import build_router as router_router
from services.router.policy import RoutingPolicy, load_policy
from services.runtime.database import Database
from services.runtime.kafka import (
    MAX_RECORD_BYTES,
    KafkaPublisher,
    create_broker,
    ensure_topics,
)
from services.runtime.logging import configure_logging
from services.runtime.settings import Settings, get_settings

SERVICES = ("intake", "router", "audit", "cases")


def load_routing_policy(settings: Settings) -> RoutingPolicy:
    return load_policy(settings.routing_policy_path, known_event_types=EVENT_TYPES)


def topic_plan(
    policy: RoutingPolicy, *, topic_prefix: str = ""
) -> list[tuple[str, int, dict[str, str]]]:
    """Every topic the pipeline needs, with partitions and config, created before consuming.

    Creating them up front (rather than on first publish) fixes their partition counts and
    lets the audit's pattern subscription see every topic from its first rebalance.
    """
    big = {"max.message.bytes": str(MAX_RECORD_BYTES + 64 * 1024)}
    plan = [(t.name, t.partitions) for t in FIXED_TOPICS]
    plan += [(inbox_topic(a.id), 6) for a in policy.agencies]
    plan += [(updates_topic(a.id), 6) for a in policy.agencies]
    return [(topic_prefix + name, partitions, big) for name, partitions in plan]


@dataclass(frozen=True)
class Wiring:
    broker: KafkaBroker
    db: Database
    publisher: KafkaPublisher
    logger: logging.Logger
    policy: RoutingPolicy
    coordinator: CaseCoordinator | None = None
    audit_log: AuditLog | None = None


def wire(settings: Settings, services: Iterable[str], *, clock: Clock | None = None) -> Wiring:
    """A broker with the routers of `services` included, and the database they share."""
    wanted = tuple(services)
    unknown = sorted(set(wanted) - set(SERVICES))
    if unknown:
        raise ValueError(f"unknown services {unknown}; known: {SERVICES}")
    logger = configure_logging(fmt=settings.log_format, level=settings.log_level)
    broker = create_broker(settings, client_id="casebridge-" + "-".join(wanted), logger=logger)
    db = Database(settings.database_url)
    publisher = KafkaPublisher(settings)
    if "intake" in wanted:
        broker.include_router(intake_router(Intake(publisher, SeenEvents(db)), settings))
    policy = load_routing_policy(settings)
    if "router" in wanted:
        broker.include_router(router_router(Router(publisher, policy), settings))
    audit_log = None
    if "audit" in wanted:
        audit_log = AuditLog(db, consumer=f"{settings.group_prefix}.audit")
        broker.include_router(
            audit_router(Auditor(audit_log, topic_prefix=settings.topic_prefix), settings)
        )
    coordinator = None
    if "cases" in wanted:
        secret = settings.person_key_secret
        ctx = CaseContext(
            agencies=directory_of(policy),
            policy=load_case_policy(settings.case_policy_path),
            person_key_secret=secret.get_secret_value().encode() if secret else None,
        )
        coordinator = CaseCoordinator(
            publisher=publisher,
            db=db,
            ctx=ctx,
            routing=policy,
            clock=clock or SystemClock(),
        )
        broker.include_router(cases_router(coordinator, settings))
    return Wiring(
        broker=broker,
        db=db,
        publisher=publisher,
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
    service also runs the tree-head signer; without one it only appends (and says so).
    """
    settings = settings or get_settings()
    w = wire(settings, services or SERVICES, clock=clock)
    audit = audit or AuditSettings()
    has_key = audit.signing_key is not None or audit.signing_key_file is not None
    sign = "audit" in (services or SERVICES) and has_key
    signer_stop = asyncio.Event()
    signers: list[asyncio.Task[None]] = []
    app = FastStream(w.broker, logger=w.logger)
    clocks: list[asyncio.Task[None]] = []

    @app.on_startup
    async def _start() -> None:
        cluster_id = await ensure_topics(
            settings.kafka_bootstrap, topic_plan(w.policy, topic_prefix=settings.topic_prefix)
        )
        if w.audit_log is not None:
            w.audit_log.on_cluster(cluster_id)
        await w.db.start()
        await w.publisher.start()

    @app.after_startup
    async def _start_clock() -> None:
        if w.coordinator is not None:
            every = settings.deadline_tick_s
            clocks.append(asyncio.create_task(run_deadline_clock(w.coordinator, every_s=every)))
        if sign:
            signers.append(asyncio.create_task(run_signer(settings, audit, signer_stop)))
        elif "audit" in (services or SERVICES):
            w.logger.warning("no audit signing key configured: tree heads are not signed")

    @app.on_shutdown
    async def _stop_clock() -> None:
        for task in clocks:
            await stop(task)
        signer_stop.set()  # the signer signs what is left, then returns
        for task in signers:
            await asyncio.wait_for(task, timeout=60)

    @app.after_shutdown
    async def _stop() -> None:
        await w.publisher.stop()
        await w.db.close()

    return app, w
