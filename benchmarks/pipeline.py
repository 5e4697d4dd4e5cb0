"""`python -m benchmarks.pipeline`: raw aiokafka passthrough against the CaseBridge pipeline.

Both run on the real, secured broker (SASL_SSL with SCRAM-SHA-512 over the deployment's private
CA, ACLs enforced by StandardAuthorizer), in one run, on the same machine, so the ratio between
them is what to compare across machines and runs (absolute figures drift on shared machines):

(a) baseline: a plain aiokafka copier. N events are pre-loaded into an input topic, then one
    consumer (`getmany`, the same batch size and timeout as the services) and one idempotent
    producer (acks=all, the services' linger, batch and request sizes) copy them to an output
    topic, committing offsets after every batch once the batch's sends are acknowledged.
    It connects as a principal of its own, `casebridge-bench`, exactly as a service does (same
    TLS, same SCRAM mechanism, ACLs only on its two topics and its consumer group), so both
    sides pay for TLS, authentication and authorisation alike. Messages/s.
(b) pipeline: intake, router and audit run as one OS process each (`casebridge run
    --services <name>`), so the load spreads over the cores; each connects as its own Kafka
    principal and database role, reading its secrets from the run directory. After a warm-up
    round trip, N valid events are published at full speed by the agencies themselves: one
    idempotent producer per agency, with that agency's credentials, to its own inbound topic
    (`casebridge.in.<agency>`, `ce_source` and `reporting_agency` naming it). The benchmark
    waits until the audit log holds every row they must produce: 1 `received`, 1 `validated`,
    1 `routed` and one `delivered` row per inbox the routing policy chooses (computed with the
    policy itself).
    Events/s = N / (first publish -> the last of those rows' `recorded_at`). The latency of an
    event is from its publish (just before `send`) to the `recorded_at` of the last of its
    audit rows (the routing-decision row's latency is printed too).

Every run is a deployment of its own on the running stack: its own topic prefix and
consumer-group prefix, set up as `casebridge agencies sync` sets one up (topics, SCRAM
credentials and ACLs, as the super user, plus the baseline's principal and topics) and, unless
--reuse-database is given, a fresh database (created by the superuser `postgres` as
infra/postgres sets up `casebridge`, owned by and migrated as `casebridge_owner`). The audit rows
are read as the read-only `casebridge_auditor`. Afterwards the run's topics, ACLs and database
are dropped (--keep keeps them, and the service logs).

The CPU lines say where the cores went during each measurement: every service process, the
broker and PostgreSQL of infra/stack.sh, this process, and the rest of the machine; "CPU per
event" divides by the events, and "ready to run but waiting for a CPU" (schedstat) shows how
much other work on the machine held the services back. --profile py-spy adds where each
service spends its CPU.

Events are synthetic, shaped like the demo's (referrals of adults and children, return
requests, SAR alerts). Nothing here prints or logs a payload.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import importlib.util
import logging
import math
import os
import pstats
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from confluent_kafka import KafkaException
from confluent_kafka.admin import AclBindingFilter
from sqlalchemy.engine import make_url

from schemas.errors import EventRejected
from schemas.identity import agency_source
from schemas.topics import PER_AGENCY_PARTITIONS, TopicSpec, agency_of_inbound, inbound_topic
from services.access.broker import _binding, admin_client, deployment_plan, sync
from services.access.plan import AccessPlan, Grant, Operation, Resource
from services.bootstrap import load_routing_policy
from services.intake.registry import Registry
from services.intake.screening import screen
from services.privacy.policy import DataSharingPolicy
from services.privacy.policy import load_policy as load_data_sharing_policy
from services.routing.facts import opening_of
from services.routing.policy import RoutingPolicy, route
from services.runtime.credentials import (
    AUDITOR_ROLE,
    OWNER_ROLE,
    KafkaClientConfig,
    database_url,
    kafka_client,
)
from services.runtime.database import asyncpg_dsn
from services.runtime.kafka import MAX_RECORD_BYTES
from services.runtime.migrations import upgrade
from services.runtime.settings import REPO_ROOT, Settings

PIPELINE = ("intake", "router", "audit")
"""The services under test, each a process of its own (casebridge may have more services)."""
RUN_SETTINGS = (
    "kafka_bootstrap",
    "database_url",
    "run_dir",
    "topic_prefix",
    "group_prefix",
)
"""The settings a run sets for its services (they read their secrets under `run_dir`); the rest
come from the environment."""
SUPERUSER = "postgres"
"""Creates and drops the run's database (the owner role is NOCREATEDB by design)."""
BENCH_PRINCIPAL = "casebridge-bench"
"""The baseline's Kafka principal: like a service's, with ACLs on its own topics and group only
(granted for the run, removed with it; its credential stays, like every principal's)."""
TARGET_EVENTS_PER_S = 2_000
PRODUCER_BATCH_BYTES = 256 * 1024
"""The services' producer batch size (services.runtime.kafka.KafkaPublisher)."""
METADATA_MAX_AGE_MS = 5_000
"""As the services' producers and consumers (services.runtime.kafka)."""
FETCH_BYTES = 2 * 1024 * 1024
"""The services' max_partition_fetch_bytes (services.runtime.kafka.batch_subscriber)."""
PASSTHROUGH_PARTITIONS = PER_AGENCY_PARTITIONS
"""As many as an inbound topic has."""
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
POLL_S = 0.05


