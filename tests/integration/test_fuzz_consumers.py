"""No consumer can be wedged by data: arbitrary bytes on every topic a service reads, then a
valid event behind them on the same partition, whose effects must still appear in time.

Run on the real broker and database with every service. Each topic is written by the
principal the broker lets write it (an agency its inbound topic, intake the validated topic,
the data-protection officer the erasures topic). Records go out through aiokafka's
pure-Python record builder, so a header name can be any bytes (not only UTF-8), as a
librdkafka or Go client can send; keys, header values and values are any bytes, null,
over-long or huge. The explicit examples are the records that used to wedge a consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.record.default_records import _DefaultRecordBatchBuilderPy
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from schemas.privacy import ErasureRequested
from schemas.topics import (
    AGENCY_RECORD_BYTES,
    CASE_EVENTS,
    DEADLETTER,
    ERASURES,
    EVENTS_VALID,
    ROUTING_DECISIONS,
    inbound_topic,
)
from services.cases.erasure import erased_keys, erasure_record
from services.demo.scenario import agency_event
from services.runtime.credentials import AUDITOR_ROLE, DPO, OPERATOR, database_url, kafka_client
from services.runtime.database import asyncpg_dsn
from services.runtime.settings import Settings
from tests.support.pipeline import audit_rows, read_topic, running, wait_for
from tests.support.stack import Stack

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

AGENCY = "id-shelter-ngo"
INTAKE = "casebridge-intake"
WITHIN_S = 20.0
"""How long a valid event behind garbage may take to have its effects."""


class WireName(str):
    """A header name sent as exactly these bytes, UTF-8 or not (the pure-Python record builder
    encodes names with `.encode()`)."""

    wire: bytes

    def __new__(cls, wire: bytes) -> WireName:
        name = super().__new__(cls, wire.decode("utf-8", "replace"))
        name.wire = wire
        return name

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return self.wire


@dataclass(frozen=True)
class Raw:
    """One record of garbage; `key=SAME` means the valid event's own key."""

    key: bytes | None
    headers: tuple[tuple[bytes, bytes | None], ...]
    value: bytes | None

    def __repr__(self) -> str:  # what hypothesis prints for a failing example, kept short
        sizes = [(n[:40], None if v is None else v[:40]) for n, v in self.headers]
        value = None if self.value is None else (self.value[:40], len(self.value))
        return f"Raw(key={self.key!r:.60}, headers={sizes}, value={value})"


SAME = b"\x00same-key\x00"
CE_NAMES = (
    "ce_id",
    "ce_source",
    "ce_type",
    "ce_specversion",
    "ce_time",
    "ce_subject",
    "content-type",
    "ce_dataschema",
    "ce_correlationid",
    "ce_causationid",
    "ce_dataclassification",
    "cb_agency",
    "cb_origin",
    "CE_ID",
    "reply_to",
    "correlation_id",
)
names = st.one_of(
    st.sampled_from(CE_NAMES).map(str.encode),
    st.text(max_size=30).map(str.encode),
    st.binary(min_size=1, max_size=12),  # mostly not UTF-8
)
header_values = st.one_of(
    st.none(),
    st.binary(max_size=40),
    st.sampled_from(
        [
            b"",
            b"\x00",
            b"1.0\x00",
            b"\xff\xfe",
            b"\xc3\x28",
            b"application/json\x00",
            b"org.casebridge.referral.submitted.v1\x00",
            b"urn:casebridge:agency:" + b"x" * 300,
        ]
    ),
    st.integers(min_value=257, max_value=20_000).map(lambda n: b"A" * n),  # over-long
)
values = st.one_of(
    st.none(),
    st.binary(max_size=200),
    st.sampled_from([b"", b"null", b"{}", b"[]", b'{"case_id": "\\u0000"}', b"\x00" * 8]),
    st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=4).map(orjson.dumps),
)
raws = st.builds(
    Raw,
    key=st.one_of(st.none(), st.just(SAME), st.binary(max_size=40)),
    headers=st.lists(st.tuples(names, header_values), max_size=6).map(tuple),
    value=values,
)
garbage = st.lists(raws, min_size=1, max_size=4)

