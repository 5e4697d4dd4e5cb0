"""describe(): what the audit log says a Kafka record is, by the topic it was read from."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import orjson
import pytest
from aiokafka import ConsumerRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.topics import DEADLETTER, ERASURES, EVENTS_VALID, ROUTING_DECISIONS
from services.audit.records import decode_original, describe, storable

EVENT_HEADERS: list[tuple[str, bytes | None]] = [
    ("ce_id", b"evt-1"),
    ("ce_source", b"urn:casebridge:agency:id-shelter-ngo:casework"),
    ("ce_type", b"org.casebridge.referral.submitted.v1"),
    ("ce_subject", b"REF-1"),
    ("content-type", b"application/json"),
    ("correlation_id", b"faststream-internal"),
    ("cb_origin", b"casebridge.in.id-shelter-ngo/0/7"),
]
PAYLOAD = orjson.dumps(
    {"case_id": "REF-1", "reporting_agency": "id-shelter-ngo", "person": {"given_name": "A"}}
)


def record(
    topic: str,
    *,
    value: bytes | None = PAYLOAD,
    headers: list[tuple[str, bytes | None]] | None = None,
    key: bytes | None = b"REF-1",
) -> ConsumerRecord[Any, Any]:
    return ConsumerRecord(
        topic=topic,
        partition=3,
        offset=99,
        timestamp=1_700_000_000_000,
        timestamp_type=0,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=0,
        headers=EVENT_HEADERS if headers is None else headers,
    )


DEAD_HEADERS: list[tuple[str, bytes | None]] = [
    ("ce_id", b"dl-1"),
    ("ce_source", b"casebridge/intake"),
    ("ce_type", b"org.casebridge.deadletter.v1"),
    ("ce_subject", b"evt-9"),
    ("cb_error_code", b"INVALID_PAYLOAD"),
    ("cb_original_id", b"evt-9"),
    ("cb_original_source", b"urn:casebridge:agency:id-police-aht:records"),
    ("cb_original_type", b"org.casebridge.referral.submitted.v1"),
]

# topic -> (outcome, agency, reason)
KINDS = {
    "casebridge.in.id-shelter-ngo": ("received", "id-shelter-ngo", None),
    # Who sent it is the topic's agency, whatever the payload claims.
    "casebridge.in.id-police-aht": ("received", "id-police-aht", None),
    "casebridge.rejections.id-shelter-ngo": ("published", "id-shelter-ngo", None),
    ROUTING_DECISIONS.name: ("routed", "id-shelter-ngo", None),
    "casebridge.inbox.id-child-protection": ("delivered", "id-child-protection", None),
    "casebridge.updates.th-police-aht": ("published", "th-police-aht", None),
    "casebridge.cases.events": ("published", "id-shelter-ngo", None),
}


@pytest.mark.parametrize(("topic", "expected"), KINDS.items(), ids=KINDS.keys())
def test_outcome_and_agency_follow_the_topic(topic: str, expected: tuple[Any, ...]) -> None:
    r = describe(record(topic))
    assert (r.outcome, r.agency, r.reason_code) == expected
    assert (r.event_id, r.event_source, r.event_type, r.subject) == (
        "evt-1",
        "urn:casebridge:agency:id-shelter-ngo:casework",
        "org.casebridge.referral.submitted.v1",
        "REF-1",
    )
    assert (r.kafka_topic, r.kafka_partition, r.kafka_offset) == (topic, 3, 99)


def test_audit_query_is_recorded_as_a_query() -> None:
    assert describe(record("casebridge.audit.queries")).outcome == "query"


def test_dead_letter_is_rejected_with_the_reason_and_the_original_identity() -> None:
    body = orjson.dumps({"error": {"code": "INVALID_PAYLOAD"}, "rejected_by": "intake"})
    r = describe(record(DEADLETTER.name, headers=DEAD_HEADERS, value=body))
    assert r.outcome == "rejected"
    assert r.reason_code == "INVALID_PAYLOAD"
    assert (r.event_id, r.event_source, r.event_type) == (
        "evt-9",
        "urn:casebridge:agency:id-police-aht:records",
        "org.casebridge.referral.submitted.v1",
    )
    assert r.subject == "REF-1"  # the record key (case id), not the dead-letter's ce_subject
    assert r.agency is None


def test_dead_letter_names_the_agency_whose_topic_carried_the_record() -> None:
    headers = [*DEAD_HEADERS, ("cb_agency", b"id-police-aht")]
    r = describe(record(DEADLETTER.name, headers=headers, value=b"{}"))
    assert (r.outcome, r.agency) == ("rejected", "id-police-aht")


def test_dead_letter_without_original_identity_keeps_its_own() -> None:
    headers = [h for h in DEAD_HEADERS if not h[0].startswith("cb_original")]
    r = describe(record(DEADLETTER.name, headers=headers, value=b"{}"))
    assert (r.event_id, r.event_source) == ("dl-1", "casebridge/intake")


def test_topic_prefix_is_ignored_for_classification_but_kept_in_the_row() -> None:
    topic = "t1234." + DEADLETTER.name
    r = describe(record(topic, headers=DEAD_HEADERS), topic_prefix="t1234.")
    assert r.outcome == "rejected"
    assert r.kafka_topic == topic
    r = describe(record("t1234.casebridge.inbox.au-jrcc"), topic_prefix="t1234.")
    assert (r.outcome, r.agency) == ("delivered", "au-jrcc")


def test_payload_digest_is_sha256_of_the_raw_value() -> None:
    r = describe(record("casebridge.in.id-shelter-ngo"))
    assert r.payload_digest == hashlib.sha256(PAYLOAD).digest()
    assert r.raw_value == PAYLOAD


def test_null_value_digests_as_empty() -> None:
    r = describe(record("casebridge.in.id-shelter-ngo", value=None))
    assert r.payload_digest == hashlib.sha256(b"").digest()
    assert r.raw_value is None
    assert r.agency == "id-shelter-ngo", "who sent it still follows from the topic"


@pytest.mark.parametrize(
    "value",
    [b"\x00\x01 binary", b'{"case_id": "REF-1", ', b'{"a": "\xff"}', b'{"a": "\\u0000"}'],
    ids=["binary", "truncated JSON", "not UTF-8", "NUL escape"],
)
def test_a_value_that_is_not_json_keeps_its_raw_bytes(value: bytes) -> None:
    r = describe(record("casebridge.in.id-shelter-ngo", value=value))
    assert r.raw_value == value
    assert r.data_subject == "case:REF-1"  # from ce_subject: the value names no case
    assert r.payload_digest == hashlib.sha256(value).digest()


def test_only_cloudevents_and_casebridge_headers_are_kept_bounded() -> None:
    headers = [*EVENT_HEADERS, ("cb_note", b"n" * 5000), ("x-trace", b"t"), ("ce_bad", None)]
    r = describe(record("casebridge.in.id-shelter-ngo", headers=headers))
    assert set(r.attributes) == {
        "ce_id",
        "ce_source",
        "ce_type",
        "ce_subject",
        "content-type",
        "cb_origin",
        "cb_note",
        "ce_bad",
    }
    assert len(r.attributes["cb_note"]) == 1024
    assert r.attributes["ce_bad"] == ""


def test_subject_falls_back_to_the_key() -> None:
    headers = [h for h in EVENT_HEADERS if h[0] != "ce_subject"]
    assert describe(record("casebridge.in.au-jrcc", headers=headers)).subject == "REF-1"
    assert describe(record("casebridge.in.au-jrcc", headers=headers, key=None)).subject is None


def test_reporting_agency_is_bounded_and_must_be_text() -> None:
    """Where no topic names the agency (the case event log), the payload's does."""
    long = orjson.dumps({"reporting_agency": "a" * 500})
    assert describe(record("casebridge.cases.events", value=long)).agency == "a" * 64
    odd = orjson.dumps({"reporting_agency": ["not", "text"]})
    assert describe(record("casebridge.cases.events", value=odd)).agency is None


