"""Who an event is from: one rule, in one place.

An agency publishes every event to its own inbound topic (`schemas.topics.inbound_topic`),
which only its Kafka principal may write; the broker enforces that. The topic therefore names
the acting agency, and what the event says about its origin must agree with it:

- `ce_source` is `urn:casebridge:agency:<agency-id>` or, to name one of the agency's systems,
  `urn:casebridge:agency:<agency-id>:<system>` (system: letters, digits, `.`, `_`, `-`);
- the payload's `reporting_agency` is `<agency-id>`.

Anything else is rejected with `AGENCY_MISMATCH`.
"""

from __future__ import annotations

import re

from schemas.common import AGENCY_ID_PATTERN

__all__ = ["AGENCY_URN_PREFIX", "agency_of_source", "agency_source"]

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
