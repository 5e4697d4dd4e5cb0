"""What the audit log says about one Kafka record: pure classification, no I/O.

Every topic CaseBridge reads or writes is audited. The outcome names what the record *is* in
the pipeline: `received` (an agency's inbound event, valid or not), `validated` (an event
intake admitted to the validated stream, which the router and the cases service act on),
`routed` (a routing decision), `delivered` (an event on an agency's inbox), `rejected` (a
dead-letter record), `published` (a case update or case event CaseBridge emitted), `query` (an
auditor's query), `erasure_requested` (the data-protection officer's request to erase a
person's data), `unrecordable` (a record the audit kept failing on: only its place, value and
reason are logged, and its partition moves on; `describe_unrecordable`).

Each record also names the subject whose data key seals its value at rest (`data_subject`,
services/audit/sealed.py): the case the record is about, so that erasing a person's case
erases their data from the log too.

Anything on the wire can be any bytes, and PostgreSQL text and jsonb refuse two kinds: bytes
that are not UTF-8 and NUL. A record carrying either must still be audited (else the audit
consumer would retry its batch forever), so every text taken from the wire is made storable
(`storable`): invalid bytes and NUL become `\\xHH` escapes. Where that, or a bound, changed
anything, the exact key and headers are kept too (`original`), so the record can still be
shown byte for byte.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import ConsumerRecord

from schemas.topics import (
    AUDIT_QUERIES,
    CASE_EVENTS,
    CONSOLE_ACTIVITY,
    DEADLETTER,
    ERASURES,
    EVENTS_VALID,
    INBOUND_PREFIX,
    INBOX_PREFIX,
    REJECTIONS_PREFIX,
    ROUTING_DECISIONS,
    STATISTICS_REGIONAL,
    UPDATES_PREFIX,
)
from services.privacy.vault import case_subject

MAX_ATTRIBUTE_CHARS = 1024
"""Longer header values are cut in `attributes` (the exact bytes go to `original`)."""
MAX_AGENCY_CHARS = 64

Header = tuple[str, bytes | None]

SERVICE_WRITTEN_TOPICS = (
    EVENTS_VALID.name,
    ROUTING_DECISIONS.name,
    DEADLETTER.name,
    CASE_EVENTS.name,
    AUDIT_QUERIES.name,
    CONSOLE_ACTIVITY.name,
    STATISTICS_REGIONAL.name,
)
SERVICE_WRITTEN_PREFIXES = (INBOX_PREFIX, UPDATES_PREFIX, REJECTIONS_PREFIX)
"""Audited topics that only CaseBridge's own service principals may write (the broker's ACLs,
services/access/plan.py; a unit test holds the two together). Only there can a second,
byte-identical copy be a service re-publishing after a crash rather than someone's new act.
Agencies' inbound topics and the erasure requests are not here: a repeat there is a fact."""


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One row-to-be of `audit_log`, before it has a sequence number.

    Every text field is storable in PostgreSQL (valid UTF-8, no NUL).
    """

    event_id: str
    event_source: str
    event_type: str
    subject: str | None
    agency: str | None
    outcome: str
    reason_code: str | None
    kafka_topic: str
    kafka_partition: int
    kafka_offset: int
    attributes: dict[str, str]
    raw_value: bytes | None
    """The value exactly as received: what `payload_digest` hashes. Kept in memory only: the
    log stores it sealed under `data_subject`'s key, never in plain text."""
    payload_digest: bytes
    data_subject: str
    """Whose data key seals the value: `case:<id>` of the case the record is about, or
    `unattributed:<topic>` when nothing names a case."""
    original: bytes | None = None
    """The key and the audited headers exactly as received (see `encode_original`), when the
    text above could not hold them exactly; None when it does."""
    copy_digest: bytes | None = None
    """SHA-256 of the whole record (key, value, every header but `ce_time`), on a topic only
    CaseBridge's services write: a later record with the same digest there is a re-published
    copy. None elsewhere: every record is kept."""


def storable(raw: bytes | None) -> tuple[str, bool]:
    """Text PostgreSQL can store for wire bytes, and whether it is exactly those bytes.

    Not UTF-8: each invalid byte becomes `\\xHH`; NUL becomes `\\x00`. The escape is not
    reversible on its own (a sender may write a backslash), hence the flag: the caller keeps
    the bytes when it is False.
    """
    if raw is None:
        return "", False
    try:
        text = raw.decode("utf-8")
        exact = True
    except UnicodeDecodeError:
        text = raw.decode("utf-8", "backslashreplace")
        exact = False
    if "\x00" in text:
        return text.replace("\x00", "\\x00"), False
    return text, exact


def storable_text(text: str) -> str:
    """A str from the wire (a JSON string, a header name) without NUL, which PostgreSQL
    refuses in text and jsonb. (Lone surrogates cannot occur: orjson and aiokafka refuse
    them.)"""
    return text.replace("\x00", "\\x00") if "\x00" in text else text


