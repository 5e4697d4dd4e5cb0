"""Why an inbound event was rejected, in a form safe to log and to put on the dead-letter topic.

Rejections travel to operators and back to the publishing agency, so they must never carry
personal data: messages are built from the error *type* and schema constraints only, never from
the offending input value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import ValidationError
    from pydantic_core import ErrorDetails

__all__ = ["MAX_DETAILS", "EventRejected", "RejectionCode", "validation_details"]

MAX_DETAILS = 20
"""At most this many validation errors are reported, to keep dead-letter records bounded."""


class RejectionCode(StrEnum):
    """Stable reason codes; integrators and dashboards switch on these, so never rename one."""

    NOT_JSON = "NOT_JSON"
    """Value is null, not UTF-8, not valid JSON, or carries no data."""
    MISSING_ATTRIBUTE = "MISSING_ATTRIBUTE"
    """A required CloudEvents attribute (id, source, specversion, type) is absent."""
    INVALID_ATTRIBUTE = "INVALID_ATTRIBUTE"
    """A CloudEvents attribute is malformed, too long, duplicated or of the wrong type."""
    UNSUPPORTED_SPECVERSION = "UNSUPPORTED_SPECVERSION"
    """specversion is not "1.0"."""
    UNSUPPORTED_CONTENT_TYPE = "UNSUPPORTED_CONTENT_TYPE"
    """Data is not JSON (or is base64/batch-encoded)."""
    UNKNOWN_TYPE = "UNKNOWN_TYPE"
    """The CloudEvents type is not a registered event type."""
    TOO_LARGE = "TOO_LARGE"
    """The record value exceeds the maximum size."""
    INVALID_PAYLOAD = "INVALID_PAYLOAD"
    """The data does not match the event type's schema; see details."""
    AGENCY_MISMATCH = "AGENCY_MISMATCH"
    """`ce_source` or `reporting_agency` does not name the agency whose topic carried the event."""
    UNKNOWN_AGENCY = "UNKNOWN_AGENCY"
    """The payload names an agency that is not in CaseBridge's registry (see details.loc)."""
    PURPOSE_NOT_PERMITTED = "PURPOSE_NOT_PERMITTED"
    """A permitted purpose the data-sharing policy does not allow for that agency's kind, or
    recorded by an immigration or enforcement agency."""
    DUPLICATE_EVENT = "DUPLICATE_EVENT"
    """The (source, id) pair was already processed."""
    PROCESSING_FAILED = "PROCESSING_FAILED"
    """Valid event, but processing failed after bounded retries."""
    SENDER_NOT_PERMITTED = "SENDER_NOT_PERMITTED"
    """The sending agency's kind may not publish this event type: only a business reports
    forced-labour indicators, and a business publishes nothing else."""
    NO_MATCHING_CASE = "NO_MATCHING_CASE"
    """A valid erasure request that names no referral or return case CaseBridge holds."""


class EventRejected(Exception):  # noqa: N818 - name is part of the public contract
    """An inbound event cannot be accepted; ``code`` says why, ``details`` says where.

    ``message`` and ``details`` are safe to log and to return to the publisher.
    """

    code: RejectionCode
    message: str
    details: list[dict[str, str]]

    def __init__(
        self,
        code: RejectionCode,
        message: str,
        details: Iterable[Mapping[str, str]] = (),
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = [dict(d) for d in details]

    def __reduce__(self) -> tuple[Any, ...]:
        # Exception pickling replays self.args, which is the formatted string; keep the fields.
        return (type(self), (self.code, self.message, self.details))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``{"code": ..., "message": ..., "details": [...]}``."""
        return {
            "code": self.code.value,
            "message": self.message,
            "details": [dict(d) for d in self.details],
        }

    @classmethod
    def from_validation_error(cls, exc: ValidationError, *, title: str) -> EventRejected:
        """INVALID_PAYLOAD from a pydantic error, with input values stripped."""
        count = exc.error_count()
        message = f"{count} validation error{'s' if count != 1 else ''} for {title}"
        if count > MAX_DETAILS:
            message += f" (first {MAX_DETAILS} shown)"
        return cls(RejectionCode.INVALID_PAYLOAD, message, validation_details(exc))


# Context keys whose values come from the schema (limits, patterns, allowed values), not the input.
_SAFE_CTX_KEYS = frozenset(
    {
        "max_length",
        "min_length",
        "actual_length",
        "field_type",
        "pattern",
        "expected",
        "ge",
        "gt",
        "le",
        "lt",
        "multiple_of",
        "max_digits",
        "decimal_places",
        "whole_digits",
        "class_name",
        "discriminator",
        "expected_tags",
        "tz_expected",
        "expected_schemes",
        "expected_version",
        "encoding",
    }
)
# For these types ctx["error"] is a fixed parser message ("invalid character in year"), not input.
_PARSER_ERROR_TYPES = frozenset(
    {
        "date_parsing",
        "date_from_datetime_parsing",
        "datetime_parsing",
        "datetime_from_date_parsing",
        "time_parsing",
        "time_delta_parsing",
        "json_invalid",
        "uuid_parsing",
        "url_parsing",
    }
)
# A loc segment that is not identifier-like may be an input-controlled key: do not echo it.
_SAFE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def _safe_msg(error: ErrorDetails) -> str:
    error_type = error["type"]
    ctx = error.get("ctx")
    if ctx:
        for key in ctx:
            if key in _SAFE_CTX_KEYS or (key == "error" and error_type in _PARSER_ERROR_TYPES):
                continue
            return f"invalid value ({error_type})"
    return error["msg"]


def _safe_loc(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(str(item))
        elif _SAFE_KEY.fullmatch(item):
            parts.append(item)
        else:
            parts.append("<key>")
    return ".".join(parts)


def validation_details(exc: ValidationError) -> list[dict[str, str]]:
    """Pydantic errors as ``{"loc", "type", "msg"}`` dicts that never contain input values.

    Custom validators must raise ``PydanticCustomError`` with a fixed message (no input in the
    text or context); anything with unknown context falls back to a generic message.
    """
    errors = exc.errors(include_url=False, include_input=False, include_context=True)
    return [
        {"loc": _safe_loc(e["loc"]), "type": e["type"], "msg": _safe_msg(e)}
        for e in errors[:MAX_DETAILS]
    ]
