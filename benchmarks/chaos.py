"""`make chaos` (`python -m benchmarks.chaos`): the fault recipes of the reliability reference
(/work/shared/reference/reliability.md, "Fault recipes that fit one machine", 1-9), each on
`--events` records (default 100,000) through the whole system, checked end to end.

The run starts its own stack in a temporary run directory on free ports: a three-node Kafka
KRaft cluster (every topic 3 replicas, min.insync.replicas 2, every producer acks=all; SASL_SSL
with SCRAM-SHA-512, ACLs) and PostgreSQL (`tests.support.stack.start_cluster`), and stops it at
the end, also after a failure or Ctrl-C. Each recipe is a deployment of its own: its own topic
and consumer-group prefix set up as `casebridge agencies sync` sets one up, and a fresh
database (created as infra/postgres creates `casebridge`, migrated as the owner). Intake,
router, cases and audit each run as their own OS process (`casebridge run --services <name>`),
as their own Kafka principal and database role, exactly as in production (the audit's tree-head
signer is not run: one signer per log, and recipe 9 starts a second audit process). Agencies
publish as agencies do, each with its own credentials to its own inbound topic, at a steady
`--rate` so that faults land mid-stream; the first records are a warm-up that waits until
every consumer group has joined.

What each recipe does (fault times are fractions of the records published):
 1. SIGKILL intake, router, cases and audit in turn (at 20, 40, 60, 80 %), each restarted 1 s
    later. Aimed between the database commit and the offset commit: the process is frozen
    (SIGSTOP), its effects in PostgreSQL are compared with its group's committed offsets, and
    it is killed only when the database is ahead (else thawed and tried again a moment
    later); for the audit, whose window is one transaction wide, the freeze follows the
    moment its head moves. The router has no database and is killed as it runs.
 2. SIGKILL the Kafka node leading partition 0 of the validated stream (kafka_node_pid), start
    it again 15 s later.
 3. `pg_ctl stop -m immediate` for 30 s, then start; the offsets intake, cases and audit
    commit while it is down are reported (must be none).
 4. A network partition, simulated with SIGSTOP (the process neither heartbeats nor answers)
    for 15 s, past the consumer session timeout (10 s): the cases service alone (its group
    rebalances when it returns), then one of two audit processes (its peer takes its
    partitions; the stopped one is fenced when it wakes, mid-batch). Then SIGCONT.
 5. Poison: records the intake's, the router's or the cases service's handler always fails on
    (`benchmarks.chaos_poison`): bounded retries, then a PROCESSING_FAILED dead letter, and
    the partition moves on.
 6. Oversized (over 256 KiB), not-JSON and schema-invalid records: a dead letter with the
    reason, and no partial write (no first sighting in intake's table, no case).
 7. 2 % of the events sent 2-10 times in all, some right after, some thousands of records
    later (half of them on another partition, when agency topics have more than one): one
    effect, and a DUPLICATE_EVENT dead letter per repeat.
 8. Referral cases whose owner acts before the referral exists (refused UNKNOWN_CASE), then
    the referral, then a status decision before screening (INVALID_TRANSITION), an
    acknowledgement and a screening with the right expected versions, and an acknowledgement
    with a stale one (STALE_VERSION); the phases are gated on the previous one's effects, so
    the order the cases service sees is the one published.
 9. A second process of intake, router, cases and audit joins (at 20, 35, 50, 65 %), and
    must be given partitions of its group within 60 s; the second intake and router leave
    again (SIGTERM) at 80 %.
`--recipes 0` is a control run with no fault.

The oracle (`benchmarks.chaos_oracle`) looks only at effects, once the system has drained
(every consumer group's lag 0, the cases outbox empty): every record's expected effects,
computed by a serial replay of CaseBridge's own rules (`benchmarks.chaos_stream`), must be
present exactly once in the audit log (received, validated, routed, one delivered per inbox
the routing policy chooses, the case event the cases service published, each dead letter and
the sender's copy of each rejection), in the case tables (one case per opening, one case
event per accepted action, versions in publish order, final state and version as the replay
gives), on the agencies' inbox topics and on the dead-letter topic (read as the super user).

The table: `lost` = expected effects missing, `duplicated` = effects present more than once,
`recover s` = from the end of the fault (restart, resume, join) until every record published
before it has all its audit effects (the largest of a recipe's faults; for recipes without a
fault to end, from the last publish until every effect is in), `dead-lettered` = dead letters
in the audit log / expected. Exit code 1 if any recipe lost, duplicated or produced anything
unexpected (listed under the table), or could not run.

All data is synthetic; nothing here prints or logs a payload or a personal field.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from confluent_kafka import TopicPartition

from benchmarks.chaos_faults import (
    Aim,
    Fleet,
    Instance,
    aimed_kill,
    busiest_leader,
    kill_all,
    kill_node,
    start_nodes,
    start_postgres,
    stop_postgres_immediately,
)
from benchmarks.chaos_oracle import (
    AuditTracker,
    Verdict,
    audit_tally,
    check_cases,
    check_topics,
    committed,
    lag,
    members_with_partitions,
    partial_writes,
    partitions_of,
)
from benchmarks.chaos_stream import (
    Model,
    Msg,
    OutOfOrder,
    bad_records,
    base_stream,
    case_context,
    insert,
    out_of_order,
    poison_records,
    repeats,
)
from benchmarks.pipeline.clients import producer
from benchmarks.pipeline.deployment import (
    create_database,
    drop_database,
    tear_down_broker,
    with_database,
)
from schemas.topics import AUDIT_TREE_HEADS, ERASURES, EVENTS_VALID, inbound_topic
from services.access.broker import admin_client, deployment_plan, sync
from services.access.plan import AccessPlan
from services.audit.handlers import AUDITED_TOPICS
from services.privacy.policy import DataSharingPolicy
from services.privacy.policy import load_policy as load_data_sharing_policy
from services.routing.policy import RoutingPolicy, deployment_policy
from services.runtime import progress
from services.runtime.credentials import OWNER_ROLE, database_url, kafka_client
from services.runtime.database import asyncpg_dsn
from services.runtime.settings import Settings
from tests.support.stack import Stack, start_cluster, stop_stack

RECIPES: dict[int, str] = {
    0: "control: no fault",
    1: "SIGKILL each service mid-batch",
    2: "SIGKILL the partition leader broker",
    3: "PostgreSQL stopped (immediate) 30 s",
    4: "SIGSTOP past the session timeout",
    5: "poison records",
    6: "oversized / not JSON / invalid",
    7: "same event id 2-10 times",
    8: "case actions out of order",
    9: "second instances join mid-run",
}
DEFAULT_RECIPES = "1,2,3,4,5,6,7,8,9"
SESSION_TIMEOUT_S = 10.0
"""aiokafka's consumer session timeout, which the services keep."""
PAUSE_S = SESSION_TIMEOUT_S + 5.0
BROKER_DOWN_S = 15.0
POSTGRES_DOWN_S = 30.0
RESTART_AFTER_S = 1.0
STALL_S = 120.0
"""Give up waiting for the remaining effects once the audit log has not grown for this long."""
DRAIN_CAP_S = 900.0
SERVICES = ("intake", "router", "cases", "audit")

