"""Who an event is from: one rule, in one place.

An agency publishes every event to its own inbound topic (`schemas.topics.inbound_topic`),
which only its Kafka principal may write; the broker enforces that. The topic therefore names
the acting agency, and what the event says about its origin must agree with it:

- `ce_source` is `urn:casebridge:agency:<agency-id>` or, to name one of the agency's systems,
  `urn:casebridge:agency:<agency-id>:<system>` (system: letters, digits, `.`, `_`, `-`);
- the payload's `reporting_agency` is `<agency-id>`.

Anything else is rejected with `AGENCY_MISMATCH`. Every other agency a payload names (a
coordinating RCC, a handover's receiver, ...) must be in the registry: `named_agencies` lists
them for that check.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from typing import get_args, get_type_hints

from pydantic import BaseModel

from schemas.common import AGENCY_ID_PATTERN, AgencyId

__all__ = ["AGENCY_URN_PREFIX", "agency_of_source", "agency_source", "named_agencies"]

AGENCY_URN_PREFIX = "urn:casebridge:agency:"
_SYSTEM = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
_SOURCE = re.compile(
    re.escape(AGENCY_URN_PREFIX) + rf"({AGENCY_ID_PATTERN.strip('^$')})(?::{_SYSTEM})?"
)


def agency_source(agency_id: str, system: str | None = None) -> str:
    """The `ce_source` of an event published by `agency_id` (optionally from one `system`)."""
    source = AGENCY_URN_PREFIX + agency_id + (f":{system}" if system else "")
    if agency_of_source(source) != agency_id:
        raise ValueError(f"not a valid agency source: {source!r}")
    return source


def agency_of_source(source: str) -> str | None:
    """The agency id a `ce_source` names, or None if it is not of the documented form."""
    match = _SOURCE.fullmatch(source)
    return match.group(1) if match else None


def named_agencies(payload: BaseModel, *, prefix: str = "") -> Iterator[tuple[str, str]]:
    """Every (field path, agency id) a payload names, nested models and arrays included: what
    a registry must know before the event is acted on."""
    cls = type(payload)
    agency_fields, nested_fields = _agency_and_nested_fields(cls)
    for name in agency_fields:
        for i, value in _items(getattr(payload, name)):
            if isinstance(value, str):
                yield f"{prefix}{name}{i}", value
    for name in nested_fields:
        for i, value in _items(getattr(payload, name)):
            if isinstance(value, BaseModel):
                yield from named_agencies(value, prefix=f"{prefix}{name}{i}.")


def _items(value: object) -> list[tuple[str, object]]:
    if isinstance(value, tuple | list):
        return [(f"[{i}]", v) for i, v in enumerate(value)]
    return [("", value)]


@cache
def _agency_and_nested_fields(cls: type[BaseModel]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    hints = get_type_hints(cls, include_extras=True)
    agency = tuple(n for n in cls.model_fields if _mentions(hints[n], AgencyId))
    nested = tuple(n for n in cls.model_fields if _mentions_model(hints[n]))
    return agency, nested


def _mentions(annotation: object, target: object) -> bool:
    return annotation == target or any(_mentions(a, target) for a in get_args(annotation))


def _mentions_model(annotation: object) -> bool:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return any(_mentions_model(a) for a in get_args(annotation))