# --- whose data key seals the value ---------------------------------------------------------

NO_SUBJECT = [h for h in EVENT_HEADERS if h[0] != "ce_subject"]


@pytest.mark.parametrize(
    ("value", "headers", "key", "expected"),
    [
        (orjson.dumps({"case_id": "CASE-9"}), EVENT_HEADERS, b"KEY-1", "case:CASE-9"),
        (orjson.dumps({"case_id": 9}), EVENT_HEADERS, b"KEY-1", "case:REF-1"),
        (orjson.dumps({"case_id": ""}), NO_SUBJECT, b"KEY-1", "case:KEY-1"),
        (orjson.dumps(["case_id", "CASE-9"]), NO_SUBJECT, b"KEY-1", "case:KEY-1"),
        (b"not json", EVENT_HEADERS, None, "case:REF-1"),
        (b"not json", NO_SUBJECT, None, "unattributed:casebridge.in.au-jrcc"),
        (None, NO_SUBJECT, None, "unattributed:casebridge.in.au-jrcc"),
    ],
    ids=["case_id", "case_id-not-text", "key", "not-an-object", "ce_subject", "none", "no-value"],
)
def test_a_value_is_sealed_for_the_case_it_is_about(
    value: bytes | None, headers: list[tuple[str, bytes | None]], key: bytes | None, expected: str
) -> None:
    """The payload's case_id, else ce_subject, else the key; nothing: unattributed."""
    r = describe(record("casebridge.in.au-jrcc", value=value, headers=headers, key=key))
    assert r.data_subject == expected


