"""The audit consumer on the real broker and database: any bytes are audited and the batch
behind them too, the validated stream is in the log, and a record written first under a
guessed id does not hide the real one."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
import pytest

from schemas.topics import EVENTS_VALID, ROUTING_DECISIONS, inbound_topic
from services.audit.records import decode_original
from services.runtime.credentials import AUDITOR_ROLE, database_url, service_principal
from services.runtime.database import asyncpg_dsn
from services.runtime.dead_letter import derived_id
from services.runtime.settings import Settings
from tests.support.pipeline import Record, publish, read_topic, running, wait_for
from tests.support.stack import Stack

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

SENDER = "id-shelter-ngo"
SOURCE = "urn:casebridge:agency:id-shelter-ngo:audit-test"
ROUTER = service_principal("router")


@pytest.fixture(scope="module")
async def pipeline(stack: Stack) -> AsyncIterator[Settings]:
    ns = f"t{uuid.uuid4().hex[:10]}."
    settings = stack.deployment(topic_prefix=ns, group_prefix=ns + "cb")
    async with running(settings, "intake", "router", "audit"):
        yield settings


def referral(case_id: str) -> bytes:
    return orjson.dumps(
        {
            "case_id": case_id,
            "reporting_agency": SENDER,
            "referred_at": datetime.now(UTC).isoformat(),
            "person": {"given_name": "Synthetic", "family_name": "Tester", "age_estimate": 30},
            "type_of_exploitation": ["ForcedLabour"],
            "location_country": "ID",
            "consent_to_share": True,
        }
    )


def headers(event_id: bytes, *extra: tuple[str, bytes]) -> list[tuple[str, bytes]]:
    return [
        ("ce_specversion", b"1.0"),
        ("ce_id", event_id),
        ("ce_source", SOURCE.encode()),
        ("ce_type", b"org.casebridge.referral.submitted.v1"),
        ("content-type", b"application/json"),
        *extra,
    ]


async def rows(settings: Settings, where: str, *args: Any) -> list[asyncpg.Record]:
    """Audit rows of this deployment, read as the auditors' role."""
    conn = await asyncpg.connect(asyncpg_dsn(database_url(settings, AUDITOR_ROLE)))
    try:
        found: list[asyncpg.Record] = await conn.fetch(
            "SELECT seq, event_id, event_source, subject, agency, outcome, reason_code,"
            " kafka_topic, kafka_partition, kafka_offset, attributes::text AS attributes,"
            " payload_digest, original_bytes FROM audit_log"
            f" WHERE ({where}) AND starts_with(kafka_topic, ${len(args) + 1}) ORDER BY seq",
            *args,
            settings.topic_prefix,
        )
        return found
    finally:
        await conn.close()


async def until(settings: Settings, where: str, *args: Any, count: int = 1) -> list[asyncpg.Record]:
    found = await wait_for(lambda: rows(settings, where, *args), lambda r: len(r) >= count)
    assert len(found) >= count, f"{len(found)} audit rows where {where}, wanted {count}"
    return found


async def test_a_record_of_any_bytes_is_audited_and_so_is_the_batch_behind_it(
    pipeline: Settings,
) -> None:
    run = uuid.uuid4().hex[:10]
    key = f"CASE-\x00-{run}-".encode() + b"\xff\xfe"  # one key: one partition, in order
    bad_id = f"evt-\x00-{run}".encode()
    bad_headers = headers(bad_id, ("ce_note", b"\x00\xc3 not text"), ("cb_trace", b"\xff\x00"))
    good_id = f"evt-good-{run}"
    good_case = f"CASE-{run}"
    await publish(
        pipeline,
        [
            Record(inbound_topic(SENDER), b"\x00\xff not json", key, bad_headers),
            Record(inbound_topic(SENDER), referral(good_case), key, headers(good_id.encode())),
        ],
    )

    shown_id = f"evt-\\x00-{run}"  # how the log's text columns show the NUL
    received = await until(pipeline, "outcome = 'received' AND event_id = $1", shown_id)
    assert len(received) == 1
    record = received[0]
    assert record["subject"] == f"CASE-\\x00-{run}-\\xff\\xfe"
    attributes = orjson.loads(record["attributes"])
    assert (attributes["ce_note"], attributes["cb_trace"]) == ("\\x00\\xc3 not text", "\\xff\\x00")
    assert record["payload_digest"] == hashlib.sha256(b"\x00\xff not json").digest()
    exact_key, exact_headers = decode_original(record["original_bytes"])
    assert (exact_key, exact_headers) == (key, bad_headers), "the exact bytes survive"
    # Intake rejects it (NUL in ce_id); its dead letter carries the same bytes and is audited.
    rejected = await until(pipeline, "outcome = 'rejected' AND event_id = $1", shown_id)
    assert rejected[0]["reason_code"] == "INVALID_ATTRIBUTE"

    # The good record behind it, on the same partition, went all the way.
    behind = await until(pipeline, "event_id = $1 AND outcome = 'delivered'", good_id)
    outcomes = {r["outcome"] for r in await rows(pipeline, "event_id = $1", good_id)}
    assert {"received", "validated", "delivered"} <= outcomes
    assert behind[0]["kafka_offset"] >= 0
    assert (
        received[0]["kafka_partition"]
        == (await rows(pipeline, "event_id = $1 AND outcome = 'received'", good_id))[0][
            "kafka_partition"
        ]
    )


