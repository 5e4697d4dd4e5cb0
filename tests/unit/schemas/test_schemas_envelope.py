"""CloudEvents Kafka binding: decoding, encoding and every envelope-level rejection."""

from __future__ import annotations

import datetime as dt
import json
import pickle
from typing import Any

import pytest

from schemas.envelope import (
    MAX_VALUE_BYTES,
    Envelope,
    decode_kafka_record,
    encode_binary,
    encode_structured,
)
from schemas.errors import EventRejected, RejectionCode
from schemas.referral import REFERRAL_SUBMITTED
from schemas.vocab import DataClassification
from tests.unit.schemas.schema_samples import REFERRAL, new_envelope, sample

Headers = list[tuple[str, bytes | None]]

BASE_HEADERS: Headers = [
    ("ce_id", b"evt-1"),
    ("ce_source", b"urn:casebridge:agency:gr-police-athens"),
    ("ce_specversion", b"1.0"),
    ("ce_type", REFERRAL_SUBMITTED.encode()),
    ("ce_time", b"2024-05-02T09:30:00+03:00"),
    ("ce_subject", b"GR-ATH-2024-000123"),
    ("content-type", b"application/json"),
]
VALUE = json.dumps(REFERRAL).encode()


def headers_with(**changes: bytes | None) -> Headers:
    """BASE_HEADERS with some replaced (bytes) or removed (None); content_type = content-type."""
    changes = {("content-type" if k == "content_type" else k): v for k, v in changes.items()}
    out = [(n, v) for n, v in BASE_HEADERS if n not in changes]
    return out + [(n, v) for n, v in changes.items() if v is not None]


def rejected(headers: Headers, value: bytes | None) -> EventRejected:
    with pytest.raises(EventRejected) as info:
        decode_kafka_record(headers, value)
    return info.value


def structured(event: Any) -> bytes:
    return event if isinstance(event, bytes) else json.dumps(event).encode()


STRUCTURED_EVENT: dict[str, Any] = {
    "specversion": "1.0",
    "id": "evt-s-1",
    "source": "urn:casebridge:agency:gr-police-athens",
    "type": REFERRAL_SUBMITTED,
    "time": "2024-05-02T06:30:00Z",
    "subject": REFERRAL["case_id"],
    "datacontenttype": "application/json",
    "dataclassification": "restricted",
    "data": REFERRAL,
}
STRUCTURED_HEADERS: Headers = [("content-type", b"application/cloudevents+json; charset=utf-8")]


# --- accepted ---------------------------------------------------------------------------------


def test_binary_mode_decodes_headers_and_parses_data_once() -> None:
    envelope, data = decode_kafka_record(BASE_HEADERS, VALUE)
    assert envelope.id == "evt-1"
    assert envelope.type == REFERRAL_SUBMITTED
    assert envelope.subject == "GR-ATH-2024-000123"
    assert envelope.time == dt.datetime(2024, 5, 2, 6, 30, tzinfo=dt.UTC)
    assert envelope.time is not None
    assert envelope.time.tzinfo is not None
    assert data == REFERRAL


def test_binary_round_trip() -> None:
    envelope = new_envelope()
    envelope = Envelope(
        id=envelope.id,
        source=envelope.source,
        type=envelope.type,
        time=envelope.time,
        subject=envelope.subject,
        datacontenttype="application/json",
        dataschema="urn:casebridge:schema:org.casebridge.referral.submitted.v1",
        correlationid="chain-1",
        causationid="evt-0",
        dataclassification=DataClassification.restricted,
    )
    headers, value = encode_binary(envelope, sample(REFERRAL_SUBMITTED))
    assert ("ce_specversion", b"1.0") in headers
    assert ("content-type", b"application/json") in headers
    decoded, data = decode_kafka_record(headers, value)
    assert decoded == envelope
    assert data == REFERRAL


def test_encode_accepts_models_and_bytes() -> None:
    from schemas.registry import validate_payload

    model = validate_payload(REFERRAL_SUBMITTED, sample(REFERRAL_SUBMITTED))
    _, from_model = decode_kafka_record(*encode_binary(new_envelope(), model))
    assert validate_payload(REFERRAL_SUBMITTED, from_model) == model
    _, from_bytes = decode_kafka_record(*encode_binary(new_envelope(), VALUE))
    assert from_bytes == REFERRAL


def test_structured_mode_accepted() -> None:
    envelope, data = decode_kafka_record(STRUCTURED_HEADERS, json.dumps(STRUCTURED_EVENT).encode())
    assert envelope.id == "evt-s-1"
    assert envelope.dataclassification is DataClassification.restricted
    assert envelope.time == dt.datetime(2024, 5, 2, 6, 30, tzinfo=dt.UTC)
    assert data == REFERRAL