# --- events -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BenchEvent:
    """One agency event to publish, and how many inbox deliveries the policy makes of it."""

    agency: str
    """Who publishes it, with its own credentials."""
    topic: str
    """Logical topic name, the agency's inbound topic (the run's prefix is added when
    publishing)."""
    key: bytes
    headers: list[tuple[str, bytes]]
    value: bytes
    event_id: str
    kind: str
    deliveries: int

    @property
    def audit_rows(self) -> int:
        """1 received + 1 validated + 1 routed + 1 delivered per inbox."""
        return 3 + self.deliveries


_NATIONALITIES = ("MM", "KH", "LA", "VN", "BD", "PH")
_INDICATORS = (
    ("coercion_at_destination", "confiscation_of_documents"),
    ("coercion_at_destination", "debt_bondage"),
    ("exploitative_conditions", "excessive_working_hours"),
    ("deceptive_recruitment", "false_promises_about_work"),
    ("abuse_of_vulnerability_at_destination", "isolation"),
)
_STRENGTHS = ("strong", "medium", "weak")
_GENDERS = ("Feminine", "Masculine")
_KINDS = (
    ("referral-adult", 40),
    ("referral-child", 25),
    ("return", 20),
    ("sar-alert", 15),
)


def _indicators(rng: random.Random) -> list[dict[str, str]]:
    chosen = rng.sample(_INDICATORS, rng.randint(1, 3))
    return [{"dimension": d, "indicator": i, "strength": rng.choice(_STRENGTHS)} for d, i in chosen]


def _payload(
    kind: str, agency: str, rng: random.Random, case_id: str, n: int, now: str
) -> dict[str, Any]:
    """A synthetic payload shaped like the demo scenario's (services/demo/scenario.py), as
    `agency` reports it."""
    person: dict[str, Any] = {
        "given_name": "Synthetic",
        "family_name": f"Person-{n}",
        "gender": rng.choice(_GENDERS),
        "nationality": rng.choice(_NATIONALITIES),
    }
    if kind == "referral-child":
        person.update(age_estimate=rng.randint(12, 19), age_disputed=True)
        return {
            "case_id": case_id,
            "reporting_agency": agency,
            "referred_at": now,
            "person": person,
            "type_of_exploitation": rng.choice(
                (["SexualExploitation"], ["ChildLabour"], ["ForcedBegging"])
            ),
            "location_country": rng.choice(("ID", "ID", "TH")),
            "country_of_exploitation": "ID",
            "indicators": _indicators(rng),
            "consent_to_share": False,
        }
    if kind == "referral-adult":
        person.update(age_estimate=rng.randint(19, 60))
        return {
            "case_id": case_id,
            "reporting_agency": agency,
            "referred_at": now,
            "person": person,
            "type_of_exploitation": rng.choice(
                (["ForcedLabour"], ["ForcedLabour", "Servitude"], ["SexualExploitation"])
            ),
            "location_country": rng.choice(("ID", "ID", "TH")),
            "indicators": _indicators(rng),
            "methods_of_control": rng.sample(
                ["DebtBondage", "WithholdsDocuments", "TakesEarnings", "PhysicalThreats"], 2
            ),
            "consent_to_share": True,
            "adult_consent": True,
        }
    if kind == "return":
        person.update(age_estimate=rng.randint(18, 50))
        return {
            "case_id": case_id,
            "reporting_agency": agency,
            "requested_at": now,
            "person": person,
            "origin_country": person["nationality"],
            "host_country": "ID",
            "voluntariness_confirmed": True,
            "trafficking_victim": rng.random() < 0.8,
            "receiving_agency": "mm-return-reception",
            "consent_to_share": True,
        }
    return {
        "case_id": case_id,
        "reporting_agency": agency,
        "sitrep_number": rng.randint(1, 5),
        "phase": rng.choice(("DETRESFA", "ALERFA", "INCERFA")),
        "priority": rng.choice(("DISTRESS", "URGENCY")),
        "observed_at": now,
        "position": {
            "lat": round(rng.uniform(-10.0, -6.0), 4),
            "lon": round(rng.uniform(105.0, 120.0), 4),
        },
        "persons_at_risk": rng.randint(1, 60),
        "children_reported": rng.random() < 0.3,
        "vessel_description": "wooden fishing vessel, engine failure, taking water",
        "assistance_required": "evacuation",
        "coordinating_rcc": rng.choice(("id-rcc-jakarta", "au-jrcc")),
        "search_region_country": "ID",
    }


_SENDERS = {
    "referral-adult": (
        "id-labour-inspectorate",
        "inspections",
        "org.casebridge.referral.submitted.v1",
    ),
    "referral-child": ("id-shelter-ngo", "casework", "org.casebridge.referral.submitted.v1"),
    "return": ("id-return-programme", "avrr", "org.casebridge.return.requested.v1"),
    "sar-alert": ("id-rcc-jakarta", "sar-console", "org.casebridge.sar.alert.v1"),
}
"""Kind -> (reporting agency, its system in `ce_source`, CloudEvents type)."""
_NAMED_AGENCIES = ("mm-return-reception", "id-rcc-jakarta", "au-jrcc")
"""Agencies the payloads name besides the senders (receiving agency, coordinating RCC)."""


