"""Victim-identification referrals: an agency refers a presumed victim of trafficking.

Vocabularies are HTCDS 2.0 (exploitation, status, control, recruitment) and the ILO/EC 2009
operational indicators.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from pydantic import BaseModel, Field, StrictBool

from schemas.common import (
    MAX_PURPOSE_GRANTS,
    CaseId,
    CountryCode,
    EventPayload,
    PersonRef,
    PurposeGrant,
    StrictModel,
    Timestamp,
    Token,
    UniqueTuple,
)
from schemas.vocab import (
    DecisionMakingOrg,
    IndicatorDimension,
    IndicatorStrength,
    MethodOfControl,
    RecruitmentMethod,
    TraffickingStatus,
    TypeOfExploitation,
)

__all__ = [
    "EVENT_TYPES",
    "REFERRAL_SUBMITTED",
    "IndicatorHit",
    "VictimReferralSubmitted",
]

REFERRAL_SUBMITTED = "org.casebridge.referral.submitted.v1"

MAX_INDICATORS = 64


class IndicatorHit(StrictModel):
    """One ILO/EC indicator observed at screening, with its grading."""

    dimension: IndicatorDimension
    indicator: Token
    """Indicator code, e.g. ``deception_about_wages`` (a code, not free text)."""
    strength: IndicatorStrength


class VictimReferralSubmitted(EventPayload):
    """A first referral of a presumed victim by a screening agency."""

    referred_at: Timestamp
    """When the referral was made; ages are judged on this date."""
    person: PersonRef
    type_of_exploitation: Annotated[
        UniqueTuple[TypeOfExploitation], Field(max_length=len(TypeOfExploitation))
    ] = ()
    """HTCDS vic_TypeOfExploitation; empty when not yet known."""
    country_of_exploitation: CountryCode | None = None
    location_country: CountryCode
    """Where the person is now: decides which national agencies are involved."""
    indicators: Annotated[UniqueTuple[IndicatorHit], Field(max_length=MAX_INDICATORS)] = ()
    trafficking_status: TraffickingStatus = TraffickingStatus.PossibleVictimOfTrafficking
    status_decided_by: DecisionMakingOrg | None = None
    methods_of_control: Annotated[
        UniqueTuple[MethodOfControl], Field(max_length=len(MethodOfControl))
    ] = ()
    recruitment_methods: Annotated[
        UniqueTuple[RecruitmentMethod], Field(max_length=len(RecruitmentMethod))
    ] = ()
    consent_to_share: StrictBool
    """Informed consent to share with other agencies; may later be withdrawn."""
    adult_consent: StrictBool | None = None
    """An adult's consent to enter the referral mechanism; None for children or not asked."""
    permitted_purposes: Annotated[
        tuple[PurposeGrant, ...], Field(max_length=MAX_PURPOSE_GRANTS)
    ] = ()
    """Purposes recorded at referral for immigration or enforcement agencies (each must be
    one the data-sharing policy permits for that agency's kind, or the event is rejected)."""
    business_report_id: CaseId | None = None
    """The business report whose inspection found this person (linked to it; the reporting
    agency must be on that report, as its labour inspectorate is)."""

    def involves_child(self) -> bool:
        """Under 18 on the referral date, age disputed, or age unknown (presumed a child)."""
        return self.person.is_child_on(self.referred_at.date())


EVENT_TYPES: Mapping[str, type[BaseModel]] = {REFERRAL_SUBMITTED: VictimReferralSubmitted}