def test_trusted_copies_are_sealed_for_their_case_too() -> None:
    """An inbox copy (no second validation) still names the case from its payload."""
    value = orjson.dumps({"case_id": "CASE-7", "reporting_agency": "id-shelter-ngo"})
    r = describe(record("casebridge.inbox.id-child-protection", value=value))
    assert (r.outcome, r.data_subject) == ("delivered", "case:CASE-7")


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def dead_letter_body(value: bytes | None, *, key: bytes | None, subject: bytes | None) -> bytes:
    headers = [["ce_id", _b64(b"evt-9")]] + ([["ce_subject", _b64(subject)]] if subject else [])
    return orjson.dumps(
        {
            "error": {"code": "INVALID_PAYLOAD"},
            "original": {
                "key_b64": None if key is None else _b64(key),
                "headers": headers,
                "value_b64": None if value is None else _b64(value),
            },
        }
    )


@pytest.mark.parametrize("topic", [DEADLETTER.name, "casebridge.rejections.id-police-aht"])
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            dead_letter_body(orjson.dumps({"case_id": "CASE-5"}), key=b"K", subject=b"S"),
            "case:CASE-5",
        ),
        (dead_letter_body(b"{broken", key=b"K", subject=b"S"), "case:S"),
        (dead_letter_body(None, key=b"K", subject=None), "case:K"),
        (b"not a dead-letter body", "case:REF-1"),
    ],
    ids=["original-case_id", "original-ce_subject", "original-key", "unreadable-body"],
)
def test_a_rejected_record_is_sealed_for_the_case_of_the_record_it_carries(
    topic: str, body: bytes, expected: str
) -> None:
    """Not for the dead-letter's own ce_subject, which names the rejected event."""
    r = describe(record(topic, headers=DEAD_HEADERS, value=body))
    assert r.data_subject == expected
    assert r.data_subject != "case:evt-9"


def test_an_erasure_request_is_audited_and_sealed_like_anything_else() -> None:
    value = orjson.dumps({"case_id": "CASE-3", "reason": "data subject request"})
    r = describe(record(ERASURES.name, value=value, key=None))
    assert (r.outcome, r.data_subject, r.raw_value) == ("erasure_requested", "case:CASE-3", value)


# --- any bytes: every text is storable, the exact bytes are kept where it is not exact ------

HOSTILE_HEADERS: list[tuple[str, bytes | None]] = [
    ("ce_id", b"evt-\x00-1"),
    ("ce_source", b"urn:casebridge:agency:id-shelter-ngo:\xff\xfe"),
    ("ce_type", b"org.casebridge.referral.submitted.v1"),
    ("ce_subject", b"REF-\x00\xc3"),
    ("cb_note", b"\xed\xa0\x80 a surrogate, encoded"),
    ("ce_\x00odd", b"name with NUL"),
    ("ce_id", b"evt-again"),
]
HOSTILE_KEY = b"REF-\x00\xff-key"


