"""Event type -> payload model, and validation of parsed data against it.

Each family module exports its own ``EVENT_TYPES``; adding a family is one line in ``FAMILIES``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType, ModuleType
from typing import Any

from pydantic import BaseModel, ValidationError

from schemas import business, cases, documents, referral, returns, sar
from schemas.errors import EventRejected, RejectionCode

__all__ = ["EVENT_TYPES", "FAMILIES", "case_id_of", "validate_payload"]

FAMILIES: tuple[ModuleType, ...] = (
    referral,
    returns,
    sar,
    business,
    documents,
    cases,
)


def _merge(families: tuple[ModuleType, ...]) -> Mapping[str, type[BaseModel]]:
    merged: dict[str, type[BaseModel]] = {}
    for family in families:
        for event_type, model in family.EVENT_TYPES.items():
            if event_type in merged:
                raise RuntimeError(f"event type {event_type} registered twice")
            merged[event_type] = model
    return MappingProxyType(merged)


EVENT_TYPES: Mapping[str, type[BaseModel]] = _merge(FAMILIES)
"""Every accepted CloudEvents ``type`` and the model its data must match."""


def validate_payload(event_type: str, data: Any) -> BaseModel:
    """Validate parsed JSON data (as returned by decode_kafka_record) for an event type.

    JSON bytes are accepted too (validated straight from JSON, for tools and tests). Raises
    ``EventRejected`` with UNKNOWN_TYPE, INVALID_PAYLOAD (details free of input values) or, for
    bytes, NOT_JSON.
    """
    model = EVENT_TYPES.get(event_type)
    if model is None:
        raise EventRejected(RejectionCode.UNKNOWN_TYPE, f"unknown event type {event_type!r}")
    try:
        if isinstance(data, bytes | bytearray):
            return model.model_validate_json(data)
        return model.model_validate(data)
    except ValidationError as exc:
        if isinstance(data, bytes | bytearray) and exc.errors()[0]["type"] == "json_invalid":
            raise EventRejected(RejectionCode.NOT_JSON, "data is not valid JSON") from None
        raise EventRejected.from_validation_error(exc, title=event_type) from None


def case_id_of(payload: BaseModel) -> str:
    """The case id of a validated payload (the incident id for SAR); use it as the record key."""
    case_id = getattr(payload, "case_id", None)
    if not isinstance(case_id, str):
        raise TypeError(f"{type(payload).__name__} has no case_id")
    return case_id
