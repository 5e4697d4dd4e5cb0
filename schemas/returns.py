"""Assisted voluntary return and reintegration (AVRR, IOM-style) requests."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Self

from pydantic import BaseModel, Field, StrictBool, model_validator
from pydantic_core import PydanticCustomError

from schemas.common import (
    MAX_PURPOSE_GRANTS,
    AgencyId,
    CountryCode,
    EventPayload,
    PersonRef,
    PurposeGrant,
    Timestamp,
    TrueOnly,
    UniqueTuple,
)
from schemas.vocab import ReintegrationDimension

__all__ = ["EVENT_TYPES", "RETURN_REQUESTED", "ReturnRequested"]

RETURN_REQUESTED = "org.casebridge.return.requested.v1"


class ReturnRequested(EventPayload):
    """A person asks to return to their country of origin; opens the pre-departure stage."""

    requested_at: Timestamp
    person: PersonRef
    origin_country: CountryCode
    """Country of return (origin)."""
    host_country: CountryCode
    """Country the person returns from."""
    voluntariness_confirmed: TrueOnly
    """Must be true: a return without confirmed voluntariness is not an AVRR case. Withdrawal
    before departure is a later case action."""
    trafficking_victim: StrictBool
    """A trafficking victim needs a return risk assessment before departure."""
    receiving_agency: AgencyId | None = None
    """Agency in the origin country expected to receive the person on arrival, if known."""
    escort_required: StrictBool = False
    travel_document_held: StrictBool = False
    reintegration_needs: Annotated[
        UniqueTuple[ReintegrationDimension], Field(max_length=len(ReintegrationDimension))
    ] = ()
    consent_to_share: StrictBool
    permitted_purposes: Annotated[
        tuple[PurposeGrant, ...], Field(max_length=MAX_PURPOSE_GRANTS)
    ] = ()
    """Purposes recorded at referral for immigration or enforcement agencies (each must be
    one the data-sharing policy permits for that agency's kind, or the event is rejected)."""

    @model_validator(mode="after")
    def _distinct_countries(self) -> Self:
        if self.origin_country == self.host_country:
            raise PydanticCustomError(
                "same_country", "origin_country and host_country should differ"
            )
        return self

    def involves_child(self) -> bool:
        """Under 18 on the request date, age disputed, or age unknown (presumed a child)."""
        return self.person.is_child_on(self.requested_at.date())


EVENT_TYPES: Mapping[str, type[BaseModel]] = {RETURN_REQUESTED: ReturnRequested}