def encode_original(key: bytes | None, headers: Iterable[Header]) -> bytes:
    """The exact key and headers as one JSON document, in the dead-letter body's shape:
    `{"key_b64": ..., "headers": [[name, value_b64], ...]}` (null for an absent key or
    value; every occurrence of a repeated header, in order)."""
    return orjson.dumps(
        {
            "key_b64": _b64(key),
            "headers": [[name, _b64(value)] for name, value in headers],
        }
    )


def decode_original(original: bytes) -> tuple[bytes | None, list[Header]]:
    """The key and headers `encode_original` kept."""
    document = orjson.loads(original)
    key = document["key_b64"]
    return (
        None if key is None else base64.b64decode(key),
        [
            (name, None if value is None else base64.b64decode(value))
            for name, value in document["headers"]
        ],
    )


def _b64(raw: bytes | None) -> str | None:
    return None if raw is None else base64.b64encode(raw).decode("ascii")


def _parse(value: bytes | None) -> Any:
    """The value as a JSON document, or None when it is not JSON."""
    if not value:
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return None


def _unb64(text: Any) -> bytes | None:
    if not isinstance(text, str):
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def data_subject(document: Any, ce_subject: str | None, key: bytes | None, topic: str) -> str:
    """The case a value is about: the document's `case_id`, else `ce_subject`, else the key."""
    case_id = document.get("case_id") if isinstance(document, dict) else None
    if isinstance(case_id, str) and case_id:
        return case_subject(storable_text(case_id))
    if ce_subject:
        return case_subject(ce_subject)
    if key:
        return case_subject(storable(key)[0])
    return f"unattributed:{topic}"


def _rejected_subject(document: Any, key: bytes | None, topic: str) -> str:
    """A dead-letter body carries the rejected record (services/runtime/dead_letter.py), whose
    personal data is that record's case's: the rule applies to the original, not to the
    wrapper (whose `ce_subject` names the rejected event, not a case)."""
    original = document.get("original") if isinstance(document, dict) else None
    if not isinstance(original, dict):
        return data_subject(None, None, key, topic)
    ce_subject = None
    headers = original.get("headers")
    for header in headers if isinstance(headers, list) else ():
        if isinstance(header, list) and len(header) == 2 and header[0] == "ce_subject":
            raw = _unb64(header[1])
            ce_subject = None if raw is None else storable(raw)[0]
    original_key = _unb64(original.get("key_b64"))
    value = _parse(_unb64(original.get("value_b64")))
    return data_subject(value, ce_subject, original_key if original_key else key, topic)


_AUDITED_PREFIXES = ("ce_", "cb_")
_NULL = b"\xff\xff\xff\xff"
"""A field's length is at most a Kafka record's size, so this length marks an absent field."""


def _is_audited(name: str) -> bool:
    return name.startswith(_AUDITED_PREFIXES) or name == "content-type"


def _attributes(headers: Iterable[Header]) -> tuple[dict[str, str], bool]:
    """The CloudEvents and CaseBridge headers as storable text (last value wins, as every
    consumer reads them), and whether that text is exactly what was received.

    The audit consumer is the hottest consumer: the usual header (UTF-8, no NUL, short, not
    repeated) takes one decode and two checks.
    """
    attributes: dict[str, str] = {}
    exact = True
    for name, raw in headers:
        if not (name.startswith(_AUDITED_PREFIXES) or name == "content-type"):
            continue  # (`_is_audited`, inlined: this loop runs for every header audited)
        if raw is not None and name not in attributes and "\x00" not in name:
            try:
                text = raw.decode()
            except UnicodeDecodeError:
                pass
            else:
                if "\x00" not in text and len(text) <= MAX_ATTRIBUTE_CHARS:
                    attributes[name] = text
                    continue
        # Not as received (NUL, not UTF-8, too long, null, repeated): only `original` shows it.
        exact = False
        attributes[storable_text(name)] = storable(raw)[0][:MAX_ATTRIBUTE_CHARS]
    return attributes, exact


def _copy_digest(
    topic: str, key: bytes | None, payload_digest: bytes, value_present: bool, headers: Any
) -> bytes | None:
    """What makes two records on a topic only CaseBridge's services write the same record;
    None on any other topic.

    Every byte of the key, the value and every header but `ce_time`: a service re-publishing
    after a crash sends the same record, except that the router stamps its decision's
    `ce_time` when it makes it. So a copy can differ from the record the log holds in that
    time alone. Fields are length-prefixed, so no two different records share an encoding;
    the value enters as its SHA-256 (already computed), as collision-resistant as the bytes.
    """
    if topic not in SERVICE_WRITTEN_TOPICS and not topic.startswith(SERVICE_WRITTEN_PREFIXES):
        return None
    encoded = bytearray()
    for field in (key, payload_digest if value_present else None):
        encoded += _NULL if field is None else len(field).to_bytes(4, "big") + field
    for name, value in headers or ():
        if name != "ce_time":
            raw_name = name.encode()
            encoded += len(raw_name).to_bytes(4, "big") + raw_name
            encoded += _NULL if value is None else len(value).to_bytes(4, "big") + value
    return hashlib.sha256(encoded).digest()