def test_structured_mode_ignores_binary_headers() -> None:
    headers = [*BASE_HEADERS[:-1], *STRUCTURED_HEADERS]
    envelope, _ = decode_kafka_record(headers, json.dumps(STRUCTURED_EVENT).encode())
    assert envelope.id == "evt-s-1"


def test_encode_structured_round_trip() -> None:
    envelope = new_envelope()
    headers, value = encode_structured(envelope, sample(REFERRAL_SUBMITTED))
    decoded, data = decode_kafka_record(headers, value)
    assert decoded == envelope
    assert data == REFERRAL


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        b"application/json",
        b"application/json; charset=utf-8",
        b"application/json;charset=UTF-8",
        b'Application/JSON; Charset="utf-8"',
    ],
)
def test_json_content_types_accepted(content_type: bytes | None) -> None:
    envelope, _ = decode_kafka_record(headers_with(content_type=content_type), VALUE)
    assert envelope.datacontenttype == (content_type.decode() if content_type else None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-02T06:30:00Z", dt.datetime(2024, 5, 2, 6, 30, tzinfo=dt.UTC)),
        ("2024-05-02t06:30:00z", dt.datetime(2024, 5, 2, 6, 30, tzinfo=dt.UTC)),
        (
            "2024-05-02T06:30:00.123456789-02:00",
            dt.datetime(2024, 5, 2, 8, 30, 0, 123456, tzinfo=dt.UTC),
        ),
    ],
)
def test_rfc3339_times(text: str, expected: dt.datetime) -> None:
    envelope, _ = decode_kafka_record(headers_with(ce_time=text.encode()), VALUE)
    assert envelope.time == expected


def test_unknown_headers_are_ignored_and_names_case_insensitive() -> None:
    headers = [(n.upper() if n == "content-type" else n, v) for n, v in BASE_HEADERS]
    headers += [("traceparent", b"00-abc-def-01"), ("ce_unknownext", b"x")]
    envelope, _ = decode_kafka_record(headers, VALUE)
    assert envelope.datacontenttype == "application/json"


# --- rejected ---------------------------------------------------------------------------------


def test_too_large_is_checked_before_parsing() -> None:
    error = rejected(BASE_HEADERS, b"{" * (MAX_VALUE_BYTES + 1))
    assert error.code is RejectionCode.TOO_LARGE
    # Even with no envelope at all: size comes first.
    assert rejected([], b" " * (MAX_VALUE_BYTES + 1)).code is RejectionCode.TOO_LARGE


def test_value_at_the_limit_is_not_too_large() -> None:
    padded = VALUE + b" " * (MAX_VALUE_BYTES - len(VALUE))
    decode_kafka_record(BASE_HEADERS, padded)


@pytest.mark.parametrize("header", ["ce_id", "ce_source", "ce_specversion", "ce_type"])
def test_missing_required_attribute_names_it(header: str) -> None:
    error = rejected(headers_with(**{header: None}), VALUE)
    assert error.code is RejectionCode.MISSING_ATTRIBUTE
    assert header in error.message


def test_all_missing_attributes_are_listed() -> None:
    error = rejected([], VALUE)
    assert error.code is RejectionCode.MISSING_ATTRIBUTE
    for header in ("ce_id", "ce_source", "ce_specversion", "ce_type"):
        assert header in error.message


@pytest.mark.parametrize("version", [b"0.3", b"1.0.0", b"2.0"])
def test_unsupported_specversion(version: bytes) -> None:
    error = rejected(headers_with(ce_specversion=version), VALUE)
    assert error.code is RejectionCode.UNSUPPORTED_SPECVERSION


@pytest.mark.parametrize(
    "changes",
    [
        {"ce_time": b"yesterday"},
        {"ce_time": b"2024-05-02T09:30:00"},  # no offset
        {"ce_time": b"2024-05-02"},
        {"ce_time": b"2024-13-02T09:30:00Z"},
        {"ce_time": b"2024-05-02 09:30:00Z"},
        {"ce_time": b"2024-05-02T09:30:00+25:00"},
        {"ce_id": b"x" * 257},
        {"ce_source": b"s" * 257},
        {"ce_type": b"t" * 257},
        {"ce_subject": b"s" * 257},
        {"ce_correlationid": b"c" * 257},
        {"ce_dataschema": b"urn:" + b"x" * 2048},
        {"ce_id": b""},
        {"ce_subject": b"GR-1\nFAKE LOG LINE"},
        {"ce_source": b"urn:has space"},
        {"ce_id": b"\xff\xfe"},
        {"ce_dataclassification": b"secret"},
    ],
)
def test_invalid_attribute(changes: dict[str, bytes | None]) -> None:
    error = rejected(headers_with(**changes), VALUE)
    assert error.code is RejectionCode.INVALID_ATTRIBUTE, error.message


def test_attribute_at_length_limit_is_accepted() -> None:
    envelope, _ = decode_kafka_record(headers_with(ce_id=b"x" * 256, ce_subject=b"s" * 256), VALUE)
    assert len(envelope.id) == 256