def check_registry(policy: RoutingPolicy) -> None:
    """Every agency the event mix names is in the registry (the routing policy's `agencies:`),
    so each sender has credentials, an inbound topic and ACLs once the run is set up."""
    known = {a.id for a in policy.agencies}
    named = {sender for sender, _, _ in _SENDERS.values()} | set(_NAMED_AGENCIES)
    missing = sorted(named - known)
    if missing:
        raise ValueError(
            f"the event mix names agencies missing from the registry {missing}:"
            " add them to the routing policy's agencies or change the mix"
        )


def planned_deliveries(policy: RoutingPolicy, event: BenchEvent) -> int:
    """Screen the event as intake will and route it as the router will; the inbox count.

    Raises EventRejected if intake or the router would reject it (the generator is wrong).
    """
    record = ConsumerRecord(
        topic=event.topic,
        partition=0,
        offset=0,
        timestamp=0,
        timestamp_type=0,
        key=event.key,
        value=event.value,
        checksum=None,
        serialized_key_size=len(event.key),
        serialized_value_size=len(event.value),
        headers=event.headers,
    )
    agency = agency_of_inbound(event.topic)
    if agency != event.agency:
        raise ValueError(f"{event.topic} is not the inbound topic of {event.agency}")
    sharing = _data_sharing_policy()
    screen(record, agency, Registry(policy, sharing))
    opening = opening_of(record)
    return len(route(policy, opening.facts, sharing.sharing_agreements).deliveries)


@functools.cache
def _data_sharing_policy() -> DataSharingPolicy:
    return load_data_sharing_policy()


def make_events(count: int, *, run: str, policy: RoutingPolicy, seed: int) -> list[BenchEvent]:
    """`count` valid events in a fixed mix, each with its own event id and case id, each as
    its agency publishes it (its inbound topic, its `ce_source`, itself as `reporting_agency`)."""
    check_registry(policy)
    rng = random.Random(seed)
    kinds = [k for k, _ in _KINDS]
    weights = [w for _, w in _KINDS]
    events: list[BenchEvent] = []
    for n in range(count):
        kind = rng.choices(kinds, weights)[0]
        agency, system, ce_type = _SENDERS[kind]
        source = agency_source(agency, system)
        case_id = f"{kind[:3].upper()}-{run}-{n:07d}"
        event_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        now = datetime.now(UTC).isoformat()
        headers = [
            ("ce_specversion", b"1.0"),
            ("ce_id", event_id.encode()),
            ("ce_source", source.encode()),
            ("ce_type", ce_type.encode()),
            ("ce_time", now.encode()),
            ("ce_subject", case_id.encode()),
            ("content-type", b"application/json"),
        ]
        draft = BenchEvent(
            agency=agency,
            topic=inbound_topic(agency),
            key=case_id.encode(),
            headers=headers,
            value=orjson.dumps(_payload(kind, agency, rng, case_id, n, now)),
            event_id=event_id,
            kind=kind,
            deliveries=0,
        )
        events.append(replace(draft, deliveries=planned_deliveries(policy, draft)))
    return events


# --- CPU accounting (Linux /proc) ---------------------------------------------------------

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


# --- helpers ------------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of an ascending sequence."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[rank - 1]


def producer(client: KafkaClientConfig, linger_ms: int) -> AIOKafkaProducer:
    """An idempotent, acks=all producer connected as `client` (SASL_SSL, SCRAM-SHA-512, the
    deployment's CA) and batching exactly like the services' producer
    (services.runtime.kafka.KafkaPublisher)."""
    return AIOKafkaProducer(
        **client.aiokafka(),
        client_id=client.username,
        enable_idempotence=True,
        acks="all",
        linger_ms=linger_ms,
        max_batch_size=PRODUCER_BATCH_BYTES,
        max_request_size=MAX_RECORD_BYTES,
        metadata_max_age_ms=METADATA_MAX_AGE_MS,
    )


@dataclass
class AgencyProducers:
    """One producer per agency, each connected with that agency's own credentials: the broker
    lets an agency write its own inbound topic only."""

    settings: Settings
    producers: dict[str, AIOKafkaProducer] = field(default_factory=dict)

    async def start(self, agencies: Sequence[str]) -> None:
        for agency in sorted(set(agencies)):
            prod = producer(kafka_client(self.settings, agency), self.settings.producer_linger_ms)
            self.producers[agency] = prod
            await prod.start()

    def __call__(self, event: BenchEvent) -> AIOKafkaProducer:
        return self.producers[event.agency]

    async def stop(self) -> None:
        for prod in self.producers.values():
            await prod.stop()
        self.producers.clear()


async def publish(
    producer_of: Callable[[BenchEvent], AIOKafkaProducer],
    events: Sequence[BenchEvent],
    *,
    topic_prefix: str,
    rate: float = 0.0,
) -> list[float]:
    """Publish `events` in order, each with `producer_of(event)` (paced at `rate`/s when > 0);
    wall-clock send time of each.

    Returns once the broker has acknowledged every event; raises if any send failed.
    """
    sent_at = [0.0] * len(events)
    futures: list[asyncio.Future[Any]] = []
    start = time.perf_counter()
    for i, e in enumerate(events):
        if rate > 0:
            delay = start + i / rate - time.perf_counter()
            if delay > 0.001:  # sleep in steps of at least 1 ms, not once per event
                await asyncio.sleep(delay)
        sent_at[i] = time.time()
        futures.append(
            await producer_of(e).send(topic_prefix + e.topic, e.value, key=e.key, headers=e.headers)
        )
    await asyncio.gather(*futures)
    return sent_at


