"""Strict, shared building blocks for every CaseBridge payload.

Strictness is the point: payloads arrive from many agencies' systems, so anything not in the
contract (extra fields, numbers sent as strings, epoch integers for dates, NaN) is rejected
rather than guessed at.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
)
from pydantic_core import PydanticCustomError

from schemas.vocab import Gender

__all__ = [
    "AGENCY_ID_PATTERN",
    "CASE_ID_PATTERN",
    "MAX_PURPOSE_GRANTS",
    "AgencyId",
    "CaseId",
    "CountryCode",
    "EventPayload",
    "IsoDate",
    "Latitude",
    "Longitude",
    "Name",
    "PersonRef",
    "PurposeGrant",
    "ShortText",
    "StrictModel",
    "Timestamp",
    "Token",
    "TrueOnly",
    "UniqueTuple",
    "age_on",
    "unique_items",
]

CASE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
AGENCY_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"
# No control characters (log injection, terminal escapes) in free text.
_NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"

T = TypeVar("T")


class StrictModel(BaseModel):
    """Base for all wire models: closed (extra fields rejected), immutable, bounded strings.

    ``hide_input_in_errors`` keeps input values out of ``str(ValidationError)`` in case one is
    ever logged; ``allow_inf_nan=False`` because JSON has neither.
    """

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        str_max_length=1024,
        allow_inf_nan=False,
        hide_input_in_errors=True,
        use_attribute_docstrings=True,
    )


# --- JSON-faithful scalar types ---------------------------------------------------------------
# Payloads are validated from already-parsed JSON (Python mode), where pydantic's lax mode would
# accept "12.5" for a number, 1577836800 for a date or 1 for true. These validators restore what
# the JSON Schema promises, while still accepting real date/datetime objects from Python callers.


def _iso_date_only(value: Any) -> Any:
    if isinstance(value, str) and len(value) == 10:
        return value
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    raise PydanticCustomError("date_type", "Input should be a date string YYYY-MM-DD")


def _datetime_text(value: Any) -> Any:
    if isinstance(value, str | dt.datetime):
        return value
    raise PydanticCustomError("datetime_type", "Input should be an RFC 3339 date-time string")


def _number_only(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    raise PydanticCustomError("float_type", "Input should be a JSON number")


def _true_only(value: Any) -> Any:
    if value is True:
        return value
    raise PydanticCustomError("literal_error", "Input should be true")


def unique_items(items: tuple[T, ...]) -> tuple[T, ...]:
    """Reject repeated entries: a repeated category is a publisher bug, not a stronger signal."""
    if len(set(items)) != len(items):
        raise PydanticCustomError("unique_items", "Items should be unique")
    return items


UniqueTuple = Annotated[
    tuple[T, ...], AfterValidator(unique_items), Field(json_schema_extra={"uniqueItems": True})
]
"""A JSON array without repeated items (bound its length with ``Field(max_length=...)``)."""
IsoDate = Annotated[dt.date, BeforeValidator(_iso_date_only)]
"""A calendar date as ``YYYY-MM-DD``."""
Timestamp = Annotated[AwareDatetime, BeforeValidator(_datetime_text)]
"""An RFC 3339 date-time with offset (naive times are ambiguous across borders)."""
TrueOnly = Annotated[Literal[True], BeforeValidator(_true_only)]
"""JSON ``true`` and nothing else: for preconditions that must be affirmed explicitly."""
Latitude = Annotated[float, BeforeValidator(_number_only), Field(ge=-90, le=90)]
Longitude = Annotated[float, BeforeValidator(_number_only), Field(ge=-180, le=180)]

CaseId = Annotated[str, StringConstraints(max_length=64, pattern=CASE_ID_PATTERN)]
"""Case (or SAR incident) identifier; also the Kafka record key."""
AgencyId = Annotated[str, StringConstraints(max_length=64, pattern=AGENCY_ID_PATTERN)]
"""Agency identifier. Lower case, digits and '-' only, because it becomes part of Kafka topic
names (``casebridge.inbox.<agency_id>``), where '.' and '_' collide in metric names."""
CountryCode = Annotated[str, StringConstraints(min_length=2, max_length=2, pattern=r"^[A-Z]{2}$")]
"""ISO 3166-1 alpha-2 shape (as HTCDS asks); the code list itself is not checked here."""
Token = Annotated[str, StringConstraints(max_length=64, pattern=r"^[a-z0-9][a-z0-9_]{0,63}$")]
"""A short machine code, e.g. an indicator code. Codes, unlike free text, cannot carry names."""
Name = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=_NO_CONTROL)]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=_NO_CONTROL)]
"""A short free-text field; keep personal data out of it."""


# --- People ----------------------------------------------------------------------------------

_EARLIEST_BIRTH = dt.date(1900, 1, 1)


def age_on(born: dt.date, on: dt.date) -> int:
    """Completed years of age on a given date."""
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def _plausible_birth_date(value: dt.date | None) -> dt.date | None:
    if value is not None and not (_EARLIEST_BIRTH <= value <= dt.datetime.now(dt.UTC).date()):
        raise PydanticCustomError(
            "date_out_of_range", "Date of birth should be between 1900-01-01 and today"
        )
    return value


class PersonRef(StrictModel):
    """The person a referral or return is about. Every field here is personal data.

    Names are optional: an adult who does not consent may be notified anonymously. With no date
    of birth and no age estimate the age is unknown, and CaseBridge treats the person as a child
    until assessed (see ``is_child_on``).
    """

    given_name: Name | None = None
    family_name: Name | None = None
    date_of_birth: Annotated[IsoDate | None, AfterValidator(_plausible_birth_date)] = None
    age_estimate: Annotated[StrictInt, Field(ge=0, le=120)] | None = None
    """Assessed or self-declared age in years, when the date of birth is unknown or doubted."""
    age_disputed: StrictBool = False
    """True while the age is contested: the person is then treated as a child."""
    gender: Gender = Gender.NonSpecifiedUnknown
    nationality: CountryCode | None = None
    """None when unknown or stateless."""

    model_config = ConfigDict(json_schema_extra={"x-casebridge-personal": True})

    def is_child_on(self, on: dt.date) -> bool:
        """Best-interests rule: a child if any evidence says under 18, or the age is unknown."""
        if self.age_disputed:
            return True
        if self.date_of_birth is not None and age_on(self.date_of_birth, on) < 18:
            return True
        if self.age_estimate is not None and self.age_estimate < 18:
            return True
        return self.date_of_birth is None and self.age_estimate is None


MAX_PURPOSE_GRANTS = 16


class PurposeGrant(StrictModel):
    """A purpose for which an immigration or enforcement agency may see what the non-punishment
    principle otherwise withholds, recorded with the event that opens a case."""

    for_agency: AgencyId
    purpose: Token
    """A purpose the data-sharing policy permits for that agency's kind."""
    legal_basis: ShortText


class EventPayload(StrictModel):
    """Fields every inbound event carries: the case it belongs to and who reported it."""

    case_id: CaseId
    """Case identifier; publishers must also use it as the Kafka record key."""
    reporting_agency: AgencyId
    """The publishing agency's id."""