def test_null_header_value_is_invalid() -> None:
    error = rejected([*headers_with(ce_id=None), ("ce_id", None)], VALUE)
    assert error.code is RejectionCode.INVALID_ATTRIBUTE


def test_duplicate_header_is_invalid() -> None:
    error = rejected([*BASE_HEADERS, ("ce_type", b"org.casebridge.sar.alert.v1")], VALUE)
    assert error.code is RejectionCode.INVALID_ATTRIBUTE
    assert "ce_type" in error.message


@pytest.mark.parametrize(
    "content_type",
    [
        b"text/plain",
        b"application/xml",
        b"application/json; charset=latin-1",
        b"application/jsonx",
        b"application/cloudevents-batch+json",
        b"application/cloudevents+avro",
    ],
)
def test_unsupported_content_type(content_type: bytes) -> None:
    error = rejected(headers_with(content_type=content_type), VALUE)
    assert error.code is RejectionCode.UNSUPPORTED_CONTENT_TYPE


@pytest.mark.parametrize(
    "value",
    [None, b"", b"{", b"\xff\xfe{}", b"null", b'{"a": NaN}', b"{'single': 'quotes'}", b"[" * 5000],
)
def test_not_json(value: bytes | None) -> None:
    assert rejected(BASE_HEADERS, value).code is RejectionCode.NOT_JSON


def test_not_json_message_does_not_echo_the_value() -> None:
    error = rejected(BASE_HEADERS, b'{"given_name": "SECRETNAME" oops}')
    assert "SECRETNAME" not in error.message


@pytest.mark.parametrize(
    ("event", "code"),
    [
        ({k: v for k, v in STRUCTURED_EVENT.items() if k != "data"}, RejectionCode.NOT_JSON),
        ({**STRUCTURED_EVENT, "data": None}, RejectionCode.NOT_JSON),
        (b"not json", RejectionCode.NOT_JSON),
        ([STRUCTURED_EVENT], RejectionCode.INVALID_ATTRIBUTE),
        ({**STRUCTURED_EVENT, "id": 17}, RejectionCode.INVALID_ATTRIBUTE),
        ({**STRUCTURED_EVENT, "time": "soon"}, RejectionCode.INVALID_ATTRIBUTE),
        (
            {k: v for k, v in STRUCTURED_EVENT.items() if k != "type"},
            RejectionCode.MISSING_ATTRIBUTE,
        ),
        ({**STRUCTURED_EVENT, "specversion": "0.3"}, RejectionCode.UNSUPPORTED_SPECVERSION),
        (
            {**STRUCTURED_EVENT, "datacontenttype": "text/csv"},
            RejectionCode.UNSUPPORTED_CONTENT_TYPE,
        ),
        (
            {**STRUCTURED_EVENT, "data_base64": "e30=", "data": None},
            RejectionCode.UNSUPPORTED_CONTENT_TYPE,
        ),
    ],
)
def test_structured_mode_rejections(event: Any, code: RejectionCode) -> None:
    assert rejected(STRUCTURED_HEADERS, structured(event)).code is code


def test_structured_null_value_is_not_json() -> None:
    assert rejected(STRUCTURED_HEADERS, None).code is RejectionCode.NOT_JSON


# --- encoding checks ------------------------------------------------------------------------


def test_encode_rejects_naive_time() -> None:
    envelope = Envelope(
        id="1", source="urn:x", type=REFERRAL_SUBMITTED, time=dt.datetime(2024, 1, 1)
    )
    with pytest.raises(EventRejected) as info:
        encode_binary(envelope, {})
    assert info.value.code is RejectionCode.INVALID_ATTRIBUTE


def test_encode_rejects_oversized_data() -> None:
    with pytest.raises(EventRejected) as info:
        encode_binary(new_envelope(), {"blob": "x" * MAX_VALUE_BYTES})
    assert info.value.code is RejectionCode.TOO_LARGE


def test_encode_runs_consumer_checks() -> None:
    envelope = Envelope(id="", source="urn:x", type=REFERRAL_SUBMITTED)
    with pytest.raises(EventRejected) as info:
        encode_binary(envelope, {})
    assert info.value.code is RejectionCode.INVALID_ATTRIBUTE


# --- the rejection object itself -------------------------------------------------------------


@pytest.mark.parametrize("code", list(RejectionCode))
def test_rejection_serialises_and_pickles(code: RejectionCode) -> None:
    error = EventRejected(code, "why", [{"loc": "a.b", "type": "t", "msg": "m"}])
    assert json.loads(json.dumps(error.to_dict())) == {
        "code": code.value,
        "message": "why",
        "details": [{"loc": "a.b", "type": "t", "msg": "m"}],
    }
    clone = pickle.loads(pickle.dumps(error))
    assert (clone.code, clone.message, clone.details) == (code, "why", error.details)
    assert str(error) == f"{code}: why"
