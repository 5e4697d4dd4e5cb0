"""What routing looks at in a validated event: consequences of the payload, not the payload."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiokafka import ConsumerRecord
from pydantic import BaseModel

from schemas.business import ForcedLabourReported
from schemas.cases import ACTION_TYPE_PREFIX
from schemas.documents import DocumentRequested
from schemas.envelope import decode_kafka_record
from schemas.errors import EventRejected, RejectionCode
from schemas.referral import VictimReferralSubmitted
from schemas.registry import case_id_of, validate_payload
from schemas.returns import ReturnRequested
from schemas.sar import SarAlertReceived
from services.routing.policy import Facts
from services.runtime.kafka import header_map

_ACTION_PREFIX = ACTION_TYPE_PREFIX.encode()


def is_case_action(record: ConsumerRecord[Any, Any]) -> bool:
    """An action on an existing case (accept, decline, ...): routed by the case, not policy."""
    return header_map(record).get("ce_type", b"").startswith(_ACTION_PREFIX)


@dataclass(frozen=True, slots=True)
class Opening:
    """A validated event as routing sees it: its facts, its payload (model and JSON)."""

    event_type: str
    case_id: str
    facts: Facts
    payload: BaseModel
    data: dict[str, Any]


def opening_of(record: ConsumerRecord[Any, Any]) -> Opening:
    """The routing facts, case id and payload of a validated event; raises `EventRejected`
    for one that does not decode (the envelope is checked again, so every header the router
    reads is there, once, as text).

    The payload is validated again with the same models intake used, so that "child" means
    exactly one thing everywhere (`involves_child`), not a second reading of raw JSON.
    """
    envelope, data = decode_kafka_record(record.headers or (), record.value)
    event_type = envelope.type
    payload = validate_payload(event_type, data)
    if not isinstance(data, dict):
        raise EventRejected(RejectionCode.INVALID_PAYLOAD, "event data is not a JSON object")
    return Opening(event_type, case_id_of(payload), facts_from(event_type, payload), payload, data)


def facts_from(event_type: str, payload: BaseModel) -> Facts:
    """The routing facts of an already validated payload (the cases service has one)."""
    reporter = str(getattr(payload, "reporting_agency", ""))
    facts = Facts(event_type=event_type, reporting_agency=reporter)
    if isinstance(payload, VictimReferralSubmitted):
        facts = Facts(
            event_type=event_type,
            reporting_agency=reporter,
            child=payload.involves_child(),
            exploitation=frozenset(str(t) for t in payload.type_of_exploitation),
            country=payload.location_country,
            on=payload.referred_at.date(),
        )
    elif isinstance(payload, ReturnRequested):
        facts = Facts(
            event_type=event_type,
            reporting_agency=reporter,
            country=payload.host_country,
            origin_country=payload.origin_country,
            on=payload.requested_at.date(),
        )
    elif isinstance(payload, ForcedLabourReported):
        facts = Facts(
            event_type=event_type,
            reporting_agency=reporter,
            country=payload.site.country,
            on=payload.reported_at.date(),
        )
    elif isinstance(payload, DocumentRequested):
        facts = Facts(
            event_type=event_type,
            reporting_agency=reporter,
            child=payload.involves_child(),
            country=payload.location_country,
            origin_country=payload.issuing_country,
            on=payload.requested_at.date(),
        )
    elif isinstance(payload, SarAlertReceived):
        facts = Facts(
            event_type=event_type,
            reporting_agency=reporter,
            sar_phase=str(payload.phase),
            country=payload.search_region_country,
            coordinating_rcc=payload.coordinating_rcc,
            on=payload.observed_at.date(),
        )
    return facts
