"""Screening one inbound record: envelope, identity and payload checks, no I/O.

A record either becomes a `Screened` event (valid, with its case id and acting agency) or
raises `EventRejected` with the reason the sender will read on its rejections topic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiokafka import ConsumerRecord

from schemas.envelope import Envelope, decode_kafka_record, encode_binary
from schemas.errors import EventRejected, RejectionCode
from schemas.identity import AGENCY_URN_PREFIX, agency_of_source
from schemas.registry import case_id_of, validate_payload
from schemas.topics import EVENTS_VALID
from services.intake.registry import Registry
from services.runtime.kafka import Outgoing, origin_of


@dataclass(frozen=True, slots=True)
class Screened:
    envelope: Envelope
    data: Any
    case_id: str
    agency: str


def screen(record: ConsumerRecord[Any, Any], agency: str, registry: Registry) -> Screened:
    """Validate `record`, which arrived on `agency`'s inbound topic, as a CloudEvent carrying a
    known, valid CaseBridge payload that `agency` itself reports (see `schemas.identity`) and
    that names only registered agencies and permitted purposes (`registry`)."""
    envelope, data = decode_kafka_record(list(record.headers or ()), record.value)
    if agency_of_source(envelope.source) != agency:
        raise _mismatch("ce_source", f"{AGENCY_URN_PREFIX}{agency}[:<system>]", agency)
    payload = validate_payload(envelope.type, data)
    if getattr(payload, "reporting_agency", None) != agency:
        raise _mismatch("reporting_agency", agency, agency)
    registry.check(payload)
    return Screened(envelope=envelope, data=data, case_id=case_id_of(payload), agency=agency)


def _mismatch(field: str, expected: str, agency: str) -> EventRejected:
    # Names the rule and the topic's agency, never the value that was sent.
    return EventRejected(
        RejectionCode.AGENCY_MISMATCH,
        f"{field} must be {expected}: the event arrived on the inbound topic of {agency}",
        [{"loc": field, "type": "agency_mismatch", "msg": f"expected {expected}"}],
    )


def forward(record: ConsumerRecord[Any, Any], event: Screened) -> Outgoing:
    """The validated event in binary content mode, keyed by its case so a case stays in order.

    `cb_agency` carries the identity established here; only intake may write the validated
    topic, so every later stage can trust it.
    """
    headers, value = encode_binary(event.envelope, event.data)
    out = {name: raw.decode() for name, raw in headers}
    out["cb_origin"] = origin_of(record)
    out["cb_agency"] = event.agency
    return Outgoing(topic=EVENTS_VALID.name, key=event.case_id.encode(), value=value, headers=out)
