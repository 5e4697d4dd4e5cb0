"""Screening one inbound record: envelope and payload checks, no I/O.

A record either becomes a `Screened` event (valid, with its case id) or raises `EventRejected`
with the reason the sender will read on the dead-letter topic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiokafka import ConsumerRecord

from schemas.envelope import Envelope, decode_kafka_record, encode_binary
from schemas.registry import case_id_of, validate_payload
from schemas.topics import EVENTS_VALID
from services.runtime.kafka import Outgoing, origin_of


@dataclass(frozen=True, slots=True)
class Screened:
    envelope: Envelope
    data: Any
    case_id: str


def screen(record: ConsumerRecord[Any, Any]) -> Screened:
    """Validate `record` as a CloudEvent carrying a known, valid CaseBridge payload."""
    envelope, data = decode_kafka_record(list(record.headers or ()), record.value)
    payload = validate_payload(envelope.type, data)
    return Screened(envelope=envelope, data=data, case_id=case_id_of(payload))


def forward(record: ConsumerRecord[Any, Any], event: Screened) -> Outgoing:
    """The validated event in binary content mode, keyed by its case so a case stays in order."""
    headers, value = encode_binary(event.envelope, event.data)
    out = {name: raw.decode() for name, raw in headers}
    out["cb_origin"] = origin_of(record)
    return Outgoing(topic=EVENTS_VALID.name, key=event.case_id.encode(), value=value, headers=out)
