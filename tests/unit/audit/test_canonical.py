"""Canonical leaf encoding, v1 and v2: the documented examples, an independent encoder,
strictness."""

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
    LEAF_FIELDS_V2,
    LEAF_VERSION_TAG,
    AuditEntry,
    attributes_from_json,
    canonical_attributes,
    decode_leaf,
    encode_leaf,
    entry_leaf_hash,
    original_digest,
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
    assert tuple(f.name for f in dataclasses.fields(AuditEntry)) == (
        *LEAF_FIELDS_V2,
        "leaf_version",
    )
    assert LEAF_FIELDS_V2[: len(LEAF_FIELDS)] == LEAF_FIELDS


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
        (b"cb-audit-leaf-v2\n" + EXAMPLE_BODY.encode(), "JSON array of 15 values"),
        (b"cb-audit-leaf-v3\n" + EXAMPLE_BODY.encode(), "not a cb-audit-leaf-v1 or -v2 leaf"),
        (EXAMPLE_BODY.encode(), "not a cb-audit-leaf-v1 or -v2 leaf"),
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


# --- v2: agency, attributes and the original bytes are covered too ----------------------------

ATTRIBUTES = {
    "ce_type": "referral.created",
    "ce_id": "3f1c2a9e-0b7d-4c1e-9a5f-2d8e6b4c7a10",
    "ce_source": "ngo-lighthouse",
    "content-type": "application/json",
}
EXAMPLE_V2 = dataclasses.replace(
    EXAMPLE,
    agency="ngo-lighthouse",
    attributes=canonical_attributes(ATTRIBUTES),
    leaf_version=2,
)
EXAMPLE_V2_BODY = (
    EXAMPLE_BODY[:-1] + ',"ngo-lighthouse",[["ce_id","3f1c2a9e-0b7d-4c1e-9a5f-2d8e6b4c7a10"],'
    '["ce_source","ngo-lighthouse"],["ce_type","referral.created"],'
    '["content-type","application/json"]],null]'
)
EXAMPLE_V2_LEAF_HASH = "d8aff3b556a87819bb72d8e5d81f8572644720f4d722e75bb8b09ad21fb98c3a"


def test_v2_worked_example_matches_code_and_doc() -> None:
    leaf = encode_leaf(EXAMPLE_V2)
    assert leaf == b"cb-audit-leaf-v2\n" + EXAMPLE_V2_BODY.encode()
    assert len(leaf) == 440
    assert entry_leaf_hash(EXAMPLE_V2).hex() == EXAMPLE_V2_LEAF_HASH
    doc = DOC.read_text(encoding="utf-8")
    assert f"cb-audit-leaf-v2\n{EXAMPLE_V2_BODY}\n```" in doc
    assert EXAMPLE_V2_LEAF_HASH in doc
    assert "Leaf (440 bytes" in doc


def test_the_same_record_has_different_v1_and_v2_leaves() -> None:
    """The tag alone tells the versions apart: a row's `leaf_version` is covered too."""
    assert entry_leaf_hash(EXAMPLE) != entry_leaf_hash(EXAMPLE_V2)


def spec_leaf_v2(e: AuditEntry) -> bytes:
    """v2 from the written spec: v1's values, agency, sorted [name, value] pairs, digest."""
    v1 = spec_leaf(dataclasses.replace(e, agency=None, attributes=None, original_digest=None,
                                       leaf_version=1))  # fmt: skip
    assert e.attributes is not None
    pairs = sorted(e.attributes, key=lambda p: p[0].encode("utf-8"))
    extra = [
        spec_value(e.agency),
        "[" + ",".join(f"[{spec_string(n)},{spec_string(v)}]" for n, v in pairs) + "]",
        spec_value(None if e.original_digest is None else e.original_digest.hex()),
    ]
    body = v1[len(LEAF_VERSION_TAG) : -1].decode() + "," + ",".join(extra) + "]"
    return b"cb-audit-leaf-v2\n" + body.encode()


entries_v2 = st.builds(
    lambda e, agency, attributes, original: dataclasses.replace(
        e,
        agency=agency,
        attributes=canonical_attributes(attributes),
        original_digest=original,
        leaf_version=2,
    ),
    entries,
    st.none() | text,
    st.dictionaries(text, text, max_size=5),
    st.none() | st.binary(min_size=32, max_size=32),
)