async def test_the_validated_stream_is_audited(pipeline: Settings) -> None:
    run = uuid.uuid4().hex[:10]
    event_id, case_id = f"evt-valid-{run}", f"CASE-{run}"
    await publish(
        pipeline,
        [
            Record(
                inbound_topic(SENDER),
                referral(case_id),
                case_id.encode(),
                headers(event_id.encode()),
            )
        ],
    )
    validated = await until(pipeline, "outcome = 'validated' AND event_id = $1", event_id)
    assert len(validated) == 1
    row = validated[0]
    assert row["kafka_topic"] == pipeline.topic_prefix + EVENTS_VALID.name
    assert (row["agency"], row["subject"], row["event_source"]) == (SENDER, case_id, SOURCE)
    on_topic = [
        r
        for r in await read_topic(pipeline, EVENTS_VALID.name)
        if dict(r.headers or ()).get("ce_id") == event_id.encode()
    ]
    assert [(r.partition, r.offset) for r in on_topic] == [
        (row["kafka_partition"], row["kafka_offset"])
    ]
    assert row["payload_digest"] == hashlib.sha256(on_topic[0].value).digest()


def decision_headers(decision_id: str, event_id: str, case_id: str) -> list[tuple[str, bytes]]:
    return [
        ("content-type", b"application/json"),
        ("ce_specversion", b"1.0"),
        ("ce_id", decision_id.encode()),
        ("ce_source", b"casebridge/router"),
        ("ce_type", b"org.casebridge.routing.decision.v1"),
        ("ce_time", datetime.now(UTC).isoformat().encode()),
        ("ce_subject", case_id.encode()),
        ("ce_causationid", event_id.encode()),
    ]


async def decisions_on_topic(settings: Settings, decision_id: str) -> Sequence[Any]:
    return [
        r
        for r in await read_topic(settings, ROUTING_DECISIONS.name)
        if dict(r.headers or ()).get("ce_id") == decision_id.encode()
    ]


async def test_a_record_written_first_under_a_guessed_id_does_not_hide_the_real_one(
    pipeline: Settings,
) -> None:
    """Only CaseBridge's services may write the routing decisions (the broker's ACLs): the
    copy is written first with the router's own credentials, the strongest such writer, under
    the id the real decision will have (ids are derived, so anyone can compute them)."""
    run = uuid.uuid4().hex[:10]
    event_id, case_id = f"evt-guessed-{run}", f"CASE-{run}"
    decision_id = derived_id("route", SOURCE, event_id)
    forged = Record(
        ROUTING_DECISIONS.name,
        orjson.dumps({"event_id": event_id, "case_id": case_id, "deliveries": []}),
        case_id.encode(),
        decision_headers(decision_id, event_id, case_id),
    )
    await publish(pipeline, [forged], principal=ROUTER)
    cause = "outcome = 'routed' AND attributes::jsonb->>'ce_causationid' = $1"
    await until(pipeline, cause, event_id)

    await publish(
        pipeline,
        [
            Record(
                inbound_topic(SENDER),
                referral(case_id),
                case_id.encode(),
                headers(event_id.encode()),
            )
        ],
    )
    await until(pipeline, "outcome = 'delivered' AND event_id = $1", event_id)
    routed = await until(pipeline, cause, event_id, count=2)
    on_topic = await decisions_on_topic(pipeline, decision_id)
    assert len(on_topic) == 2, "the copy written first, then the router's own decision"
    logged = {(r["kafka_partition"], r["kafka_offset"]): bytes(r["payload_digest"]) for r in routed}
    assert logged == {
        (r.partition, r.offset): hashlib.sha256(r.value).digest() for r in on_topic
    }, "both are in the log: the real decision is not hidden"

    # Positive control: the same decision, published again byte for byte (as the router does
    # after a crash), is a copy and is not logged again; a record behind it shows the audit
    # has read past it.
    real = on_topic[1]
    again = Record(ROUTING_DECISIONS.name, real.value, real.key, list(real.headers))
    sentinel_id = derived_id("route", SOURCE, f"sentinel-{run}")
    sentinel = Record(
        ROUTING_DECISIONS.name,
        orjson.dumps({"event_id": f"sentinel-{run}", "case_id": case_id}),
        case_id.encode(),
        decision_headers(sentinel_id, f"sentinel-{run}", case_id),
    )
    await publish(pipeline, [again, sentinel], principal=ROUTER)
    await until(pipeline, cause, f"sentinel-{run}")
    assert len(await decisions_on_topic(pipeline, decision_id)) == 3
    assert len(await rows(pipeline, cause, event_id)) == 2