async def machine_load(seconds: float = 1.0) -> float:
    """How busy the machine is, in % of one core, over the next `seconds`."""
    before, t0 = machine_busy_s(), time.perf_counter()
    await asyncio.sleep(seconds)
    return 100.0 * (machine_busy_s() - before) / (time.perf_counter() - t0)


async def wait_assigned(consumer: AIOKafkaConsumer, partitions: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while len(consumer.assignment()) < partitions:
        if time.monotonic() > deadline:
            raise TimeoutError("the passthrough consumer got no partitions")
        await asyncio.sleep(POLL_S)


# --- (a) raw aiokafka passthrough ---------------------------------------------------------


@dataclass(frozen=True)
class PassthroughResult:
    messages: int
    seconds: float
    cpu: CpuWindow

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


async def passthrough(
    settings: Settings,
    events: Sequence[BenchEvent],
    *,
    timeout_s: float,
    probes: dict[str, Callable[[], float]],
) -> PassthroughResult:
    source, target = passthrough_topics(settings)
    client = kafka_client(settings, BENCH_PRINCIPAL)
    loader = producer(client, settings.producer_linger_ms)
    await loader.start()
    try:
        await publish(lambda _: loader, [replace(e, topic=source) for e in events], topic_prefix="")
    finally:
        await loader.stop()

    # The consumer as FastStream configures the services' batch subscribers
    # (services.runtime.kafka.batch_subscriber, create_broker).
    consumer = AIOKafkaConsumer(
        source,
        **client.aiokafka(),
        client_id=client.username,
        group_id=passthrough_group(settings),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=FETCH_BYTES,
        metadata_max_age_ms=METADATA_MAX_AGE_MS,
    )
    copier = producer(client, settings.producer_linger_ms)
    await copier.start()
    await consumer.start()
    try:
        await wait_assigned(consumer, PASSTHROUGH_PARTITIONS, READY_TIMEOUT_S)
        cpu = CpuWindow(probes=dict(probes))
        cpu.begin()
        copied = 0
        deadline = time.monotonic() + timeout_s
        while copied < len(events):
            if time.monotonic() > deadline:
                raise TimeoutError(f"passthrough copied {copied} of {len(events)} in time")
            batches = await consumer.getmany(
                timeout_ms=settings.batch_timeout_ms, max_records=settings.batch_max_records
            )
            futures = [
                await copier.send(target, r.value, key=r.key, headers=list(r.headers))
                for records in batches.values()
                for r in records
            ]
            if futures:
                await asyncio.gather(*futures)
                await consumer.commit()
                copied += len(futures)
        cpu.end()
    finally:
        await consumer.stop()
        await copier.stop()
    return PassthroughResult(messages=copied, seconds=cpu.wall, cpu=cpu)


# --- (b) the pipeline ---------------------------------------------------------------------


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


@dataclass(frozen=True)
class PipelineResult:
    events: int
    rows: int
    publish_s: float
    seconds: float
    latency_last_ms: list[float]
    latency_routed_ms: list[float]
    problems: list[str]
    cpu: CpuWindow
    stages: dict[str, float]
    """Seconds from the first publish until each stage had handled its last event."""

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


class AuditWatch:
    """Reads the audit log of the run: progress by `audit_head`, then the run's rows."""

    def __init__(self, conn: asyncpg.Connection, topic_prefix: str) -> None:
        self._conn = conn
        self._prefix = topic_prefix
        self.first_seq = 0

    async def next_seq(self) -> int:
        """The seq the next row will get (seqs are gap-free and committed in order; the
        auditor role may read the log, not the writer's `audit_head`)."""
        value: int = await self._conn.fetchval("SELECT coalesce(max(seq) + 1, 0) FROM audit_log")
        return value

    async def mark(self) -> None:
        """Rows from here on are this run's (the topic prefix filters out anything else)."""
        self.first_seq = await self.next_seq()

    async def wait_for(
        self, rows: int, timeout_s: float, alive: Callable[[], None] | None = None
    ) -> int:
        """Wait until `rows` rows were appended since `mark`; the number seen."""
        deadline = time.monotonic() + timeout_s
        seen = await self.next_seq() - self.first_seq
        while seen < rows and time.monotonic() < deadline:
            if alive is not None:
                alive()
            await asyncio.sleep(POLL_S)
            seen = await self.next_seq() - self.first_seq
        return seen

    async def rows(self, from_seq: int) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self._conn.fetch(
            "SELECT outcome, event_id, attributes->>'ce_causationid' AS cause, recorded_at,"
            " attributes->>'ce_time' AS ce_time"
            " FROM audit_log WHERE seq >= $1 AND starts_with(kafka_topic, $2)",
            from_seq,
            self._prefix,
        )
        return rows


async def intake_done(settings: Settings, event_ids: list[str]) -> float:
    """When intake's last transaction for these events began (its batch's start).

    Intake's table is readable by intake and the owner only: read as the owner (the role that
    set the database up), once the measurement is over.
    """
    conn = await asyncpg.connect(asyncpg_dsn(database_url(settings, OWNER_ROLE)))
    try:
        at: datetime | None = await conn.fetchval(
            "SELECT max(first_seen_at) FROM intake_seen_event WHERE event_id = ANY($1::text[])",
            event_ids,
        )
    finally:
        await conn.close()
    return at.timestamp() if at is not None else 0.0


def router_done(rows: Sequence[asyncpg.Record]) -> float:
    """When the router made its last decision (the decision events' `ce_time`)."""
    times = [
        datetime.fromisoformat(r["ce_time"]).timestamp()
        for r in rows
        if r["outcome"] == "routed" and r["ce_time"]
    ]
    return max(times, default=0.0)


def measure(
    events: Sequence[BenchEvent], sent_at: Sequence[float], rows: Sequence[asyncpg.Record]
) -> tuple[list[float], list[float], float, list[str]]:
    """Latencies (to the last row, to the routed row), the last row's time, and problems."""
    index = {e.event_id: i for i, e in enumerate(events)}
    last = [0.0] * len(events)
    routed = [0.0] * len(events)
    counts = [[0, 0, 0, 0] for _ in events]  # received, validated, routed, delivered
    column = {"received": 0, "validated": 1, "routed": 2, "delivered": 3}
    unexpected = 0
    for row in rows:
        outcome = row["outcome"]
        i = index.get(row["cause"] if outcome == "routed" else row["event_id"])
        if i is None or outcome not in column:
            unexpected += 1
            continue
        at = row["recorded_at"].timestamp()
        counts[i][column[outcome]] += 1
        last[i] = max(last[i], at)
        if outcome == "routed":
            routed[i] = at
    problems: list[str] = []
    wrong = [i for i, e in enumerate(events) if counts[i] != list(_want(e))]
    if wrong:
        missing = sum(
            1 for i in wrong if any(c < w for c, w in zip(counts[i], _want(events[i]), strict=True))
        )
        problems.append(
            f"{len(wrong)} events have other audit rows than expected"
            f" ({missing} with rows missing, {len(wrong) - missing} with extra rows)"
        )
    if unexpected:
        problems.append(f"{unexpected} audit rows of this run belong to no published event")
    done = [i for i in range(len(events)) if last[i] > 0]
    latency_last = sorted((last[i] - sent_at[i]) * 1000.0 for i in done)
    latency_routed = sorted((routed[i] - sent_at[i]) * 1000.0 for i in done if routed[i] > 0)
    end = max((last[i] for i in done), default=0.0)
    return latency_last, latency_routed, end, problems


def _want(event: BenchEvent) -> tuple[int, int, int, int]:
    return (1, 1, 1, event.deliveries)


async def pipeline(
    settings: Settings,
    warmup: Sequence[BenchEvent],
    events: Sequence[BenchEvent],
    *,
    groups: list[tuple[str, ...]],
    log_dir: Path,
    rate: float,
    timeout_s: float,
    profile: str | None,
    probes: dict[str, Callable[[], float]],
) -> PipelineResult:
    # The audit log is read as the auditors read it: the read-only role.
    conn = await asyncpg.connect(asyncpg_dsn(database_url(settings, AUDITOR_ROLE)))
    services = ServiceProcesses(groups=groups, settings=settings, log_dir=log_dir, profile=profile)
    prod = AgencyProducers(settings)
    try:
        watch = AuditWatch(conn, settings.topic_prefix)
        await watch.mark()
        services.start()
        await prod.start([e.agency for e in (*warmup, *events)])
        # Warm-up: every consumer group has joined, and the code paths are warm, once the
        # warm-up events are all in the audit log.
        await publish(prod, warmup, topic_prefix=settings.topic_prefix)
        want = sum(e.audit_rows for e in warmup)
        seen = await watch.wait_for(want, READY_TIMEOUT_S, services.check_alive)
        if seen < want:
            raise TimeoutError(
                f"warm-up: {seen} of {want} audit rows after {READY_TIMEOUT_S:.0f} s;"
                f" see the service logs in {log_dir}"
            )
        await watch.mark()
        cpu = CpuWindow(probes={**services.probes(), **probes}, waits=services.waits())
        services.start_sampling()
        cpu.begin()
        t0 = time.perf_counter()
        sent_at = await publish(prod, events, topic_prefix=settings.topic_prefix, rate=rate)
        publish_s = time.perf_counter() - t0
        want = sum(e.audit_rows for e in events)
        seen = await watch.wait_for(want, timeout_s, services.check_alive)
        cpu.end()
        await services.stop_sampling()
        rows = await watch.rows(watch.first_seq)
        latency_last, latency_routed, end, problems = measure(events, sent_at, rows)
        done = {
            "published": sent_at[-1],
            "intake": await intake_done(settings, [e.event_id for e in events]),
            "router": router_done(rows),
            "audit": end,
        }
        stages = {k: v - sent_at[0] for k, v in done.items() if v > 0}
        if seen < want:
            problems.insert(0, f"only {seen} of {want} audit rows after {timeout_s:.0f} s")
        return PipelineResult(
            events=len(events),
            rows=len(rows),
            publish_s=publish_s,
            seconds=end - sent_at[0] if end else 0.0,
            latency_last_ms=latency_last,
            latency_routed_ms=latency_routed,
            problems=problems,
            cpu=cpu,
            stages=stages,
        )
    finally:
        await prod.stop()
        await services.stop()
        await conn.close()


# --- set-up and clean-up ------------------------------------------------------------------


def with_database(settings: Settings, database: str) -> Settings:
    """`settings` on the same server, another database."""
    url = make_url(settings.database_url).set(database=database)
    return settings.model_copy(update={"database_url": url.render_as_string(hide_password=False)})


async def create_database(settings: Settings) -> str:
    """A new database on `settings`' server, set up as infra/postgres/postgres.sh sets up
    `casebridge` (owned by the owner role, nothing for PUBLIC), migrated as the owner; the
    migrations grant each service role what it needs.

    Creating a database needs the superuser (password file under the run directory): the
    owner role is NOCREATEDB by design.
    """
    name = f"cbbench_{uuid.uuid4().hex[:12]}"
    server = asyncpg_dsn(database_url(with_database(settings, "postgres"), SUPERUSER))
    fresh = with_database(settings, name)
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(
            f'CREATE DATABASE "{name}" OWNER "{OWNER_ROLE}" ENCODING \'UTF8\' TEMPLATE template0'
        )
    finally:
        await conn.close()
    conn = await asyncpg.connect(asyncpg_dsn(database_url(fresh, SUPERUSER)))
    try:
        await conn.execute(
            f'REVOKE ALL ON DATABASE "{name}" FROM PUBLIC;'
            f' GRANT CONNECT, TEMPORARY ON DATABASE "{name}" TO "{OWNER_ROLE}";'
            " REVOKE CREATE ON SCHEMA public FROM PUBLIC;"
        )
    finally:
        await conn.close()
    await asyncio.to_thread(upgrade, database_url(fresh, OWNER_ROLE))
    return name


async def drop_database(settings: Settings, name: str) -> None:
    conn = await asyncpg.connect(
        asyncpg_dsn(database_url(with_database(settings, "postgres"), SUPERUSER))
    )
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def passthrough_topics(settings: Settings) -> tuple[str, str]:
    """The baseline's input and output topics (outside `casebridge.`: nobody else reads them)."""
    prefix = settings.topic_prefix
    return f"{prefix}bench.passthrough.in", f"{prefix}bench.passthrough.out"


def passthrough_group(settings: Settings) -> str:
    return f"{settings.group_prefix}.passthrough"


def run_access_plan(settings: Settings, policy: RoutingPolicy) -> AccessPlan:
    """The run's deployment as `casebridge agencies sync` plans it (every agency of the
    registry, the run's topic and group prefixes), plus the baseline's principal: its two
    topics, at the services' partition count, and its consumer group, nothing else."""
    plan = deployment_plan(settings, [a.id for a in policy.agencies])
    source, target = passthrough_topics(settings)
    topics = tuple(
        TopicSpec(name, PASSTHROUGH_PARTITIONS, "the original key", "benchmark baseline")
        for name in (source, target)
    )
    grants = (
        Grant(BENCH_PRINCIPAL, Resource.TOPIC, source, Operation.WRITE),  # pre-loading
        Grant(BENCH_PRINCIPAL, Resource.TOPIC, source, Operation.READ),
        Grant(BENCH_PRINCIPAL, Resource.TOPIC, target, Operation.WRITE),
        Grant(BENCH_PRINCIPAL, Resource.GROUP, passthrough_group(settings), Operation.READ),
    )
    return AccessPlan(
        topics=(*plan.topics, *topics),
        principals=(*plan.principals, BENCH_PRINCIPAL),
        grants=tuple(sorted({*plan.grants, *grants})),
        retention_ms=plan.retention_ms,
    )


def run_grants(settings: Settings, plan: AccessPlan) -> list[Grant]:
    """The grants of `plan` that belong to this run alone (named under its prefixes)."""
    prefixes = (settings.topic_prefix, settings.group_prefix + ".")
    if not all(prefixes):
        raise ValueError("a benchmark run needs a topic prefix and a group prefix of its own")
    return [g for g in plan.grants if g.name.startswith(prefixes)]


def tear_down_broker(settings: Settings, plan: AccessPlan) -> list[str]:
    """Delete the run's topics, consumer groups and ACLs (as the super user); what could not
    be deleted, one line each. Credentials stay, as every principal's does, and no longer open
    anything of the run."""
    admin = admin_client(settings)
    prefix = settings.topic_prefix
    if not prefix:
        raise ValueError("refusing to delete topics without a run prefix")
    failed: list[str] = []

    def wait(kind: str, futures: dict[Any, Any]) -> None:
        for what, future in futures.items():
            try:
                future.result(timeout=60)
            except KafkaException as error:
                failed.append(f"{kind} {what}: {error}")

    names = [t for t in admin.list_topics(timeout=30).topics if t.startswith(prefix)]
    if names:
        wait("topic", admin.delete_topics(names))
    listed = admin.list_consumer_groups().result(timeout=30)
    groups = [
        g.group_id
        for g in listed.valid
        if g.group_id.startswith((settings.group_prefix + ".", prefix))
    ]
    if groups:
        wait("consumer group", admin.delete_consumer_groups(groups))
    filters = [
        AclBindingFilter(
            b.restype,
            b.name,
            b.resource_pattern_type,
            b.principal,
            b.host,
            b.operation,
            b.permission_type,
        )
        for b in (_binding(g) for g in run_grants(settings, plan))
    ]
    if filters:
        wait("ACLs", admin.delete_acls(filters))
    return failed


# --- the command --------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    defaults = Settings()
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.pipeline",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Batch and linger settings come from CASEBRIDGE_BATCH_MAX_RECORDS,"
        " CASEBRIDGE_BATCH_TIMEOUT_MS and CASEBRIDGE_PRODUCER_LINGER_MS, for the services and"
        " the baseline alike.",
    )
    p.add_argument("--events", type=int, default=20_000, help="events per measurement")
    p.add_argument("--warmup", type=int, default=500, help="events before the measured run")
    p.add_argument(
        "--bootstrap", default=defaults.kafka_bootstrap, help="Kafka bootstrap (SASL_SSL)"
    )
    p.add_argument(
        "--database-url",
        default=defaults.database_url,
        help="the server (host, port) the run's fresh database is created on, without a role"
        " (each process connects as its own role with its password from the run dir)",
    )
    p.add_argument(
        "--reuse-database",
        action="store_true",
        help="use the database of --database-url as it is (migrated to head) instead",
    )
    p.add_argument(
        "--layout",
        choices=("split", "single"),
        default="split",
        help="split: one OS process per service (default); single: all in one process",
    )
    p.add_argument(
        "--rate", type=float, default=0.0, help="publish at this many events/s (0: full speed)"
    )
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for (b)")
    p.add_argument("--skip-baseline", action="store_true", help="run (b) only (no ratio)")
    p.add_argument(
        "--profile",
        choices=("py-spy", "cprofile", "pyinstrument"),
        help="profile each service process: py-spy samples on-CPU stacks in the measured"
        " window only (least distortion); cprofile counts CPU time over the process's life;"
        " pyinstrument samples wall time. Output is kept with the logs",
    )
    p.add_argument(
        "--run-dir",
        "--stack-run-dir",
        type=Path,
        default=defaults.run_dir,
        help="run dir of infra/stack.sh (default $CASEBRIDGE_RUN_DIR, else .run): its secrets"
        " (Kafka client files, database passwords) and the broker's and PostgreSQL's pids",
    )
    p.add_argument("--seed", type=int, default=1, help="seed of the synthetic event mix")
    p.add_argument("--keep", action="store_true", help="keep the database, topics and logs")
    args = p.parse_args(argv)
    if args.events < 1 or args.warmup < 1:
        p.error("--events and --warmup must be at least 1")
    if args.profile == "pyinstrument" and importlib.util.find_spec("pyinstrument") is None:
        p.error("--profile pyinstrument needs pyinstrument installed in this environment")
    return args


