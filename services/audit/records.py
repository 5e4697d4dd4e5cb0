"""What the audit log says about one Kafka record: pure classification, no I/O.

Every topic CaseBridge reads or writes is audited. The outcome names what the record *is* in
the pipeline: `received` (an agency's inbound event, valid or not), `routed` (a routing
decision), `delivered` (an event on an agency's inbox), `rejected` (a dead-letter record),
`published` (a case update or case event CaseBridge emitted), `query` (an auditor's query),
`erasure_requested` (the data-protection officer's request to erase a person's data).

Each record also names the subject whose data key seals its value at rest (`data_subject`,
services/audit/sealed.py): the case the record is about, so that erasing a person's case
erases their data from the log too.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import ConsumerRecord

from schemas.topics import (
    AUDIT_QUERIES,
    DEADLETTER,
    ERASURES,
    INBOUND_PREFIX,
    INBOX_PREFIX,
    REJECTIONS_PREFIX,
    ROUTING_DECISIONS,
    UPDATES_PREFIX,
)
from services.privacy.vault import case_subject


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One row-to-be of `audit_log`, before it has a sequence number."""

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


def _text(raw: bytes | None) -> str:
    return "" if raw is None else raw.decode("utf-8", "replace")


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
        return case_subject(case_id)
    if ce_subject:
        return case_subject(ce_subject)
    if key:
        return case_subject(key.decode("utf-8", "replace"))
    return f"unattributed:{topic}"


def _rejected_subject(document: Any, key: bytes | None, topic: str) -> str:
    """A dead-letter body carries the rejected record (services/runtime/dead_letter.py), whose
    personal data is that record's case's: the rule applies to the original, not to the
    wrapper (whose `ce_subject` names the rejected event, not a case)."""
    original = document.get("original") if isinstance(document, dict) else None
    if not isinstance(original, dict):
        return data_subject(None, None, key, topic)
    ce_subject = None
    for header in original.get("headers") or ():
        if isinstance(header, list) and len(header) == 2 and header[0] == "ce_subject":
            raw = _unb64(header[1])
            ce_subject = None if raw is None else raw.decode("utf-8", "replace")
    original_key = _unb64(original.get("key_b64"))
    value = _parse(_unb64(original.get("value_b64")))
    return data_subject(value, ce_subject, original_key if original_key else key, topic)


def describe(record: ConsumerRecord[Any, Any], *, topic_prefix: str = "") -> AuditRecord:
    attributes = {
        name: _text(raw)[:1024]
        for name, raw in (record.headers or ())
        if name.startswith(("ce_", "cb_")) or name == "content-type"
    }
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
        agency = reporter[:64] if isinstance(reporter, str) else None
    key: bytes | None = record.key
    if outcome == "rejected" or topic.startswith(REJECTIONS_PREFIX):
        sealed_for = _rejected_subject(document, key, record.topic)
    else:
        sealed_for = data_subject(document, attributes.get("ce_subject"), key, record.topic)
    return AuditRecord(
        event_id=event_id,
        event_source=source,
        event_type=event_type,
        subject=subject or (key.decode("utf-8", "replace") if key else None),
        agency=agency,
        outcome=outcome,
        reason_code=reason,
        kafka_topic=record.topic,
        kafka_partition=record.partition,
        kafka_offset=record.offset,
        attributes=attributes,
        raw_value=value,
        payload_digest=hashlib.sha256(value or b"").digest(),
        data_subject=sealed_for,
    )
