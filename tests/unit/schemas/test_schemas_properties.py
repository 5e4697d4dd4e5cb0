"""Property tests: whatever arrives, decode + validate raise EventRejected and nothing else,
and rejections never echo input text."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.envelope import decode_kafka_record
from schemas.errors import EventRejected
from schemas.registry import EVENT_TYPES, validate_payload
from tests.unit.schemas.schema_samples import SAMPLES, sample

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=25,
)
event_types = st.sampled_from([*sorted(EVENT_TYPES), "org.casebridge.nope.v1", ""])
attribute_headers = st.sampled_from(
    [
        "ce_id",
        "ce_source",
        "ce_specversion",
        "ce_type",
        "ce_time",
        "ce_subject",
        "ce_dataclassification",
        "ce_dataschema",
        "content-type",
        "Content-Type",
        "x-other",
    ]
)
header_values = st.sampled_from(
    [b"1.0", b"application/json", b"application/cloudevents+json", b"2024-01-01T00:00:00Z"]
) | st.binary(max_size=300)


def headers_for(event_type: str) -> list[tuple[str, bytes | None]]:
    return [
        ("ce_id", b"1"),
        ("ce_source", b"urn:test"),
        ("ce_specversion", b"1.0"),
        ("ce_type", event_type.encode()),
    ]


def decode_and_validate(headers: Any, value: bytes | None) -> None:
    try:
        envelope, data = decode_kafka_record(headers, value)
        validate_payload(envelope.type, data)
    except EventRejected:
        pass


@settings(max_examples=300)
@given(event_types, json_values)
def test_any_json_value_only_raises_event_rejected(event_type: str, value: Any) -> None:
    decode_and_validate(headers_for(event_type), json.dumps(value).encode())


@settings(max_examples=300)
@given(event_types, st.binary(max_size=200) | st.none())
def test_any_bytes_only_raise_event_rejected(event_type: str, value: bytes | None) -> None:
    decode_and_validate(headers_for(event_type), value)


@settings(max_examples=300)
@given(st.lists(st.tuples(attribute_headers, header_values | st.none()), max_size=12), json_values)
def test_any_headers_only_raise_event_rejected(headers: Any, value: Any) -> None:
    decode_and_validate(headers, json.dumps(value).encode())


@settings(max_examples=300)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "specversion",
                "id",
                "source",
                "type",
                "time",
                "data",
                "data_base64",
                "datacontenttype",
                "subject",
            ]
        ),
        json_values | event_types,
        max_size=9,
    )
)
def test_any_structured_event_only_raises_event_rejected(event: dict[str, Any]) -> None:
    headers = [("content-type", b"application/cloudevents+json")]
    decode_and_validate(headers, json.dumps(event).encode())


def leaf_paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in leaf_paths(v, (*prefix, k))] or [prefix]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in leaf_paths(v, (*prefix, i))] or [prefix]
    return [prefix]


secrets = st.text(
    alphabet=st.characters(codec="utf-8", categories=("L", "N", "P", "Zs")),
    min_size=0,
    max_size=300,
).map(lambda s: f"SECRETXQ{s}")


@settings(max_examples=500)
@given(st.sampled_from(sorted(SAMPLES)), st.data(), secrets)
def test_mutated_payloads_never_leak_inserted_text(event_type: str, data: Any, secret: str) -> None:
    payload = sample(event_type)
    path = data.draw(st.sampled_from(leaf_paths(payload)))
    replacement = data.draw(
        st.sampled_from([secret, [secret], {"k": secret}, {"given_name": secret}])
    )
    target: Any = payload
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = replacement
    rejection: EventRejected | None = None
    try:
        validate_payload(event_type, payload)
    except EventRejected as error:
        rejection = error
    if rejection is not None:
        assert "SECRETXQ" not in json.dumps(rejection.to_dict())
        assert "SECRETXQ" not in str(rejection)