log = logging.getLogger("casebridge.chaos")


def say(text: str) -> None:
    """What happens, on stderr (stdout carries the table)."""
    progress.say(f"[chaos {time.strftime('%H:%M:%S')}] {text}")


# --- the run's shared parts ------------------------------------------------------------------


@dataclass
class World:
    """What every recipe shares: the stack, the policies, and the base stream with its
    expectations (computed once: each recipe has its own topics and database)."""

    args: argparse.Namespace
    stack: Stack
    run: str
    policy: RoutingPolicy
    sharing: DataSharingPolicy
    base: list[Msg]
    model: Model
    log_dir: Path

    @property
    def agencies(self) -> list[str]:
        return [a.id for a in self.policy.agencies]


@dataclass
class Fault:
    """One fault of a recipe: when it ended and how much of the stream was published then."""

    label: str
    ended_at: float
    published: int
    recovery: asyncio.Task[float | None] | None = None


@dataclass
class Row:
    recipe: int
    events: int = 0
    verdict: Verdict | None = None
    recover_s: float | None = None
    dead_letters: tuple[int, int] = (0, 0)
    detail: str = ""
    error: str | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    remarks: list[str] = field(default_factory=list)
    """Findings that are no failure (printed under the table all the same)."""

    @property
    def failed(self) -> bool:
        v = self.verdict
        if self.error is not None or v is None:
            return True
        return bool(v.lost or v.duplicated or v.unexpected or self.notes)


