"""Search-and-rescue alerts (ICAO Annex 12 / IAMSAR short-form SITREP).

A SAR incident is a case: ``case_id`` carries the incident id. Victim screening happens after
disembarkation as a separate referral, never as a precondition for it (IMO MSC.167(78)).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from pydantic import BaseModel, Field, StrictBool, StrictInt

from schemas.common import (
    AgencyId,
    CountryCode,
    EventPayload,
    Latitude,
    Longitude,
    ShortText,
    StrictModel,
    Timestamp,
)
from schemas.vocab import SarPhase, SarPriority

__all__ = ["EVENT_TYPES", "SAR_ALERT", "Position", "SarAlertReceived"]

SAR_ALERT = "org.casebridge.sar.alert.v1"

MAX_PERSONS_AT_RISK = 5000
MAX_SITREP_NUMBER = 9999


class Position(StrictModel):
    """WGS 84 position in decimal degrees."""

    lat: Latitude
    lon: Longitude


class SarAlertReceived(EventPayload):
    """A SITREP about an incident; each new SITREP repeats the current phase and priority."""

    sitrep_number: Annotated[StrictInt, Field(ge=1, le=MAX_SITREP_NUMBER)]
    """Sequence number of this SITREP within the incident (1 = first alert)."""
    phase: SarPhase
    priority: SarPriority
    observed_at: Timestamp
    """When the position and situation were last observed."""
    position: Position
    persons_at_risk: Annotated[StrictInt, Field(ge=0, le=MAX_PERSONS_AT_RISK)]
    children_reported: StrictBool | None = None
    """Children reported on board: child protection joins at disembarkation."""
    vessel_description: ShortText | None = None
    """Identity of the casualty, e.g. "white rubber boat, ~12 m" (no personal data)."""
    assistance_required: ShortText | None = None
    coordinating_rcc: AgencyId
    """The RCC coordinating; it stays so until another RCC explicitly accepts."""
    search_region_country: CountryCode
    """State responsible for the search and rescue region containing the position."""


EVENT_TYPES: Mapping[str, type[BaseModel]] = {SAR_ALERT: SarAlertReceived}
