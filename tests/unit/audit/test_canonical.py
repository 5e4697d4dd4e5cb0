"""Canonical leaf encoding: the documented example, an independent encoder, strictness."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.audit.canonical import (
    LEAF_FIELDS,
    LEAF_VERSION_TAG,
    AuditEntry,
    decode_leaf,
    encode_leaf,
    entry_leaf_hash,
    payload_digest,
)

DOC = Path(__file__).resolve().parents[3] / "docs" / "audit-leaf-format.md"

RAW_VALUE = b'{"event_id":"3f1c2a9e-0b7d-4c1e-9a5f-2d8e6b4c7a10"}'
EXAMPLE = AuditEntry(
    seq=42,
    event_id="3f1c2a9e-0b7d-4c1e-9a5f-2d8e6b4c7a10",
    event_source="ngo-lighthouse",
    event_type="referral.created",
    subject="case-2024-0017",
    kafka_topic="casebridge.inbound.ngo-lighthouse",
    kafka_partition=3,
    kafka_offset=1187,
    recorded_at=datetime(2024, 5, 17, 9, 30, 12, 345678, tzinfo=UTC),
    outcome="accepted",
    reason_code=None,
    payload_digest=hashlib.sha256(RAW_VALUE).digest(),
)
EXAMPLE_BODY = (
    '[42,"3f1c2a9e-0b7d-4c1e-9a5f-2d8e6b4c7a10","ngo-lighthouse","referral.created",'
    '"case-2024-0017","casebridge.inbound.ngo-lighthouse",3,1187,"2024-05-17T09:30:12.345678Z",'
    '"accepted",null,"9227dd752267ffc2fecbec63940442bcdcda70c755e5e872f4d47aac1c9dbaf9"]'
)
EXAMPLE_LEAF_HASH = "953bed967d35b92f620ec09d21dac280e794cff5201e8a3db5f6e4e1ef1fd333"


def test_worked_example_matches_code() -> None:
    leaf = encode_leaf(EXAMPLE)
    assert leaf == b"cb-audit-leaf-v1\n" + EXAMPLE_BODY.encode()
    assert len(leaf) == 269
    assert hashlib.sha256(b"\x00" + leaf).hexdigest() == EXAMPLE_LEAF_HASH
    assert entry_leaf_hash(EXAMPLE).hex() == EXAMPLE_LEAF_HASH
    assert payload_digest(RAW_VALUE) == EXAMPLE.payload_digest


def test_worked_example_matches_doc() -> None:
    doc = DOC.read_text(encoding="utf-8")
    assert f"cb-audit-leaf-v1\n{EXAMPLE_BODY}\n```" in doc
    assert EXAMPLE_LEAF_HASH in doc
    assert EXAMPLE.payload_digest.hex() in doc
    assert RAW_VALUE.decode() in doc
    assert f"{len(RAW_VALUE)} bytes" in doc
    assert "Leaf (269 bytes" in doc


# --- an independent encoder written from docs/audit-leaf-format.md -------------------------

_SHORT_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def spec_string(s: str) -> str:
    out = []
    for ch in s:
        if ch in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[ch])
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def spec_value(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, int):
        return str(v)
    return spec_string(v)


def spec_leaf(e: AuditEntry) -> bytes:
    t = e.recorded_at.astimezone(UTC)
    time = (
        f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
        f".{t.microsecond:06d}Z"
    )
    values = [
        e.seq, e.event_id, e.event_source, e.event_type, e.subject, e.kafka_topic,
        e.kafka_partition, e.kafka_offset, time, e.outcome, e.reason_code, e.payload_digest.hex(),
    ]  # fmt: skip
    return b"cb-audit-leaf-v1\n" + ("[" + ",".join(map(spec_value, values)) + "]").encode()


text = st.text(max_size=30)  # hypothesis never generates lone surrogates here
ints = st.integers(0, 2**63 - 1)
zones = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
)
entries = st.builds(
    AuditEntry,
    seq=ints,
    event_id=text,
    event_source=text,
    event_type=text,
    subject=st.none() | text,
    kafka_topic=text,
    kafka_partition=st.integers(0, 2**31 - 1),
    kafka_offset=ints,
    recorded_at=st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=zones
    ),
    outcome=st.sampled_from(["accepted", "rejected", "routed", "delivered", "query"]) | text,
    reason_code=st.none() | text,
    payload_digest=st.binary(min_size=32, max_size=32),
)


@settings(max_examples=400, deadline=None)
@given(entries)
def test_encoding_follows_the_written_spec(entry: AuditEntry) -> None:
    leaf = encode_leaf(entry)
    assert leaf == spec_leaf(entry)
    body = json.loads(leaf[len(LEAF_VERSION_TAG) :])
    assert json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode() == leaf[17:]


@settings(max_examples=300, deadline=None)
@given(entries)
def test_decode_round_trip(entry: AuditEntry) -> None:
    decoded = decode_leaf(encode_leaf(entry))
    assert decoded == entry
    assert decoded.recorded_at.tzinfo is UTC


@settings(max_examples=200, deadline=None)
@given(entries, entries)
def test_distinct_entries_have_distinct_leaves(a: AuditEntry, b: AuditEntry) -> None:
    assert (encode_leaf(a) == encode_leaf(b)) == (a == b)


_CHANGED: dict[str, Any] = {
    "seq": 43,
    "event_id": "3f1c2a9e-0b7d-4c1e-9a5f-2d8e6b4c7a11",
    "event_source": "ngo-lighthouse2",
    "event_type": "referral.updated",
    "subject": None,
    "kafka_topic": "casebridge.inbound.other",
    "kafka_partition": 4,
    "kafka_offset": 1188,
    "recorded_at": EXAMPLE.recorded_at + timedelta(microseconds=1),
    "outcome": "rejected",
    "reason_code": "",
    "payload_digest": bytes(32),
}


@pytest.mark.parametrize("field", LEAF_FIELDS)
def test_every_field_is_in_the_leaf(field: str) -> None:
    changed = dataclasses.replace(EXAMPLE, **{field: _CHANGED[field]})
    assert encode_leaf(changed) != encode_leaf(EXAMPLE)
    assert entry_leaf_hash(changed) != entry_leaf_hash(EXAMPLE)


def test_field_list_matches_dataclass() -> None:
    assert tuple(f.name for f in dataclasses.fields(AuditEntry)) == LEAF_FIELDS


def test_time_is_encoded_as_the_utc_instant() -> None:
    cet = timezone(timedelta(hours=2))
    local = dataclasses.replace(EXAMPLE, recorded_at=datetime(2024, 5, 17, 11, 30, 12, 345678, cet))
    assert encode_leaf(local) == encode_leaf(EXAMPLE)
    whole = dataclasses.replace(EXAMPLE, recorded_at=datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert b'"0999-01-02T03:04:05.000000Z"' in encode_leaf(whole)


def test_strings_are_escaped_and_utf8() -> None:
    e = dataclasses.replace(EXAMPLE, subject='a"b\\c\nd\x01\x7fé😀/', reason_code="\u2028")
    leaf = encode_leaf(e)
    assert '"a\\"b\\\\c\\nd\\u0001\x7fé😀/"'.encode() in leaf
    assert '"\u2028"'.encode() in leaf


def test_lone_surrogate_is_rejected() -> None:
    with pytest.raises(ValueError, match="not encodable"):
        encode_leaf(dataclasses.replace(EXAMPLE, event_id="\ud800"))


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("seq", -1, ValueError),
        ("seq", True, ValueError),
        ("seq", 2**63, ValueError),
        ("seq", 1.0, ValueError),
        ("kafka_offset", -5, ValueError),
        ("kafka_partition", "3", ValueError),
        ("event_id", 7, TypeError),
        ("outcome", None, TypeError),
        ("subject", 5, TypeError),
        ("reason_code", b"x", TypeError),
        ("recorded_at", datetime(2024, 5, 17), ValueError),
        ("recorded_at", "2024-05-17T00:00:00Z", ValueError),
        ("payload_digest", bytes(31), ValueError),
        ("payload_digest", "00" * 32, ValueError),
    ],
)
def test_invalid_fields_are_rejected(field: str, value: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        dataclasses.replace(EXAMPLE, **{field: value})


def test_entries_are_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        EXAMPLE.seq = 1  # type: ignore[misc]


def _v1(body: str) -> bytes:
    return b"cb-audit-leaf-v1\n" + body.encode()


@pytest.mark.parametrize(
    ("leaf", "message"),
    [
        (b"cb-audit-leaf-v2\n" + EXAMPLE_BODY.encode(), "not a cb-audit-leaf-v1 leaf"),
        (EXAMPLE_BODY.encode(), "not a cb-audit-leaf-v1 leaf"),
        (_v1(EXAMPLE_BODY.replace(",", ", ")), "not in canonical form"),
        (_v1(EXAMPLE_BODY.replace("9227dd", "9227DD")), "not in canonical form"),
        (_v1(EXAMPLE_BODY.replace(".345678Z", ".345678+00:00Z")), "not in canonical form"),
        (_v1(EXAMPLE_BODY.replace(".345678Z", ".3456780Z")), "not in canonical form"),
        (_v1(EXAMPLE_BODY.replace(".345678Z", ".345678")), "ending in Z"),
        (_v1(EXAMPLE_BODY.replace("[42,", "[42.0,")), "invalid leaf field"),
        (_v1(EXAMPLE_BODY.replace(",null,", ",")), "JSON array of 12 values"),
        (_v1(EXAMPLE_BODY.replace('"ngo-lighthouse"', '"ngo-\\u006cighthouse"')), "canonical"),
        (_v1(EXAMPLE_BODY + "\n"), "not in canonical form"),
        (_v1("{}"), "JSON array of 12 values"),
        (_v1("["), "not JSON"),
    ],
)
def test_decode_rejects_non_canonical_leaves(leaf: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode_leaf(leaf)


def test_decode_accepts_the_canonical_example() -> None:
    assert decode_leaf(b"cb-audit-leaf-v1\n" + EXAMPLE_BODY.encode()) == EXAMPLE