class Publisher:
    """The agencies, publishing the recipe's stream in order at a steady rate, each with its
    own producer and credentials (idempotent, acks=all, as `benchmarks.pipeline`)."""

    def __init__(self, settings: Settings, messages: Sequence[Msg], rate: float) -> None:
        self._settings = settings
        self._messages = messages
        self._rate = rate
        self._producers: dict[str, AIOKafkaProducer] = {}
        self._futures: list[asyncio.Future[Any]] = []
        self.sent = 0
        self.paced_from = 0
        self._progress = asyncio.Event()

    async def start(self, agencies: Sequence[str]) -> None:
        for agency in sorted(set(agencies)):
            self._producers[agency] = await self._started(agency)

    async def _started(self, agency: str, within_s: float = 60.0) -> AIOKafkaProducer:
        """A started producer; retried while the brokers are still taking up the run's ACLs
        (they travel through the metadata log, and not every node has them at once)."""
        deadline = time.monotonic() + within_s
        while True:
            p = producer(kafka_client(self._settings, agency), self._settings.producer_linger_ms)
            try:
                await p.start()
                return p
            except KafkaError:
                await p.stop()
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(1.0)

    async def stop(self) -> None:
        for p in self._producers.values():
            await p.stop()

    async def send(self, m: Msg) -> None:
        self._futures.append(
            await self._producers[m.agency].send(
                self._settings.topic_prefix + m.topic,
                m.value,
                key=m.key,
                headers=list(m.headers),
                partition=m.partition,
            )
        )

    async def publish_now(self, messages: Sequence[Msg]) -> None:
        """Publish `messages` at once (a side stream) and wait for the broker's acks."""
        start = len(self._futures)
        for m in messages:
            await self.send(m)
        await asyncio.gather(*self._futures[start:])

    async def run(self, warmup: int, ready: Callable[[int], Awaitable[None]]) -> float:
        """Publish the warm-up, wait for `ready`, then the rest at the rate; returns when the
        broker has acknowledged everything (the time of the last send)."""
        for m in self._messages[:warmup]:
            await self.send(m)
            self.sent += 1
        await asyncio.gather(*self._futures)
        await ready(warmup)
        self.paced_from = warmup
        start = time.monotonic()
        for i, m in enumerate(self._messages[warmup:]):
            delay = start + i / self._rate - time.monotonic()
            if delay > 0.001:
                await asyncio.sleep(delay)
            await self.send(m)
            self.sent += 1
            if i % 100 == 0:
                self._progress.set()
                self._progress = asyncio.Event()
        last = time.monotonic()
        self._progress.set()
        await asyncio.gather(*self._futures)
        return last

    async def reached(self, fraction: float) -> None:
        """Wait until `fraction` of the stream is published."""
        target = int(len(self._messages) * fraction)
        while self.sent < target:
            await self._progress.wait()


# --- one recipe --------------------------------------------------------------------------------


@dataclass
class Recipe:
    """One recipe's deployment, processes, stream and oracle."""

    world: World
    number: int
    settings: Settings
    plan: AccessPlan
    fleet: Fleet
    messages: list[Msg]
    tracker: AuditTracker
    publisher: Publisher
    side: OutOfOrder | None = None
    faults: list[Fault] = field(default_factory=list)
    detail: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """What went wrong in the fault itself (the recipe fails)."""

    @property
    def stack(self) -> Stack:
        return self.world.stack

    def ended(self, label: str) -> None:
        """A fault ended now: measure how long until the stream published so far is done."""
        fault = Fault(label, time.monotonic(), self.publisher.sent)
        fault.recovery = asyncio.create_task(
            recovered(self.tracker, fault.published, fault.ended_at)
        )
        self.faults.append(fault)
        say(f"  recipe {self.number}: {label} (at {fault.published:,} records)")

    def group_partitions(self, admin: Any) -> dict[str, list[TopicPartition]]:
        prefix = self.settings.topic_prefix
        names = [t.name for t in self.plan.topics]
        audited = re.compile(re.escape(prefix) + AUDITED_TOPICS)
        topics = {
            "intake": [prefix + inbound_topic(a) for a in self.world.agencies],
            "router": [prefix + EVENTS_VALID.name],
            "cases": [prefix + EVENTS_VALID.name, prefix + ERASURES.name],
            "audit": [
                n for n in names if audited.fullmatch(n) and n != prefix + AUDIT_TREE_HEADS.name
            ],
        }
        return {s: partitions_of(admin, ts) for s, ts in topics.items()}


