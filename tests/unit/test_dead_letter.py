"""dead_letter(): the rejected record kept whole, the reason readable twice, a replay-stable id."""

from __future__ import annotations

import base64
import time
from typing import Any

import orjson
from aiokafka import ConsumerRecord

from schemas.errors import EventRejected, RejectionCode
from schemas.topics import DEADLETTER
from services.runtime.dead_letter import DEAD_LETTER_TYPE, dead_letter, derived_id


def record(
    *,
    value: bytes | None = b'{"case_id": "REF-1"}',
    key: bytes | None = b"REF-1",
    headers: list[tuple[str, bytes | None]] | None = None,
    topic: str = "casebridge.in.id-shelter-ngo",
    partition: int = 2,
    offset: int = 41,
) -> ConsumerRecord[Any, Any]:
    if headers is None:
        headers = [
            ("ce_id", b"evt-1"),
            ("ce_source", b"urn:casebridge:agency:x"),
            ("ce_type", b"org.casebridge.referral.submitted.v1"),
        ]
    return ConsumerRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp=1_700_000_000_000,
        timestamp_type=0,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=0 if key is None else len(key),
        serialized_value_size=0 if value is None else len(value),
        headers=headers,
    )


ERROR = EventRejected(
    RejectionCode.INVALID_PAYLOAD,
    "1 validation error for org.casebridge.referral.submitted.v1",
    [{"loc": "person.gender", "type": "enum", "msg": "Input should be ..."}],
)


def test_body_keeps_the_original_record_whole() -> None:
    headers = [("ce_id", b"evt-1"), ("x-null", None), ("ce_id", b"evt-1-again")]
    out = dead_letter(record(headers=headers), ERROR, rejected_by="intake")
    body = orjson.loads(out.value)
    original = body["original"]
    assert original == {
        "topic": "casebridge.in.id-shelter-ngo",
        "partition": 2,
        "offset": 41,
        "timestamp_ms": 1_700_000_000_000,
        "key_b64": base64.b64encode(b"REF-1").decode(),
        "headers": [
            ["ce_id", base64.b64encode(b"evt-1").decode()],
            ["x-null", None],
            ["ce_id", base64.b64encode(b"evt-1-again").decode()],
        ],
        "value_b64": base64.b64encode(b'{"case_id": "REF-1"}').decode(),
    }
    assert body["error"] == ERROR.to_dict()
    assert body["rejected_by"] == "intake"
    assert "rejected_at" not in body  # when: the ce_time header


def test_null_key_and_value_are_kept_as_null() -> None:
    out = dead_letter(record(key=None, value=None), ERROR, rejected_by="intake")
    original = orjson.loads(out.value)["original"]
    assert original["key_b64"] is None
    assert original["value_b64"] is None
    assert out.key is None


def test_reason_and_original_identity_are_in_the_headers() -> None:
    out = dead_letter(record(), ERROR, rejected_by="router")
    assert out.topic == DEADLETTER.name
    assert out.key == b"REF-1"
    h = out.headers
    assert h["cb_error_code"] == "INVALID_PAYLOAD"
    assert h["cb_error_message"] == ERROR.message
    assert h["cb_origin"] == "casebridge.in.id-shelter-ngo/2/41"
    assert (h["cb_original_id"], h["cb_original_source"], h["cb_original_type"]) == (
        "evt-1",
        "urn:casebridge:agency:x",
        "org.casebridge.referral.submitted.v1",
    )
    assert h["ce_subject"] == "evt-1"
    assert h["ce_type"] == DEAD_LETTER_TYPE
    assert h["ce_source"] == "casebridge/router"
    assert h["ce_specversion"] == "1.0"
    assert h["content-type"] == "application/json"


def test_id_is_derived_from_the_position_so_a_replay_repeats_it() -> None:
    first = dead_letter(record(), ERROR, rejected_by="intake").headers["ce_id"]
    again = dead_letter(record(), ERROR, rejected_by="intake").headers["ce_id"]
    elsewhere = dead_letter(record(offset=42), ERROR, rejected_by="intake").headers["ce_id"]
    assert first == again
    assert first == derived_id(
        "deadletter", "casebridge/intake", "casebridge.in.id-shelter-ngo/2/41"
    )
    assert elsewhere != first


def test_a_replayed_rejection_differs_only_in_ce_time() -> None:
    """The audit keeps one copy of a record CaseBridge wrote twice when every byte but
    `ce_time` is equal: a rejection made again after a redelivery must be that copy."""
    first = dead_letter(record(), ERROR, rejected_by="intake")
    time.sleep(0.002)
    again = dead_letter(record(), ERROR, rejected_by="intake")
    assert again.value == first.value
    assert again.key == first.key
    assert {k: v for k, v in again.headers.items() if k != "ce_time"} == {
        k: v for k, v in first.headers.items() if k != "ce_time"
    }
    other = dead_letter(record(offset=42), ERROR, rejected_by="intake")
    assert other.value != first.value  # the control: another record's rejection differs


def test_two_services_rejecting_one_record_do_not_share_an_id() -> None:
    """The router and the cases service both read the validated stream: each dead letter's
    id includes its own source."""
    by_router = dead_letter(record(), ERROR, rejected_by="router").headers["ce_id"]
    by_cases = dead_letter(record(), ERROR, rejected_by="cases").headers["ce_id"]
    assert by_router != by_cases


def test_derived_ids_separate_kinds_sources_and_parts() -> None:
    assert derived_id("route", "src", "a", "b") == derived_id("route", "src", "a", "b")
    assert derived_id("route", "src", "a") != derived_id("deadletter", "src", "a")
    assert derived_id("route", "src", "a") != derived_id("route", "other-src", "a")
    assert derived_id("route", "src", "a", "b") != derived_id("route", "src", "ab", "")
    # No separator byte inside a part (an agency's id can hold any) makes two inputs meet.
    assert derived_id("route", "s", "a\x1fb", "c") != derived_id("route", "s", "a", "b\x1fc")
    assert derived_id("route", "s\x1fa", "b") != derived_id("route", "s", "a\x1fb")


def test_record_without_attributes_still_dead_letters() -> None:
    out = dead_letter(record(headers=[]), ERROR, rejected_by="intake")
    assert out.headers["cb_original_id"] == ""
    assert out.headers["cb_original_source"] == ""
    assert "ce_subject" not in out.headers


def test_long_or_undecodable_header_values_are_bounded() -> None:
    long_error = EventRejected(RejectionCode.NOT_JSON, "x" * 2000)
    headers = [("ce_id", b"\xff" + b"a" * 1000), ("ce_source", b"s" * 1000)]
    out = dead_letter(record(headers=headers), long_error, rejected_by="intake")
    assert len(out.headers["cb_error_message"]) == 512
    assert len(out.headers["cb_original_id"]) == 256
    assert out.headers["cb_original_id"].startswith("\ufffd")
    assert len(out.headers["cb_original_source"]) == 256
    # The body is not truncated: the full message and original bytes are there.
    body = orjson.loads(out.value)
    assert body["error"]["message"] == "x" * 2000