def describe(record: ConsumerRecord[Any, Any], *, topic_prefix: str = "") -> AuditRecord:
    """The audit row for one consumed record, classified by its topic (without the
    deployment's `topic_prefix`); never fails on what the record holds."""
    all_headers: list[Header] = record.headers or []
    attributes, exact = _attributes(all_headers)
    key: bytes | None = record.key
    key_text: str | None = None
    if key is not None:
        key_text, same = storable(key)
        exact = exact and same
    topic: str = record.topic.removeprefix(topic_prefix)
    agency: str | None = None
    reason: str | None = None
    event_id = attributes.get("ce_id", "")
    source = attributes.get("ce_source", "")
    event_type = attributes.get("ce_type", "")
    subject = attributes.get("ce_subject")
    if topic == DEADLETTER.name:
        outcome = "rejected"
        reason = attributes.get("cb_error_code") or None
        agency = attributes.get("cb_agency") or None
        event_id = attributes.get("cb_original_id", "") or event_id
        source = attributes.get("cb_original_source", "") or source
        event_type = attributes.get("cb_original_type", "") or event_type
        subject = None
    elif topic == EVENTS_VALID.name:
        # Only intake writes here, and `cb_agency` is the agency whose topic carried it.
        outcome, agency = "validated", attributes.get("cb_agency") or None
    elif topic == ROUTING_DECISIONS.name:
        outcome = "routed"
    elif topic.startswith(INBOX_PREFIX):
        outcome, agency = "delivered", topic.removeprefix(INBOX_PREFIX)
    elif topic == AUDIT_QUERIES.name:
        outcome = "query"
    elif topic.startswith(UPDATES_PREFIX):
        outcome, agency = "published", topic.removeprefix(UPDATES_PREFIX)
    elif topic.startswith(REJECTIONS_PREFIX):
        # The agency's copy of a rejection (the full stream's copy is the `rejected` row).
        outcome, agency = "published", topic.removeprefix(REJECTIONS_PREFIX)
    elif topic.startswith(INBOUND_PREFIX):
        # Who sent it is the topic's agency: the broker lets no one else write there.
        outcome, agency = "received", topic.removeprefix(INBOUND_PREFIX)
    elif topic == ERASURES.name:
        outcome = "erasure_requested"
    else:
        outcome = "published"
    value: bytes | None = record.value
    document = _parse(value)
    if agency is None and isinstance(document, dict):
        reporter = document.get("reporting_agency")
        agency = storable_text(reporter[:MAX_AGENCY_CHARS]) if isinstance(reporter, str) else None
    stored_topic = storable_text(record.topic)  # Kafka allows [a-zA-Z0-9._-] only: a guard
    if outcome == "rejected" or topic.startswith(REJECTIONS_PREFIX):
        sealed_for = _rejected_subject(document, key, stored_topic)
    else:
        sealed_for = data_subject(document, attributes.get("ce_subject"), key, stored_topic)
    digest = hashlib.sha256(value or b"").digest()
    return AuditRecord(
        event_id=event_id,
        event_source=source,
        event_type=event_type,
        subject=subject or key_text or None,
        agency=agency,
        outcome=outcome,
        reason_code=reason,
        kafka_topic=stored_topic,
        kafka_partition=record.partition,
        kafka_offset=record.offset,
        attributes=attributes,
        raw_value=value,
        payload_digest=digest,
        data_subject=sealed_for,
        original=None
        if exact
        else encode_original(key, [h for h in all_headers if _is_audited(h[0])]),
        copy_digest=_copy_digest(topic, key, digest, value is not None, all_headers),
    )


UNRECORDABLE = "unrecordable"
"""The outcome of a record the audit could not describe or store after retries."""


def describe_unrecordable(record: ConsumerRecord[Any, Any], reason_code: str) -> AuditRecord:
    """The least the log can say about a record `describe` or the store keeps failing on:
    where it was, its value (sealed, as every value is) and the reason, read from nothing but
    the record's coordinates, so that it cannot fail too. The partition then moves on, and an
    auditor finds the record by this outcome and its offset."""
    value: bytes | None = record.value if isinstance(record.value, bytes) else None
    topic = storable_text(record.topic)
    return AuditRecord(
        event_id="",
        event_source="",
        event_type="",
        subject=None,
        agency=None,
        outcome=UNRECORDABLE,
        reason_code=reason_code,
        kafka_topic=topic,
        kafka_partition=record.partition,
        kafka_offset=record.offset,
        attributes={},
        raw_value=value,
        payload_digest=hashlib.sha256(value or b"").digest(),
        data_subject=f"unattributed:{topic}",
    )