BASELINE_PARTS = ("benchmark", "kafka")


def _costs(costs: dict[str, float]) -> str:
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


def _ms(values: Sequence[float]) -> str:
    if not values:
        return "n/a"
    return (
        f"p50 {percentile(values, 50):,.0f} ms, p99 {percentile(values, 99):,.0f} ms"
        f" (min {values[0]:,.0f}, max {values[-1]:,.0f})"
    )


async def run(args: argparse.Namespace) -> int:
    run_id = uuid.uuid4().hex[:8]
    prefix = f"bench{run_id}."
    settings = Settings().model_copy(
        update={
            "kafka_bootstrap": args.bootstrap,
            "database_url": args.database_url,
            "run_dir": args.run_dir.resolve(),
            "topic_prefix": prefix,
            "group_prefix": f"bench-{run_id}",
        }
    )
    policy = load_routing_policy(settings)
    try:
        events = make_events(
            args.warmup + args.events, run=run_id.upper(), policy=policy, seed=args.seed
        )
    except EventRejected as error:
        print(f"the benchmark's own events are invalid ({error.code}); fix the generator")
        return 1
    except ValueError as error:
        print(f"the benchmark's own events are invalid: {error}")
        return 1
    plan = run_access_plan(settings, policy)
    synced = False
    database: str | None = None
    log_dir = Path(tempfile.mkdtemp(prefix=f"cb-bench-{run_id}-"))
    keep_logs = args.keep or args.profile is not None
    code = 1
    try:
        if not args.reuse_database:
            database = await create_database(settings)
            settings = with_database(settings, database)
        else:
            await asyncio.to_thread(upgrade, database_url(settings, OWNER_ROLE))
        # Topics, SCRAM credentials and ACLs of the run, as the super user (set-up only).
        synced = True  # from here on, clean-up removes whatever sync got to create
        report = await asyncio.to_thread(sync, settings, plan)
        warmup, measured = events[: args.warmup], events[args.warmup :]
        groups: list[tuple[str, ...]] = (
            [(s,) for s in PIPELINE] if args.layout == "split" else [PIPELINE]
        )
        sizes = sorted(len(e.value) for e in measured)
        rows = sum(e.audit_rows for e in measured)
        print(
            f"CaseBridge pipeline benchmark: {args.events:,} events"
            f" (+{args.warmup:,} warm-up), {os.cpu_count()} cores, Kafka {args.bootstrap}"
            f" (SASL_SSL, SCRAM-SHA-512, ACLs), database"
            f" {'fresh ' + database if database else 'reused'} (scram-sha-256, a role per service)"
        )
        print(
            f"  set-up: {len(plan.topics)} topics under {prefix}, {len(plan.principals)}"
            f" principals ({len(report.credentials_created)} new credentials), {report.grants}"
            f" ACLs; events published by {len({e.agency for e in events})} agencies, each with"
            " its own credentials to its own inbound topic"
        )
        print(
            f"  events: value {sizes[0]}-{sizes[-1]} bytes (median {sizes[len(sizes) // 2]}),"
            f" 7 CloudEvents headers; mix "
            + ", ".join(f"{k} {sum(1 for e in measured if e.kind == k)}" for k, _ in _KINDS)
            + f"; {rows:,} audit rows expected"
        )
        print(
            f"  settings: batch_max_records={settings.batch_max_records}"
            f" batch_timeout_ms={settings.batch_timeout_ms}"
            f" producer_linger_ms={settings.producer_linger_ms};"
            f" services: {' | '.join('+'.join(g) for g in groups)}"
            f" ({len(groups)} process{'es' if len(groups) > 1 else ''})"
        )

        probes = stack_probes(settings.run_dir)
        idle = await machine_load()
        if idle > 25.0:
            print(
                f"  WARNING: the machine was {idle:.0f}% busy (% of one core) before the run:"
                " other work competes for the cores (its share shows as 'rest' below)"
            )
        base_result: PassthroughResult | None = None
        if not args.skip_baseline:
            base_result = await passthrough(
                settings, measured, timeout_s=args.timeout, probes=probes
            )
            print(
                f"(a) raw aiokafka passthrough as {BENCH_PRINCIPAL} over the same SASL_SSL"
                f" (getmany + idempotent acks=all producer, commit per batch):"
                f" {base_result.messages:,} messages in"
                f" {base_result.seconds:.2f} s = {base_result.rate:,.0f} messages/s"
            )
            print(f"    CPU, % of one core: {base_result.cpu.describe()}")
            print(
                "    CPU per message: "
                + _costs(base_result.cpu.per_event_us(base_result.messages, BASELINE_PARTS))
            )

        result = await pipeline(
            settings,
            warmup,
            measured,
            groups=groups,
            log_dir=log_dir,
            rate=args.rate,
            timeout_s=args.timeout,
            profile=args.profile,
            probes=probes,
        )
        pace = f"at {args.rate:,.0f} events/s" if args.rate > 0 else "at full speed"
        print(
            f"(b) pipeline intake -> router -> audit: {result.events:,} events published"
            f" {pace} in {result.publish_s:.2f} s; all {result.rows:,} audit rows"
            f" {result.seconds:.2f} s after the first publish = {result.rate:,.0f} events/s"
        )
        print(f"    latency publish -> last audit row of the event: {_ms(result.latency_last_ms)}")
        print(
            f"    latency publish -> routing-decision audit row:  {_ms(result.latency_routed_ms)}"
        )
        print(
            "    last event done, s after the first publish: "
            + ", ".join(f"{k} {v:.2f}" for k, v in result.stages.items())
            + " (intake: start of its last transaction; router: its last decision's ce_time)"
        )
        print(f"    CPU, % of one core: {result.cpu.describe()}")
        parts = [*("+".join(g) for g in groups), "kafka", "postgres"]
        costs = result.cpu.per_event_us(result.events, parts)
        total = sum(costs.values())
        cores = os.cpu_count() or 1
        print(
            "    CPU per event: "
            + _costs(costs)
            + (
                f"; total {total:,.0f} us, so at most {cores * 1e6 / total:,.0f} events/s"
                f" on {cores} otherwise idle cores"
                if total > 0
                else ""
            )
        )
        print(f"    ready to run but waiting for a CPU: {result.cpu.describe_waits()}")
        for problem in result.problems:
            print(f"    PROBLEM: {problem}")
        if base_result is not None:
            print(f"ratio b/a: {result.rate / base_result.rate:.3f}")
        if args.rate > 0:
            print(f"target >= {TARGET_EVENTS_PER_S:,} events/s: not checked (paced run)")
        else:
            met = result.rate >= TARGET_EVENTS_PER_S and not result.problems
            print(
                f"target >= {TARGET_EVENTS_PER_S:,} events/s: {'MET' if met else 'NOT MET'}"
                f" ({result.rate:,.0f} events/s)"
            )
        for group in groups:
            name = "+".join(group)
            if args.profile == "cprofile":
                print_profile(name, log_dir / f"{name}.prof", len(warmup) + len(measured))
            elif args.profile == "py-spy":
                print_samples(name, log_dir / f"{name}.py-spy.txt")
        code = 0 if not result.problems else 1
        return code
    finally:
        if args.keep:
            print(
                f"kept: topics {prefix}* and their ACLs, database {database or '(reused)'},"
                f" logs {log_dir}"
            )
        else:
            if synced:
                try:
                    failed = await asyncio.to_thread(tear_down_broker, settings, plan)
                except (KafkaException, OSError, ValueError) as error:
                    failed = [str(error)]
                for line in failed:
                    print(f"clean-up of {prefix}* incomplete: {line}")
            if database is not None:
                try:
                    await drop_database(settings, database)
                except (asyncpg.PostgresError, OSError) as error:
                    print(f"clean-up: could not drop database {database}: {error}")
        if keep_logs or code != 0:
            if not args.keep:
                print(f"service logs{' and profiles' if args.profile else ''}: {log_dir}")
        else:
            shutil.rmtree(log_dir, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # A producer's first sends to just-created topics can meet NotLeaderForPartition while the
    # broker takes up leadership; aiokafka retries them (idempotently), so only errors show.
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    try:
        import uvloop

        runner: Callable[[Any], int] = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency
        runner = asyncio.run
    return runner(run(args))


if __name__ == "__main__":
    sys.exit(main())
