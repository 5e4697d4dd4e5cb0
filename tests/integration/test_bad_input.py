"""Every kind of bad input reaches the dead-letter topic and the audit log with its reason,
on the real broker and database, and the partition keeps moving after it."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from aiokafka.errors import MessageSizeTooLargeError

from schemas.topics import AGENCY_RECORD_BYTES, inbound_topic, rejections_topic
from services.runtime.settings import Settings
from tests.support.pipeline import Record, audit_rows, publish, read_topic, running, wait_for
from tests.support.stack import Stack

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

SENDER = "id-shelter-ngo"
REFERRALS = inbound_topic(SENDER)


def referral(case_id: str, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "case_id": case_id,
        "reporting_agency": "id-shelter-ngo",
        "referred_at": datetime.now(UTC).isoformat(),
        "person": {"given_name": "Synthetic", "family_name": "Tester", "age_estimate": 30},
        "type_of_exploitation": ["ForcedLabour"],
        "location_country": "ID",
        "consent_to_share": True,
    }
    data.update(overrides)
    return data


def headers(event_id: str, *, drop: str = "", **override: str) -> list[tuple[str, bytes]]:
    h = {
        "ce_specversion": "1.0",
        "ce_id": event_id,
        "ce_source": "urn:casebridge:agency:id-shelter-ngo:test",
        "ce_type": "org.casebridge.referral.submitted.v1",
        "content-type": "application/json",
    }
    h.update(override)
    h.pop(drop, None)
    return [(k, v.encode()) for k, v in h.items()]


@pytest.fixture(scope="module")
async def pipeline(stack: Stack) -> AsyncIterator[Settings]:
    ns = f"t{uuid.uuid4().hex[:10]}."
    settings = stack.deployment(topic_prefix=ns, group_prefix=ns + "cb")
    async with running(settings, "intake", "router", "audit"):
        yield settings


def _case() -> str:
    return f"CASE-{uuid.uuid4().hex[:12]}"


BAD_INPUTS: dict[str, tuple[str, Any]] = {
    # name: (expected reason, (headers builder args, value builder))
    "not_json": ("NOT_JSON", lambda eid, c: (headers(eid), b"{not json")),
    "missing_ce_id": (
        "MISSING_ATTRIBUTE",
        lambda eid, c: (headers(eid, drop="ce_id"), orjson.dumps(referral(c))),
    ),
    "missing_ce_source": (
        "MISSING_ATTRIBUTE",
        lambda eid, c: (headers(eid, drop="ce_source"), orjson.dumps(referral(c))),
    ),
    "missing_ce_type": (
        "MISSING_ATTRIBUTE",
        lambda eid, c: (headers(eid, drop="ce_type"), orjson.dumps(referral(c))),
    ),
    "unknown_type": (
        "UNKNOWN_TYPE",
        lambda eid, c: (
            headers(eid, ce_type="org.casebridge.referral.teleported.v1"),
            orjson.dumps(referral(c)),
        ),
    ),
    "wrong_specversion": (
        "UNSUPPORTED_SPECVERSION",
        lambda eid, c: (headers(eid, ce_specversion="0.3"), orjson.dumps(referral(c))),
    ),
    "too_large": (
        "TOO_LARGE",
        lambda eid, c: (headers(eid), orjson.dumps(referral(c, padding="x" * (300 * 1024)))),
    ),
    # The largest record the broker lets an agency publish: its dead letter (the record whole,
    # base64) still fits on CaseBridge's own topics, so it is not left behind.
    "largest_an_agency_may_send": (
        "TOO_LARGE",
        lambda eid, c: (
            headers(eid),
            orjson.dumps(referral(c, padding="x" * (AGENCY_RECORD_BYTES - 8 * 1024))),
        ),
    ),
    "source_of_another_agency": (
        "AGENCY_MISMATCH",
        lambda eid, c: (
            headers(eid, ce_source="urn:casebridge:agency:id-police-aht:records"),
            orjson.dumps(referral(c)),
        ),
    ),
    "reporting_agency_of_another_agency": (
        "AGENCY_MISMATCH",
        lambda eid, c: (
            headers(eid),
            orjson.dumps(referral(c, reporting_agency="id-police-aht")),
        ),
    ),
    "invalid_enum_value": (
        "INVALID_PAYLOAD",
        lambda eid, c: (
            headers(eid),
            orjson.dumps(referral(c, type_of_exploitation=["Smuggling"])),
        ),
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
async def test_bad_input_is_dead_lettered_and_audited_with_its_reason(
    pipeline: Settings, case: str
) -> None:
    reason, build = BAD_INPUTS[case]
    event_id, case_id = str(uuid.uuid4()), _case()
    hdrs, value = build(event_id, case_id)
    key = case_id.encode()
    await publish(pipeline, [Record(REFERRALS, value, key, hdrs)])

    rows = await _rejected_rows(pipeline, key)
    assert [r["reason_code"] for r in rows] == [reason]
    assert [r["outcome"] for r in rows] == ["rejected"]

    dead = [r for r in await read_topic(pipeline, "casebridge.deadletter") if r.key == key]
    assert len(dead) == 1
    hmap = dict(dead[0].headers)
    assert hmap["cb_error_code"].decode() == reason
    body = orjson.loads(dead[0].value)
    assert body["error"]["code"] == reason
    assert base64.b64decode(body["original"]["value_b64"]) == value
    assert "Synthetic" not in body["error"]["message"]
    assert hmap["cb_agency"] == b"id-shelter-ngo"

    # The sender sees its own rejection on its own topic, read with its own credentials.
    own = await read_topic(pipeline, rejections_topic(SENDER), principal=SENDER)
    mine = [r for r in own if r.key == key]
    assert len(mine) == 1
    assert dict(mine[0].headers)["cb_error_code"].decode() == reason
    assert orjson.loads(mine[0].value) == body

    received = await audit_rows(
        pipeline,
        "kafka_topic = $1 AND outcome = 'received' AND subject = $2",
        pipeline.topic_prefix + REFERRALS,
        case_id,
    )
    assert len(received) == 1, "the inbound record itself is audited too"


async def test_the_broker_refuses_a_record_larger_than_an_agency_may_send(
    pipeline: Settings,
) -> None:
    case_id = _case()
    too_big = orjson.dumps(referral(case_id, padding="x" * AGENCY_RECORD_BYTES))
    with pytest.raises(MessageSizeTooLargeError):
        await publish(pipeline, [Record(REFERRALS, too_big, case_id.encode(), headers("x"))])


async def _rejected_rows(settings: Settings, key: bytes) -> list[Any]:
    """Audit rows of dead-letter records whose original key was `key` (the case id: a
    dead-letter record keeps the original key, and the audit takes its subject from it; the
    record's value is sealed, so no query can look inside it)."""

    async def probe() -> list[Any]:
        return await audit_rows(
            settings,
            "outcome = 'rejected' AND kafka_topic = $1 AND subject = $2",
            settings.topic_prefix + "casebridge.deadletter",
            key.decode(),
        )

    return await wait_for(probe, lambda r: len(r) >= 1)


async def test_duplicate_event_id_has_one_effect(pipeline: Settings) -> None:
    event_id, case_id = str(uuid.uuid4()), _case()
    value = orjson.dumps(referral(case_id))
    record = Record(REFERRALS, value, case_id.encode(), headers(event_id))
    await publish(pipeline, [record])
    await publish(pipeline, [record, record])

    rejected = await wait_for(
        lambda: _rejected_rows(pipeline, case_id.encode()), lambda r: len(r) >= 2
    )
    assert [r["reason_code"] for r in rejected] == ["DUPLICATE_EVENT", "DUPLICATE_EVENT"]
    routed = await wait_for(
        lambda: audit_rows(
            pipeline, "outcome = 'routed' AND attributes->>'ce_causationid' = $1", event_id
        ),
        lambda r: len(r) >= 1,
    )
    assert len(routed) == 1, "only the first of three copies is routed"


async def test_partition_keeps_moving_after_a_bad_message(pipeline: Settings) -> None:
    case_id = _case()
    bad = Record(REFERRALS, b"\xff\xfe garbage", case_id.encode(), headers(str(uuid.uuid4())))
    good_id = str(uuid.uuid4())
    good = Record(REFERRALS, orjson.dumps(referral(case_id)), case_id.encode(), headers(good_id))
    await publish(pipeline, [bad, good])
    delivered = await wait_for(
        lambda: audit_rows(pipeline, "outcome = 'delivered' AND event_id = $1", good_id),
        lambda r: len(r) >= 1,
    )
    assert delivered, "the valid event behind a bad one on the same partition is delivered"
