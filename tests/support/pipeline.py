"""Running CaseBridge services against the real stack, publishing, and reading results."""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from schemas.topics import agency_of_inbound, inbound_topic
from services.bootstrap import build_app
from services.runtime.credentials import AUDITOR_ROLE, OPERATOR, database_url, kafka_client
from services.runtime.database import asyncpg_dsn
from services.runtime.settings import REPO_ROOT, Settings
from tests.support.stack import Stack

T = TypeVar("T")


@asynccontextmanager
async def running(settings: Settings, *services: str) -> AsyncIterator[None]:
    """Services in this process (one broker), as `casebridge run` would run them."""
    app = build_app(*services, settings=settings)
    await app.start()
    try:
        yield
    finally:
        await app.stop()


class ServiceProcess:
    """A service in its own OS process, so a test can SIGKILL it like a crash would."""

    def __init__(self, stack: Stack, settings: Settings, *services: str) -> None:
        self._cmd = [sys.executable, "-m", "services.cli", "run", "--services", ",".join(services)]
        self._env = stack.service_env(settings)
        # Named once: restarted after a kill, it fences its predecessor's transactions.
        self._env["CASEBRIDGE_INSTANCE"] = f"{'-'.join(services)}-{uuid.uuid4().hex[:8]}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self._cmd,
            env=self._env,
            cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@dataclass(frozen=True)
class Record:
    topic: str
    value: bytes | None
    key: bytes | None = None
    headers: Sequence[tuple[str, bytes]] = ()


def adult_referral(
    case_id: str, event_id: str, *, system: str, agency: str = "id-police-aht"
) -> Record:
    """A valid referral of an adult in forced labour, as `agency`'s `system` publishes it: it
    goes to the shelter and the labour inspectorate (two inbox copies)."""
    data = {
        "case_id": case_id,
        "reporting_agency": agency,
        "referred_at": dt.datetime.now(dt.UTC).isoformat(),
        "person": {"age_estimate": 30},
        "type_of_exploitation": ["ForcedLabour"],
        "location_country": "ID",
        "consent_to_share": True,
    }
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", event_id.encode()),
        ("ce_source", f"urn:casebridge:agency:{agency}:{system}".encode()),
        ("ce_type", b"org.casebridge.referral.submitted.v1"),
        ("content-type", b"application/json"),
    ]
    return Record(inbound_topic(agency), orjson.dumps(data), case_id.encode(), headers)


def principal_for(records: Sequence[Record]) -> str:
    """The agency whose inbound topic the records go to: who may publish them."""
    agencies = {agency_of_inbound(r.topic) for r in records}
    if len(agencies) != 1 or None in agencies:
        raise ValueError(f"records span {agencies}: publish them as one agency at a time")
    agency = agencies.pop()
    assert agency is not None
    return agency


async def publish(
    settings: Settings, records: Sequence[Record], *, principal: str | None = None
) -> None:
    """Publish as an agency would: a plain idempotent aiokafka producer, connected with the
    agency's own credentials (the agency whose inbound topic the records go to, by default)."""
    if not records:
        return
    client = kafka_client(settings, principal or principal_for(records))
    producer = AIOKafkaProducer(
        **client.aiokafka(),
        enable_idempotence=True,
        acks="all",
        max_request_size=2 * 1024 * 1024,
    )
    await producer.start()
    try:
        futures = [
            await producer.send(
                settings.topic_prefix + r.topic, r.value, key=r.key, headers=list(r.headers)
            )
            for r in records
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def wait_for(
    probe: Callable[[], Awaitable[T]], done: Callable[[T], bool], *, within_s: float = 30.0
) -> T:
    """Poll `probe` until `done(result)`; return the last result (the caller asserts on it)."""
    deadline = time.monotonic() + within_s
    result = await probe()
    while not done(result) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        result = await probe()
    return result


async def read_topic(
    settings: Settings,
    topic: str,
    *,
    idle_s: float = 1.0,
    principal: str = OPERATOR,
    committed_only: bool = True,
) -> list[ConsumerRecord[Any, Any]]:
    """Every record on a topic (all partitions, from the start) until it has been idle; read
    as the operator (read-only, every topic) unless another principal is named. Records of
    aborted transactions too when not `committed_only` (what a `read_uncommitted` reader
    sees)."""
    consumer = AIOKafkaConsumer(
        settings.topic_prefix + topic,
        **kafka_client(settings, principal).aiokafka(),
        isolation_level="read_committed" if committed_only else "read_uncommitted",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    out: list[ConsumerRecord[Any, Any]] = []
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=int(idle_s * 1000), max_records=5000)
            if not batch:
                return out
            for records in batch.values():
                out.extend(records)
    finally:
        await consumer.stop()


async def audit_rows(settings: Settings, sql_where: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(asyncpg_dsn(database_url(settings, AUDITOR_ROLE)))
    try:
        rows: list[asyncpg.Record] = await conn.fetch(
            "SELECT seq, event_id, event_source, event_type, subject, agency, outcome,"
            " reason_code, kafka_topic, kafka_partition, kafka_offset, attributes::text AS attrs"
            f" FROM audit_log WHERE {sql_where} ORDER BY seq",
            *args,
        )
        return rows
    finally:
        await conn.close()