def services_settings(settings: Settings) -> Settings:
    """The services' settings: bootstrapped through the first Kafka node only.

    Workaround, not a choice: `services.runtime.kafka.create_broker` passes the bootstrap
    string to FastStream's KafkaBroker, which wraps a str in a list, and aiokafka then parses
    "h1:p1,h2:p2,h3:p3" as one host, so a consumer given the cluster's full list cannot start.
    One address is enough to bootstrap (the client learns every node from it); no service
    process is started while that node is down (recipe 2 starts none)."""
    first = settings.kafka_bootstrap.split(",")[0]
    return settings.model_copy(update={"kafka_bootstrap": first})


async def recovered(tracker: AuditTracker, published: int, since: float) -> float | None:
    """Seconds from `since` until the first `published` records have all their effects."""
    deadline = since + DRAIN_CAP_S
    while time.monotonic() < deadline:
        if tracker.done_through() >= published:
            return time.monotonic() - since
        await asyncio.sleep(0.1)
    return None


async def fault_kills(r: Recipe) -> None:
    """Recipe 1."""
    aims: list[Aim] = []
    for service, at in zip(SERVICES, (0.2, 0.4, 0.6, 0.8), strict=True):
        await r.publisher.reached(at)
        instance = r.fleet.first(service)
        aim = await aimed_kill(instance, r.settings, r.stack)
        aims.append(aim)
        await asyncio.sleep(RESTART_AFTER_S)
        instance.start()
        r.ended(f"{service} SIGKILLed ({aim.detail}) and restarted")
    hits = [a for a in aims if a.service != "router"]
    r.detail.append(
        f"{len(aims)} kills; {sum(a.in_window for a in hits)}/{len(hits)} between DB and"
        " offset commit"
    )


async def fault_broker(r: Recipe) -> None:
    """Recipe 2."""
    await r.publisher.reached(0.3)
    topic = r.settings.topic_prefix + EVENTS_VALID.name
    partition, leader = await asyncio.to_thread(busiest_leader, r.settings, topic)
    kill_node(r.stack, leader)
    say(f"  recipe 2: Kafka node {leader} (leader of events.valid/{partition}) SIGKILLed")
    await asyncio.sleep(BROKER_DOWN_S)
    await asyncio.to_thread(start_nodes, r.stack)
    r.ended(f"node {leader} started again")
    r.detail.append(f"node {leader} down {BROKER_DOWN_S:.0f} s")


async def _committed_total(r: Recipe, services: Sequence[str]) -> dict[str, int]:
    admin = admin_client(r.settings)
    out: dict[str, int] = {}
    for s in services:
        done = await asyncio.to_thread(committed, admin, f"{r.settings.group_prefix}.{s}")
        out[s] = sum(done.values())
    return out


async def fault_postgres(r: Recipe) -> None:
    """Recipe 3."""
    await r.publisher.reached(0.3)
    await asyncio.to_thread(stop_postgres_immediately, r.stack)
    say("  recipe 3: PostgreSQL stopped (immediate)")
    await asyncio.sleep(3.0)  # a batch past its database step may still commit its offsets
    before = await _committed_total(r, ("intake", "cases", "audit"))
    await asyncio.sleep(POSTGRES_DOWN_S - 3.5)
    after = await _committed_total(r, ("intake", "cases", "audit"))
    await asyncio.to_thread(start_postgres, r.stack)
    r.ended("PostgreSQL started again")
    moved = {s: after[s] - before[s] for s in before}
    r.detail.append(
        "offsets committed while down: " + ", ".join(f"{s} {n}" for s, n in moved.items())
    )
    if any(moved.values()):
        r.detail.append("(a service committed offsets without its database)")