@settings(max_examples=300, deadline=None)
@given(entries_v2)
def test_v2_encoding_follows_the_written_spec_and_round_trips(entry: AuditEntry) -> None:
    leaf = encode_leaf(entry)
    assert leaf == spec_leaf_v2(entry)
    body = json.loads(leaf[17:])
    assert json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode() == leaf[17:]
    assert decode_leaf(leaf) == entry


_CHANGED_V2: dict[str, Any] = {
    "agency": "other-agency",
    "attributes": canonical_attributes({**ATTRIBUTES, "ce_type": "referral.withdrawn"}),
    "original_digest": bytes(32),
}


@pytest.mark.parametrize("field", [*LEAF_FIELDS, *_CHANGED_V2])
def test_every_v2_field_is_in_the_leaf(field: str) -> None:
    value = _CHANGED_V2[field] if field in _CHANGED_V2 else _CHANGED[field]
    changed = dataclasses.replace(EXAMPLE_V2, **{field: value})
    assert entry_leaf_hash(changed) != entry_leaf_hash(EXAMPLE_V2)


@pytest.mark.parametrize(
    "attributes",
    [
        {},
        {"ce_id": "x"},
        {**ATTRIBUTES, "ce_extra": ""},
        {k: v for k, v in ATTRIBUTES.items() if k != "content-type"},
        {**ATTRIBUTES, "ce_id": "3f1c2a9e-0b7d-4c1e-9a5f-2d8e6b4c7a10\\x00"},
    ],
)
def test_any_change_to_the_attributes_changes_the_leaf(attributes: dict[str, str]) -> None:
    changed = dataclasses.replace(EXAMPLE_V2, attributes=canonical_attributes(attributes))
    assert entry_leaf_hash(changed) != entry_leaf_hash(EXAMPLE_V2)


def test_attributes_are_read_from_the_stored_object_in_one_order() -> None:
    """jsonb gives the object back in its own key order and spacing: neither matters."""
    stored = '{"ce_id": "3f1c2a9e-0b7d-4c1e-9a5f-2d8e6b4c7a10", "ce_type": "referral.created",'
    stored += ' "ce_source": "ngo-lighthouse", "content-type": "application/json"}'
    assert attributes_from_json(stored) == EXAMPLE_V2.attributes
    assert attributes_from_json(b"{}") == ()
    for bad in ("[]", '{"a": 1}', '"x"', "{"):
        with pytest.raises((TypeError, ValueError)):
            attributes_from_json(bad)


def test_original_digest_is_sha256_of_the_original_bytes() -> None:
    assert original_digest(None) is None
    assert original_digest(b"{}") == hashlib.sha256(b"{}").digest()
    with_original = dataclasses.replace(EXAMPLE_V2, original_digest=original_digest(b"{}"))
    assert f'"{hashlib.sha256(b"{}").hexdigest()}"]'.encode() in encode_leaf(with_original)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"leaf_version": 1}, ValueError),  # v1 covers no agency or attributes
        ({"leaf_version": 3}, ValueError),
        ({"attributes": None}, TypeError),
        ({"attributes": (("b", "1"), ("a", "2"))}, ValueError),  # not sorted
        ({"attributes": (("a", "1"), ("a", "2"))}, ValueError),  # a name twice
        ({"attributes": (("a", 1),)}, TypeError),
        ({"agency": 7}, TypeError),
        ({"original_digest": bytes(31)}, ValueError),
    ],
)
def test_invalid_v2_entries_are_rejected(change: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        dataclasses.replace(EXAMPLE_V2, **change)


def _v2(body: str) -> bytes:
    return b"cb-audit-leaf-v2\n" + body.encode()


@pytest.mark.parametrize(
    ("leaf", "message"),
    [
        (_v2(EXAMPLE_V2_BODY.replace('[["ce_id"', '[["ce_zz"')), "canonical|sorted"),
        (_v2(EXAMPLE_V2_BODY.replace("],null]", "],null,null]")), "JSON array of 15 values"),
        (_v2(EXAMPLE_V2_BODY.replace('["content-type","application/json"]', '["x"]')), "pairs"),
        (_v2(EXAMPLE_V2_BODY.replace("],null]", '],"ZZ"]')), "invalid leaf field"),
        (_v2(EXAMPLE_V2_BODY.replace("],null]", '],"' + "AB" * 32 + '"]')), "canonical"),
    ],
)
def test_decode_rejects_non_canonical_v2_leaves(leaf: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode_leaf(leaf)
