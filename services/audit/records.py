"""What the audit log says about one Kafka record: pure classification, no I/O.

Every topic CaseBridge reads or writes is audited. The outcome names what the record *is* in
the pipeline: `received` (an agency's inbound event, valid or not), `routed` (a routing
decision), `delivered` (an event on an agency's inbox), `rejected` (a dead-letter record),
`published` (a case update or case event CaseBridge emitted), `query` (an auditor's query).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import ConsumerRecord

from schemas.topics import (
    AUDIT_QUERIES,
    DEADLETTER,
    INBOUND_PREFIX,
    INBOX_PREFIX,
    REJECTIONS_PREFIX,
    ROUTING_DECISIONS,
    UPDATES_PREFIX,
)


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
    payload_json: str | None
    """The value as JSON text when it is a JSON document PostgreSQL can store as jsonb."""
    raw_value: bytes | None
    """The value exactly as received: what `payload_digest` hashes. (jsonb normalises JSON
    text, so the jsonb copy is for queries and cannot prove itself unaltered.)"""
    payload_digest: bytes


def _text(raw: bytes | None) -> str:
    return "" if raw is None else raw.decode("utf-8", "replace")


def _parse(value: bytes | None) -> tuple[str | None, Any]:
    """The value as storable JSON text (or None) and the parsed document."""
    if not value:
        return None, None
    try:
        document = orjson.loads(value)
        text = value.decode("utf-8")
    except (orjson.JSONDecodeError, UnicodeDecodeError):
        return None, None
    return (None if "\\u0000" in text else text), document


def _trusted_json(value: bytes | None) -> str | None:
    if not value:
        return None
    text = value.decode("utf-8", "replace")
    return None if "\\u0000" in text else text


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
    else:
        outcome = "published"
    value: bytes | None = record.value
    if outcome in ("delivered", "published") and agency is not None:
        # A copy CaseBridge itself wrote to an agency's topic (validated JSON, agency known
        # from the topic): no second parse on the hottest path.
        payload_json, document = _trusted_json(value), None
    else:
        payload_json, document = _parse(value)
    if agency is None and isinstance(document, dict):
        reporter = document.get("reporting_agency")
        agency = reporter[:64] if isinstance(reporter, str) else None
    return AuditRecord(
        event_id=event_id,
        event_source=source,
        event_type=event_type,
        subject=subject or (record.key.decode("utf-8", "replace") if record.key else None),
        agency=agency,
        outcome=outcome,
        reason_code=reason,
        kafka_topic=record.topic,
        kafka_partition=record.partition,
        kafka_offset=record.offset,
        attributes=attributes,
        payload_json=payload_json,
        raw_value=value,
        payload_digest=hashlib.sha256(value or b"").digest(),
    )