async def fault_pause(r: Recipe) -> None:
    """Recipe 4 (a second audit process runs from the start)."""
    await r.publisher.reached(0.25)
    cases = r.fleet.first("cases")
    cases.pause()
    say(f"  recipe 4: cases SIGSTOPped for {PAUSE_S:.0f} s")
    await asyncio.sleep(PAUSE_S)
    cases.resume()
    r.ended("cases SIGCONTed")
    await r.publisher.reached(0.6)
    audit = r.fleet.first("audit")
    audit.pause()
    say(f"  recipe 4: audit-1 SIGSTOPped for {PAUSE_S:.0f} s (audit-2 takes over)")
    await asyncio.sleep(PAUSE_S)
    audit.resume()
    r.ended("audit-1 SIGCONTed")
    r.detail.append(f"cases, audit-1 paused {PAUSE_S:.0f} s each")


async def fault_joins(r: Recipe) -> None:
    """Recipe 9. Each joining process must be given partitions (else the recipe proves
    nothing about two instances): the group is watched until both members hold some."""
    extra: list[Instance] = []
    shared: list[str] = []
    for service, at in zip(SERVICES, (0.2, 0.35, 0.5, 0.65), strict=True):
        await r.publisher.reached(at)
        extra.append(r.fleet.add(service))
        r.ended(f"a second {service} process started")
        if await _both_hold_partitions(r, service):
            shared.append(service)
        else:
            r.problems.append(f"the second {service} process was never given a partition")
    await r.publisher.reached(0.8)
    for instance in extra[:2]:
        await instance.stop()
    r.ended("the second intake and router left (SIGTERM)")
    r.detail.insert(0, f"4 joined, 2 left; partitions shared by two {', '.join(shared)}")


async def _both_hold_partitions(r: Recipe, service: str, within_s: float = 60.0) -> bool:
    admin = admin_client(r.settings)
    group = f"{r.settings.group_prefix}.{service}"
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if await asyncio.to_thread(members_with_partitions, admin, group) >= 2:
            return True
        await asyncio.sleep(0.5)
    return False


async def side_stream(r: Recipe) -> None:
    """Recipe 8's gated phases, published alongside the main stream."""
    side, tracker = r.side, r.tracker
    if side is None:
        raise ValueError("recipe 8 without its out-of-order cases")
    await r.publisher.reached(0.1)
    await r.publisher.publish_now(side.early)
    await _until(lambda: tracker.has(("case-rejected", m.event_id) for m in side.early))
    await r.publisher.reached(0.4)
    await r.publisher.publish_now(side.openings)
    await _until(lambda: tracker.has(("case-event", m.event_id) for m in side.openings))
    await r.publisher.reached(0.7)
    await r.publisher.publish_now(side.late)
    say(f"  recipe 8: {len(side.openings)} out-of-order cases published in three phases")


async def _until(done: Callable[[], bool], within_s: float = DRAIN_CAP_S) -> None:
    deadline = time.monotonic() + within_s
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError("a gated phase never saw its previous phase's effects")
        await asyncio.sleep(0.2)


FAULTS: dict[int, Callable[[Recipe], Coroutine[Any, Any, None]]] = {
    1: fault_kills,
    2: fault_broker,
    3: fault_postgres,
    4: fault_pause,
    8: side_stream,
    9: fault_joins,
}