ce = {name: name.encode() for name in ("ce_id", "ce_type", "ce_source", "ce_specversion")}
WEDGES = [
    # A header value FastStream's parser cannot decode, and a null one.
    [Raw(SAME, ((b"ce_id", b"\xff\xfe"), (b"ce_type", None)), b"{}")],
    # A header FastStream acts on: it would publish the handler's result there.
    [Raw(SAME, ((b"reply_to", b"casebridge.deadletter"), (b"correlation_id", b"x")), b"{}")],
    # A header name that is not UTF-8: aiokafka raised it out of every fetch.
    [Raw(SAME, ((b"ce_\xff\xfe", b"1"), (b"\xc3\x28", b"\x00")), None)],
    # NUL bytes in every CloudEvents attribute, and a value that is JSON with a NUL in it.
    [Raw(SAME, tuple((n, b"a\x00b") for n in ce.values()), b'{"case_id": "a\\u0000b"}')],
    # Huge: a value too big to dead-letter whole, and a 1 MiB header.
    [Raw(SAME, (), b"\x01" * 3_500_000), Raw(SAME, ((b"ce_id", b"i" * 1_048_576),), b"{}")],
]


# --- the deployment and how records reach it ----------------------------------------------------


@dataclass
class Deployment:
    settings: Settings
    db: asyncpg.Connection
    """The auditor role: read-only, as an auditor checks effects."""
    routed: set[bytes] = field(default_factory=set)
    """Keys (case ids) of the routing decisions the router has published so far."""
    producers: dict[str, AIOKafkaProducer] = field(default_factory=dict)

    def topic(self, name: str) -> str:
        return self.settings.topic_prefix + name

    async def producer(self, principal: str) -> AIOKafkaProducer:
        """One producer per principal, connected once (not idempotent: `send` builds its own
        record batches)."""
        if principal not in self.producers:
            producer = AIOKafkaProducer(
                **kafka_client(self.settings, principal).aiokafka(),
                acks="all",
                max_request_size=8 << 20,
            )
            await producer.start()
            self.producers[principal] = producer
        return self.producers[principal]