def _storable(text: str | None) -> bool:
    """What PostgreSQL text and jsonb accept: valid UTF-8 without NUL."""
    if text is None:
        return True
    text.encode("utf-8")  # raises on a lone surrogate
    return "\x00" not in text


def test_nul_and_invalid_utf8_are_made_storable_and_the_exact_bytes_kept() -> None:
    headers = [*HOSTILE_HEADERS, ("x-trace", b"\x00 not audited")]
    r = describe(record("casebridge.in.id-shelter-ngo", headers=headers, key=HOSTILE_KEY))
    texts = [r.event_id, r.event_source, r.event_type, r.subject, r.agency, r.kafka_topic]
    texts += [r.data_subject, *r.attributes, *r.attributes.values()]
    assert all(_storable(t) for t in texts), texts
    assert b"\\u0000" not in orjson.dumps(r.attributes), "jsonb refuses \\u0000"
    assert r.attributes["ce_source"] == "urn:casebridge:agency:id-shelter-ngo:\\xff\\xfe"
    assert r.attributes["ce_subject"] == "REF-\\x00\\xc3"
    assert r.attributes["ce_\\x00odd"] == "name with NUL"
    assert r.event_id == "evt-again", "the last of a repeated header, as consumers read it"
    assert r.subject == "REF-\\x00\\xc3"
    assert r.original is not None
    key, kept = decode_original(r.original)
    assert key == HOSTILE_KEY
    assert kept == HOSTILE_HEADERS, "every audited header, exactly, repeats and order kept"


def test_a_key_that_is_not_text_is_escaped_for_the_subject_and_kept_exactly() -> None:
    headers = [h for h in EVENT_HEADERS if h[0] != "ce_subject"]
    r = describe(record("casebridge.in.au-jrcc", headers=headers, key=b"\xff\x00", value=None))
    assert (r.subject, r.data_subject) == ("\\xff\\x00", "case:\\xff\\x00")
    assert r.original is not None
    assert decode_original(r.original)[0] == b"\xff\x00"


def test_a_case_id_with_nul_in_the_value_gives_a_storable_data_subject() -> None:
    value = orjson.dumps({"case_id": "CASE\x00-1", "reporting_agency": "x\x00y"})
    r = describe(record("casebridge.cases.events", value=value))
    assert (r.data_subject, r.agency) == ("case:CASE\\x00-1", "x\\x00y")


def test_an_ordinary_record_keeps_no_second_copy_of_its_headers() -> None:
    r = describe(record("casebridge.in.id-shelter-ngo"))
    assert r.original is None
    assert r.attributes["ce_id"] == "evt-1"


@pytest.mark.parametrize(
    ("raw", "text", "exact"),
    [
        (b"plain", "plain", True),
        ("ünï".encode(), "ünï", True),
        (b"a\x00b", "a\\x00b", False),
        (b"a\xffb", "a\\xffb", False),
        (b"a\\xffb", "a\\xffb", True),  # literally a backslash: exact, so nothing else is kept
        (None, "", False),
    ],
)
def test_storable_escapes_only_what_postgresql_refuses(
    raw: bytes | None, text: str, exact: bool
) -> None:
    assert storable(raw) == (text, exact)


# --- the validated stream -------------------------------------------------------------------


def test_the_validated_stream_is_audited_as_validated_for_the_agency_intake_named() -> None:
    headers = [*EVENT_HEADERS, ("cb_agency", b"id-shelter-ngo")]
    r = describe(record(EVENTS_VALID.name, headers=headers))
    assert (r.outcome, r.agency, r.event_id, r.data_subject) == (
        "validated",
        "id-shelter-ngo",
        "evt-1",
        "case:REF-1",
    )


# --- re-published copies ---------------------------------------------------------------------


@pytest.mark.parametrize("topic", ["casebridge.in.id-shelter-ngo", ERASURES.name])
def test_records_others_write_are_never_taken_for_copies(topic: str) -> None:
    assert describe(record(topic)).copy_digest is None