def build_stream(world: World, number: int) -> tuple[list[Msg], Model, OutOfOrder | None]:
    """The recipe's records in publish order, and its expectations."""
    rng = random.Random(world.args.seed * 1000 + number)
    messages = list(world.base)
    model = world.model.copy()
    n = len(messages)
    # Every recipe's stream has a few bad records and repeated events in the background, so
    # that dead letters and duplicate suppression are checked under every fault too.
    extra = bad_records(max(1, n // 500), run=world.run, rng=rng, length=n)
    extra += repeats(messages, share=0.002, rng=rng)
    if number == 5:
        extra += poison_records(world.args.poison, run=world.run, rng=rng, length=n)
    elif number == 6:
        extra += bad_records(max(3, n // 100), run=world.run, rng=rng, length=n, first=n // 500)
    elif number == 7:
        extra += repeats(messages, share=0.02, rng=rng)
    side = None
    if extra:
        extra.sort(key=lambda e: e[0])
        messages = insert(messages, extra)
        model.feed_all(m for _, m in extra)
    if number == 8:
        side = out_of_order(max(5, n // 600), run=world.run, rng=rng, model=model)
        model.feed_all(side.logical_order())
    return messages, model, side


async def run_recipe(world: World, number: int) -> Row:
    row = Row(number)
    started = time.monotonic()
    tag = f"chaos-{world.run}-{number}"
    base = Settings().model_copy(
        update={
            "kafka_bootstrap": world.stack.kafka_bootstrap,
            "database_url": f"postgresql+asyncpg://127.0.0.1:{world.stack.pg_port}/postgres",
            "run_dir": world.stack.run_dir,
            "topic_prefix": f"{tag}.",
            "group_prefix": tag,
        }
    )
    database: str | None = None
    plan: AccessPlan | None = None
    recipe: Recipe | None = None
    tasks: list[asyncio.Task[Any]] = []
    crashes: list[str] = []
    say(f"recipe {number}: {RECIPES[number]}")
    try:
        database = await create_database(base)
        settings = with_database(base, database)
        plan = deployment_plan(settings, world.agencies)
        await asyncio.to_thread(sync, settings, plan)
        messages, model, side = build_stream(world, number)
        row.events = len(messages) + (len(side.logical_order()) if side else 0)
        fleet = Fleet(
            services_settings(settings), world.log_dir / f"recipe-{number}", poison=number == 5
        )
        fleet.log_dir.mkdir(parents=True, exist_ok=True)
        expected = model.want
        tracker = AuditTracker(settings, expected, messages)
        publisher = Publisher(settings, messages, world.args.rate)
        recipe = Recipe(world, number, settings, plan, fleet, messages, tracker, publisher, side)
        # The agencies connect first: once they may write, the ACLs of the run are in force.
        await publisher.start(world.agencies)
        fleet.start()
        if number == 4:
            fleet.add("audit")
        tasks.append(asyncio.create_task(tracker.follow()))
        tasks.append(asyncio.create_task(supervise(fleet, crashes)))
        tasks.append(asyncio.create_task(report(recipe, world.args.progress)))

        async def ready(warmup: int) -> None:
            deadline = time.monotonic() + 180
            while tracker.done_through() < warmup:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"warm-up: {tracker.done_through()} of {warmup} records done in 180 s;"
                        f" {tracker.stuck_on()}; see {fleet.log_dir}"
                    )
                await asyncio.sleep(0.2)

        warmup = min(500, max(20, len(messages) // 50))
        fault = FAULTS.get(number)
        fault_task = asyncio.create_task(fault(recipe)) if fault else None
        last_sent = await publisher.run(warmup, ready)
        if fault_task is not None:
            await fault_task
        say(f"  recipe {number}: {publisher.sent:,} records published; draining")
        complete = await drain(tracker)
        drained_s = time.monotonic() - last_sent
        await settle(recipe)
        while await tracker.poll():
            pass
        for task in tasks:
            task.cancel()
        recoveries = [await f.recovery for f in recipe.faults if f.recovery is not None]
        if recipe.faults:
            row.recover_s = (
                None if None in recoveries else max(r for r in recoveries if r is not None)
            )
        else:
            row.recover_s = drained_s if complete else None
        verdict = Verdict()
        audit_tally(tracker, expected, verdict.audit)
        await check_cases(settings, expected, verdict.cases)
        await asyncio.to_thread(check_topics, settings, expected, verdict, world.agencies)
        verdict.partial_writes = await partial_writes(settings, expected)
        row.verdict = verdict
        got_dead = sum(n for k, n in tracker.got.items() if k[0] == "dead-letter")
        row.dead_letters = (got_dead, expected.bad)
        row.detail = "; ".join(recipe.detail) or _outcomes(expected.outcomes, number)
        row.notes = verdict.lines() + crashes + recipe.problems
        row.remarks = verdict.remarks()
        if not complete:
            row.notes.insert(
                0, f"{tracker.missing()} audit effects never arrived; {tracker.stuck_on()}"
            )
    except Exception as error:  # a recipe that cannot run is reported, the others still run
        log.exception("recipe %s failed", number)
        row.error = f"{type(error).__name__}: {error}"
    finally:
        for task in tasks:
            task.cancel()
        if recipe is not None:
            await recipe.publisher.stop()
            await recipe.fleet.stop()
            await recipe.tracker.close()
        if not world.args.keep:
            if plan is not None:
                settings_ = with_database(base, database or "postgres")
                try:
                    await asyncio.to_thread(tear_down_broker, settings_, plan)
                except Exception as error:
                    say(f"  clean-up of {tag}.* incomplete: {error}")
            if database is not None:
                try:
                    await drop_database(base, database)
                except (asyncpg.PostgresError, OSError) as error:
                    say(f"  could not drop database {database}: {error}")
        row.seconds = time.monotonic() - started
        say(f"recipe {number} done in {row.seconds:.0f} s")
    return row


def _outcomes(outcomes: dict[str, int], number: int) -> str:
    if number == 8:
        refused = {
            k.removeprefix("case action refused "): n
            for k, n in outcomes.items()
            if k.startswith("case action refused")
        }
        return "refused " + ", ".join(f"{k} {n}" for k, n in sorted(refused.items()))
    if number == 7:
        return f"{outcomes.get('dead-lettered DUPLICATE_EVENT by intake', 0)} repeats"
    return ""


async def report(r: Recipe, shown: bool | None) -> None:
    """Progress while a recipe runs (until cancelled): records with every audit effect in,
    of all the stream's records, and how many are published."""
    with progress.Progress(f"recipe {r.number}", total=len(r.messages), enabled=shown) as line:
        while True:
            line.update(
                r.tracker.done_through(),
                note=f"{r.publisher.sent:,} published, audit rows {r.tracker.rows:,}",
            )
            await asyncio.sleep(0.5)


async def supervise(fleet: Fleet, notes: list[str]) -> None:
    """Restart a service process that exits by itself, as a supervisor would, and say so."""
    while True:
        for line in fleet.exited():
            say(f"  {line}")
            notes.append(line)
        await asyncio.sleep(1.0)


async def drain(tracker: AuditTracker) -> bool:
    """Wait until every expected audit effect is in, or the log stops growing."""
    start = time.monotonic()
    said = start
    while not tracker.complete():
        now = time.monotonic()
        if now - tracker.changed_at > STALL_S or now - start > DRAIN_CAP_S:
            return False
        if now - said > 10:
            say(f"  still missing: {tracker.missing_by_kind()}")
            said = now
        await asyncio.sleep(0.2)
    return True


async def settle(r: Recipe, within_s: float = 120.0) -> None:
    """Wait until every service's consumer group has committed everything on its topics and
    the cases outbox is empty: nothing is in flight any more."""
    admin = admin_client(r.settings)
    groups = await asyncio.to_thread(r.group_partitions, admin)
    owner = await asyncpg.connect(asyncpg_dsn(database_url(r.settings, OWNER_ROLE)))
    try:
        deadline = time.monotonic() + within_s
        while True:
            lags = {
                s: await asyncio.to_thread(lag, admin, f"{r.settings.group_prefix}.{s}", tps)
                for s, tps in groups.items()
            }
            outbox = await owner.fetchval("SELECT count(*) FROM case_outbox")
            if not any(lags.values()) and outbox == 0:
                break
            if time.monotonic() > deadline:
                say(
                    f"  recipe {r.number}: not drained in {within_s:.0f} s: {lags}, outbox {outbox}"
                )
                break
            await asyncio.sleep(0.5)
    finally:
        await owner.close()
    await asyncio.sleep(2.0)  # anything duplicated late would land now


# --- the command ---------------------------------------------------------------------------


def prepare(args: argparse.Namespace, stack: Stack) -> World:
    settings = Settings()
    policy = deployment_policy(settings)
    sharing = load_data_sharing_policy(settings.data_sharing_policy_path)
    run = uuid.uuid4().hex[:6]
    t0 = time.monotonic()
    base = base_stream(args.events, run=run.upper(), policy=policy, seed=args.seed)
    model = Model(policy, sharing, case_context(policy, sharing, settings))
    model.feed_all(base)
    say(f"{len(base):,} records generated and replayed serially in {time.monotonic() - t0:.0f} s")
    log_dir = Path(tempfile.mkdtemp(prefix=f"cb-chaos-{run}-"))
    return World(args, stack, run, policy, sharing, base, model, log_dir)


async def run_all(args: argparse.Namespace, stack: Stack) -> tuple[list[Row], World]:
    world = prepare(args, stack)
    rows = []
    for number in args.recipes:
        rows.append(await run_recipe(world, number))
    return rows, world


def table(rows: Sequence[Row]) -> list[str]:
    head = ("recipe", "events", "lost", "duplicated", "recover s", "dead-lettered", "detail")
    body: list[tuple[str, ...]] = []
    for r in rows:
        v = r.verdict
        recover = "-" if r.recover_s is None else f"{r.recover_s:.1f}"
        if r.error is not None or v is None:
            body.append(
                (
                    f"{r.recipe} {RECIPES[r.recipe]}",
                    f"{r.events:,}",
                    "?",
                    "?",
                    "-",
                    "-",
                    f"ERROR {r.error}",
                )
            )
            continue
        dead = f"{r.dead_letters[0]:,}/{r.dead_letters[1]:,}"
        body.append(
            (
                f"{r.recipe} {RECIPES[r.recipe]}",
                f"{r.events:,}",
                f"{v.lost:,}",
                f"{v.duplicated:,}",
                recover,
                dead,
                r.detail,
            )
        )
    widths = [max(len(x[i]) for x in (head, *body)) for i in range(len(head))]

    def line(cells: Sequence[str]) -> str:
        padded = (
            c.ljust(w) if i in (0, len(cells) - 1) else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )
        return "| " + " | ".join(padded) + " |"

    out = [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(b) for b in body]
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.chaos",
        description=(__doc__ or "").split("\n\n")[0],
    )
    p.add_argument(
        "--events",
        type=int,
        default=100_000,
        help="records per recipe (before a recipe's own extra records)",
    )
    p.add_argument(
        "--recipes",
        default=DEFAULT_RECIPES,
        help="comma-separated recipe numbers (0: control, no fault)",
    )
    p.add_argument("--rate", type=float, default=1_500.0, help="records/s the agencies publish")
    p.add_argument("--poison", type=int, default=5, help="recipe 5: poison records per service")
    p.add_argument("--seed", type=int, default=1)
    progress.add_progress_flag(p)
    p.add_argument(
        "--keep",
        action="store_true",
        help="keep each recipe's topics, database and the service logs (the stack still stops)",
    )
    args = p.parse_args(argv)
    try:
        args.recipes = [int(x) for x in args.recipes.split(",") if x.strip()]
    except ValueError:
        p.error("--recipes takes numbers, e.g. 1,3,5")
    unknown = sorted(set(args.recipes) - set(RECIPES))
    if unknown:
        p.error(f"no recipe {unknown}; known: {sorted(RECIPES)}")
    if args.events < 100:
        p.error("--events must be at least 100")
    return args


def _terminate(signum: int, frame: FrameType | None) -> None:
    """SIGTERM as Ctrl-C: inside the event loop, SIGINT cancels the run, whose clean-up runs."""
    os.kill(os.getpid(), signal.SIGINT)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    signal.signal(signal.SIGTERM, _terminate)
    started = time.monotonic()
    stack: Stack | None = None
    rows: list[Row] = []
    world: World | None = None
    try:
        say("starting a three-node Kafka cluster and PostgreSQL on free ports")
        stack = start_cluster(3)
        say(f"stack up in {time.monotonic() - started:.0f} s ({stack.run_dir})")
        try:
            import uvloop

            rows, world = uvloop.run(run_all(args, stack))
        except ImportError:  # pragma: no cover - uvloop is a dependency
            rows, world = asyncio.run(run_all(args, stack))
    except KeyboardInterrupt:
        say("interrupted: stopping everything")
        return 130
    finally:
        kill_all()
        if stack is not None:
            stop_stack(stack)
            say("stack stopped")
    wall = time.monotonic() - started
    for line in table(rows):
        print(line)
    for r in rows:
        for note in r.notes:
            print(f"recipe {r.recipe}: {note}")
        for remark in r.remarks:
            print(f"recipe {r.recipe} (no failure): {remark}")
    print(
        f"wall time {wall / 60:.1f} min ({wall:.0f} s) for {len(rows)} recipes; "
        f"{args.rate:,.0f} records/s published; three Kafka nodes, RF 3, min.insync 2, acks=all"
    )
    failed = [r for r in rows if r.failed]
    if world is not None:
        if failed or args.keep:
            print(f"service logs: {world.log_dir}")
        else:
            shutil.rmtree(world.log_dir, ignore_errors=True)
    return 1 if failed or not rows else 0


if __name__ == "__main__":
    sys.exit(main())