async def watch_decisions(d: Deployment) -> None:
    consumer = AIOKafkaConsumer(
        d.topic(ROUTING_DECISIONS.name),
        **kafka_client(d.settings, OPERATOR).aiokafka(),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    try:
        async for record in consumer:
            d.routed.add(record.key)
    finally:
        await consumer.stop()


@pytest.fixture(scope="module")
async def deployment(stack: Stack) -> AsyncIterator[Deployment]:
    ns = f"t{uuid.uuid4().hex[:10]}."
    database = await stack.create_database()
    settings = stack.deployment(
        database=database,
        topic_prefix=ns,
        group_prefix=ns + "cb",
        person_key_secret="k" * 40,
        record_attempts=2,
    )
    d = Deployment(
        settings, await asyncpg.connect(asyncpg_dsn(database_url(settings, AUDITOR_ROLE)))
    )
    watcher = asyncio.create_task(watch_decisions(d))
    try:
        async with running(settings, "intake", "router", "audit", "cases"):
            yield d
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        for producer in d.producers.values():
            await producer.stop()
        await d.db.close()


async def send(
    d: Deployment,
    principal: str,
    topic: str,
    records: Sequence[tuple[bytes | None, Sequence[tuple[bytes, bytes | None]], bytes | None]],
    *,
    partition_of: bytes,
) -> None:
    """Publish `records` in order, as `principal`, to the partition `partition_of` (a key)
    would go to: each through the pure-Python record builder, so names go out byte for byte."""
    producer = await d.producer(principal)
    full = d.topic(topic)
    partitions = sorted(await producer.partitions_for(full))
    partition = DefaultPartitioner()(partition_of, partitions, partitions)
    for key, headers, value in records:
        batch = producer.create_batch()
        batch._builder = _DefaultRecordBatchBuilderPy(
            magic=2,
            compression_type=0,
            is_transactional=0,
            producer_id=-1,
            producer_epoch=-1,
            base_sequence=0,
            batch_size=8 << 20,
        )
        named = [(WireName(n), v) for n, v in headers]
        assert batch.append(key=key, value=value, timestamp=None, headers=named) is not None
        await (await producer.send_batch(batch, full, partition=partition))


def garbage_records(
    items: Sequence[Raw], key: bytes
) -> list[tuple[bytes | None, Sequence[tuple[bytes, bytes | None]], bytes | None]]:
    return [(key if r.key == SAME else r.key, r.headers, r.value) for r in items]


def as_an_agency_may_send(
    records: Sequence[tuple[bytes | None, Sequence[tuple[bytes, bytes | None]], bytes | None]],
) -> list[tuple[bytes | None, Sequence[tuple[bytes, bytes | None]], bytes | None]]:
    """Records cut to what an agency's inbound topic takes: the broker refuses one larger
    than `AGENCY_RECORD_BYTES` (tests/integration/test_bad_input.py), so the huge examples
    reach intake as the largest an agency can send."""
    cap = AGENCY_RECORD_BYTES // 4

    def cut(raw: bytes | None) -> bytes | None:
        return None if raw is None else raw[:cap]

    return [(k, [(n, cut(v)) for n, v in h], cut(v)) for k, h, v in records]


# --- valid events and their effects -------------------------------------------------------------


def referral(case_id: str) -> dict[str, Any]:
    return {
        "case_id": case_id,
        "reporting_agency": AGENCY,
        "referred_at": dt.datetime.now(dt.UTC).isoformat(),
        "person": {"given_name": "Synthetic", "family_name": "Fuzz", "age_estimate": 30},
        "type_of_exploitation": ["ForcedLabour"],
        "location_country": "ID",
        "consent_to_share": True,
    }


def valid_inbound(case_id: str) -> tuple[str, list[tuple[bytes, bytes | None]], bytes]:
    m = agency_event(
        "fuzz", AGENCY, "fuzz", "org.casebridge.referral.submitted.v1", referral(case_id)
    )
    return m.event_id, [(n.encode(), v) for n, v in m.headers], m.value


def valid_forwarded(
    d: Deployment, case_id: str
) -> tuple[str, list[tuple[bytes, bytes | None]], bytes]:
    """As intake forwards it to the validated topic."""
    event_id, headers, value = valid_inbound(case_id)
    origin = f"{d.topic(inbound_topic(AGENCY))}/0/0".encode()
    return event_id, [*headers, (b"cb_origin", origin), (b"cb_agency", AGENCY.encode())], value


async def case_row(d: Deployment, case_id: str) -> Any:
    return await d.db.fetchrow("SELECT state, owner FROM case_state WHERE case_id = $1", case_id)


async def rows(d: Deployment, where: str, *args: Any) -> list[Any]:
    return await audit_rows(d.settings, where, *args)


async def appear(probe: Any) -> Any:
    return await wait_for(probe, bool, within_s=WITHIN_S)


async def assert_case_opened(d: Deployment, case_id: str, behind: Sequence[Raw]) -> None:
    row = await appear(lambda: case_row(d, case_id))
    assert row is not None, f"the valid event behind {list(behind)} opened no case"


async def assert_routed(d: Deployment, case_id: str, behind: Sequence[Raw]) -> None:
    async def routed() -> bool:
        return case_id.encode() in d.routed

    assert await appear(routed), f"the valid event behind {list(behind)} was not routed"


async def assert_audited(d: Deployment, topic: str, column: str, value: str) -> None:
    # Depends on the audit consumer storing any bytes (header names and values with NUL
    # bytes, invalid UTF-8: the audit storage change, migration 0016). Until it does, the
    # audit consumer retries the garbage ahead of this record forever and this fails.
    found = await appear(
        lambda: rows(d, f"kafka_topic = $1 AND {column} = $2", d.topic(topic), value)
    )
    assert found, f"no audit row on {topic} with {column} {value}"


# --- the fuzz tests -----------------------------------------------------------------------------

FUZZ = settings(
    max_examples=5,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # shrinking against a live
    # pipeline whose earlier examples may have wedged it would only mislead
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def with_wedges(test: Any) -> Any:
    for items in WEDGES:
        test = example(items=items)(test)
    return test


@FUZZ
@with_wedges
@given(items=garbage)
async def test_intake_moves_past_any_inbound_record(
    deployment: Deployment, items: list[Raw]
) -> None:
    d, case_id = deployment, f"FZ-IN-{uuid.uuid4().hex[:12]}"
    key = case_id.encode()
    event_id, headers, value = valid_inbound(case_id)
    await send(
        d,
        AGENCY,
        inbound_topic(AGENCY),
        [*as_an_agency_may_send(garbage_records(items, key)), (key, headers, value)],
        partition_of=key,
    )
    await assert_case_opened(d, case_id, items)
    await assert_routed(d, case_id, items)
    await assert_audited(d, inbound_topic(AGENCY), "event_id", event_id)


@FUZZ
@with_wedges
@given(items=garbage)
async def test_router_and_cases_move_past_any_validated_record(
    deployment: Deployment, items: list[Raw]
) -> None:
    d, case_id = deployment, f"FZ-VA-{uuid.uuid4().hex[:12]}"
    key = case_id.encode()
    _, headers, value = valid_forwarded(d, case_id)
    await send(
        d,
        INTAKE,
        EVENTS_VALID.name,
        [*garbage_records(items, key), (key, headers, value)],
        partition_of=key,
    )
    await assert_case_opened(d, case_id, items)  # the cases service
    await assert_routed(d, case_id, items)  # the router
    await assert_audited(d, ROUTING_DECISIONS.name, "subject", case_id)
    await assert_audited(d, CASE_EVENTS.name, "subject", case_id)


@FUZZ
@with_wedges
@given(items=garbage)
async def test_cases_moves_past_any_erasure_request(
    deployment: Deployment, items: list[Raw]
) -> None:
    d, case_id = deployment, f"FZ-ER-{uuid.uuid4().hex[:12]}"
    key = case_id.encode()
    _, headers, value = valid_forwarded(d, case_id)
    await send(d, INTAKE, EVENTS_VALID.name, [(key, headers, value)], partition_of=key)
    await assert_case_opened(d, case_id, ())

    request = ErasureRequested(
        request_id=str(uuid.uuid4()),
        case_id=case_id,
        reason="subject_request",
        requested_by="dpo-fuzz",
        requested_at=dt.datetime.now(dt.UTC),
    )
    request_headers, request_value = erasure_record(request)
    named = [(n.encode(), v) for n, v in request_headers]
    await send(
        d,
        DPO,
        ERASURES.name,
        [*garbage_records(items, key), (None, named, request_value)],
        partition_of=key,
    )
    erased = await appear(lambda: erased_keys(d.db, [case_id]))
    assert erased is not None, f"the erasure request behind {items} was not carried out"
    await assert_audited(d, ERASURES.name, "event_id", request.request_id)


# --- what the cases service says about a validated record it cannot read ------------------------


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"ce_type": b"org.casebridge.referral.teleported.v2"}, "UNKNOWN_TYPE"),
        ({"ce_type": b"\xff\xfe"}, "INVALID_ATTRIBUTE"),
        ({"value": b"{not json"}, "NOT_JSON"),
        ({"value": b'{"case_id": 1}'}, "INVALID_PAYLOAD"),
    ],
    ids=["unknown_type", "type_not_utf8", "not_json", "invalid_payload"],
)
async def test_cases_dead_letters_a_validated_record_it_cannot_read(
    deployment: Deployment, change: dict[str, bytes], reason: str
) -> None:
    d, case_id = deployment, f"FZ-DL-{uuid.uuid4().hex[:12]}"
    key = case_id.encode()
    _, headers, value = valid_forwarded(d, case_id)
    value = change.pop("value", value)
    headers = [(n, change.get(n.decode(), v)) for n, v in headers]
    await send(d, INTAKE, EVENTS_VALID.name, [(key, headers, value)], partition_of=key)

    async def from_cases() -> list[Any]:
        return [
            r
            for r in await read_topic(d.settings, DEADLETTER.name, idle_s=0.5)
            if r.key == key and dict(r.headers).get("ce_source") == b"casebridge/cases"
        ]

    letters = await appear(from_cases)
    # A redelivered record is dead-lettered again, under the same id: one reason, any count.
    assert {dict(r.headers)["cb_error_code"].decode() for r in letters} == {reason}