def test_a_copy_is_the_same_record_in_every_byte_but_its_time() -> None:
    topic = ROUTING_DECISIONS.name
    timed = [*EVENT_HEADERS, ("ce_time", b"2026-12-01T00:00:00Z")]
    first = describe(record(topic, headers=timed)).copy_digest
    assert first is not None
    retimed = [*EVENT_HEADERS, ("ce_time", b"2026-12-01T00:00:09Z")]
    assert describe(record(topic, headers=retimed)).copy_digest == first
    different = {
        "value": describe(record(topic, headers=timed, value=PAYLOAD + b" ")),
        "no value": describe(record(topic, headers=timed, value=None)),
        "empty value": describe(record(topic, headers=timed, value=b"")),
        "key": describe(record(topic, headers=timed, key=b"REF-2")),
        "no key": describe(record(topic, headers=timed, key=None)),
        "header": describe(record(topic, headers=[*timed, ("x-trace", b"t")])),
        "null header": describe(record(topic, headers=[*timed, ("x-trace", None)])),
        "order": describe(record(topic, headers=list(reversed(timed)))),
    }
    digests = {name: r.copy_digest for name, r in different.items()}
    assert first not in digests.values(), digests
    assert len(set(digests.values())) == len(digests)


def test_the_topic_prefix_does_not_hide_a_service_topic() -> None:
    r = describe(record("t1." + ROUTING_DECISIONS.name), topic_prefix="t1.")
    assert r.copy_digest is not None


@pytest.mark.parametrize(
    "body",
    [
        {"original": {"headers": 5, "key_b64": 7, "value_b64": ["x"]}},
        {"original": {"headers": [["ce_subject", "not base64!"], [1, 2], "x"]}},
        {"original": "not an object"},
    ],
    ids=["wrong-types", "odd-headers", "original-not-an-object"],
)
def test_a_malformed_dead_letter_body_is_still_described(body: dict[str, Any]) -> None:
    """Whatever a record holds, describing it never fails: a failure would stall the audit."""
    r = describe(record(DEADLETTER.name, headers=DEAD_HEADERS, value=orjson.dumps(body)))
    assert (r.outcome, r.data_subject) == ("rejected", "case:REF-1")


_NAMES = st.sampled_from(
    ["ce_id", "ce_source", "ce_type", "ce_subject", "cb_agency", "cb_original_id", "x-other"]
)
_BYTES = st.binary(max_size=40) | st.sampled_from([b"\x00", b"\xff", b"\xed\xa0\x80"])


@settings(max_examples=300, deadline=None)
@given(
    topic=st.sampled_from(
        [
            "casebridge.in.id-shelter-ngo",
            EVENTS_VALID.name,
            DEADLETTER.name,
            ROUTING_DECISIONS.name,
            "casebridge.rejections.au-jrcc",
        ]
    ),
    key=st.none() | _BYTES,
    value=st.none() | _BYTES | st.builds(orjson.dumps, st.dictionaries(st.text(), st.text())),
    headers=st.lists(
        st.tuples(_NAMES | st.text(max_size=8).map("ce_".__add__), st.none() | _BYTES),
        max_size=8,
    ),
)
def test_any_bytes_are_described_storably_and_kept_exactly(
    topic: str, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes | None]]
) -> None:
    r = describe(record(topic, key=key, value=value, headers=headers))
    texts = [r.event_id, r.event_source, r.event_type, r.subject, r.agency, r.reason_code]
    texts += [r.kafka_topic, r.data_subject, *r.attributes, *r.attributes.values()]
    assert all(_storable(t) for t in texts)
    audited = [h for h in headers if h[0].startswith(("ce_", "cb_"))]
    exact = r.original is None
    if exact:
        # Nothing else is kept, so the text must be the bytes.
        assert key is None or (r.subject or "").encode() == key or "ce_subject" in r.attributes
        assert all(r.attributes[n] == (v or b"").decode() for n, v in audited)
    else:
        assert r.original is not None
        assert decode_original(r.original) == (key, audited)
