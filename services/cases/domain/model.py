"""The case aggregate: an immutable value rebuilt by folding its events (``apply``).

No personal data beyond what the opening event carried (``person``) lives here, and visibility
decides who sees it. Everything is a frozen dataclass so a transition can only make a new case.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from pydantic import TypeAdapter

from schemas.business import IndicatorObserved, Sector, SupplierTier, WorkersAffected
from schemas.cases import (
    CaseKind,
    CaseState,
    DecisionGrounds,
    HandoverMode,
    InspectionOutcome,
    ReintegrationMeasure,
    ReportAssessment,
    ReturnRiskLevel,
    SupportPlanType,
)
from schemas.common import PersonRef
from schemas.documents import DocumentType
from schemas.referral import IndicatorHit
from schemas.vocab import (
    AgencyKind,
    CaseStatus,
    DecisionMakingOrg,
    MethodOfControl,
    RecruitmentMethod,
    ReintegrationDimension,
    SarPhase,
    SarPriority,
    TraffickingStatus,
    TypeOfExploitation,
)


@dataclass(frozen=True, slots=True)
class AgencyInfo:
    """What the domain needs to know of an agency; the lead builds these from the router's
    agency list. ``fallback`` is the supervising or fallback agency told of missed deadlines."""

    agency_id: str
    kind: AgencyKind
    country: str | None = None
    fallback: str | None = None


Agencies = Mapping[str, AgencyInfo]

STATES: Mapping[CaseKind, frozenset[CaseState]] = {
    CaseKind.referral: frozenset(
        {
            CaseState.submitted,
            CaseState.acknowledged,
            CaseState.screened,
            CaseState.status_decided,
            CaseState.assistance_planned,
            CaseState.assistance_in_progress,
            CaseState.closed,
            CaseState.closed_referred,
        }
    ),
    CaseKind.returns: frozenset(
        {
            CaseState.pre_departure,
            CaseState.travel,
            CaseState.post_arrival,
            CaseState.reintegration,
            CaseState.monitoring,
            CaseState.withdrawn,
            CaseState.closed,
            CaseState.closed_referred,
        }
    ),
    CaseKind.sar: frozenset(
        {
            CaseState.alert_received,
            CaseState.coordinated,
            CaseState.rescue_under_way,
            CaseState.persons_rescued,
            CaseState.disembarked,
            CaseState.concluded,
        }
    ),
    CaseKind.business_report: frozenset(
        {
            CaseState.received,
            CaseState.acknowledged,
            CaseState.assessed,
            CaseState.inspection_scheduled,
            CaseState.inspected,
            CaseState.closed,
        }
    ),
    CaseKind.document_request: frozenset(
        {
            CaseState.requested,
            CaseState.identity_verified,
            CaseState.verification_failed,
            CaseState.issued,
            CaseState.refused,
            CaseState.collected,
        }
    ),
}
DUPLICATE_KINDS: frozenset[CaseKind] = frozenset({CaseKind.referral, CaseKind.returns})
"""Kinds whose cases sharing a person key are flagged as possible duplicates. A document
request carries the person key too (an erasure by key reaches it) but is never a duplicate of
the return or referral it serves."""
TERMINAL: frozenset[CaseState] = frozenset(
    {
        CaseState.closed,
        CaseState.closed_referred,
        CaseState.withdrawn,
        CaseState.concluded,
        CaseState.refused,
        CaseState.collected,
    }
)
VICTIM_STATUSES: frozenset[TraffickingStatus] = frozenset(
    {TraffickingStatus.PossibleVictimOfTrafficking, TraffickingStatus.ActualVictimOfTrafficking}
)


def open_states(*kinds: CaseKind) -> frozenset[CaseState]:
    """The non-terminal states of the given kinds."""
    return frozenset().union(*(STATES[k] for k in kinds)) - TERMINAL


def status_of(state: CaseState) -> CaseStatus:
    """The HTCDS ``cas_Status`` a lifecycle state maps to."""
    if state == CaseState.closed_referred:
        return CaseStatus.ClosedReferred
    if state in TERMINAL:
        return CaseStatus.Closed
    if state == CaseState.monitoring:
        return CaseStatus.FollowUp
    return CaseStatus.Active


class HandoverStatus(StrEnum):
    """Primero's handshake states (``in_progress`` is ``requested`` here)."""

    requested = "requested"
    accepted = "accepted"
    declined = "declined"
    revoked = "revoked"
    done = "done"


@dataclass(frozen=True, slots=True)
class Handover:
    to_agency: str
    from_agency: str
    mode: HandoverMode
    status: HandoverStatus
    requested_at: dt.datetime
    answered_at: dt.datetime | None = None
    decline_reason: str | None = None


@dataclass(frozen=True, slots=True)
class SharingOverride:
    for_agency: str
    recorded_by: str
    legal_basis: str
    reason: str
    recorded_at: dt.datetime


@dataclass(frozen=True, slots=True)
class PermittedPurpose:
    for_agency: str
    purpose: str
    legal_basis: str
    recorded_by: str
    recorded_at: dt.datetime


@dataclass(frozen=True, slots=True)
class ReferralFacts:
    location_country: str
    adult_consent: bool | None
    trafficking_status: TraffickingStatus
    status_decided_by: DecisionMakingOrg | None = None
    grounds: DecisionGrounds | None = None
    type_of_exploitation: tuple[TypeOfExploitation, ...] = ()
    indicators: tuple[IndicatorHit, ...] = ()
    methods_of_control: tuple[MethodOfControl, ...] = ()
    recruitment_methods: tuple[RecruitmentMethod, ...] = ()
    services_planned: tuple[SupportPlanType, ...] = ()
    services_implemented: tuple[SupportPlanType, ...] = ()


@dataclass(frozen=True, slots=True)
class MonitoringVisit:
    visited_on: dt.date
    economic: float
    social: float
    psychosocial: float


@dataclass(frozen=True, slots=True)
class ReturnFacts:
    origin_country: str
    host_country: str
    trafficking_victim: bool
    receiving_agency: str | None
    escort_required: bool
    travel_documents_ready: bool
    reintegration_needs: tuple[ReintegrationDimension, ...] = ()
    risk_level: ReturnRiskLevel | None = None
    fit_to_travel: bool | None = None
    escort_agency: str | None = None
    departed_at: dt.datetime | None = None
    arrived_at: dt.datetime | None = None
    reintegration_plan: tuple[ReintegrationMeasure, ...] = ()
    monitoring_visits: tuple[MonitoringVisit, ...] = ()
    document_requests: tuple[LinkedDocumentRequest, ...] = ()

    def open_travel_document_requests(self) -> tuple[str, ...]:
        return tuple(
            r.request_case_id
            for r in self.document_requests
            if r.open and r.document == DocumentType.travel_document
        )


@dataclass(frozen=True, slots=True)
class SarFacts:
    phase: SarPhase
    phase_since: dt.datetime
    priority: SarPriority
    sitrep_number: int
    search_region_country: str
    persons_at_risk: int
    children_reported: bool | None = None
    coordination_accepted: bool = False
    persons_rescued: int = 0
    persons_disembarked: int = 0
    places_of_safety: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class BusinessReportFacts:
    site_country: str
    sector: Sector
    supplier_tier: SupplierTier
    workers_affected: WorkersAffected
    indicators: tuple[IndicatorObserved, ...]
    assessment: ReportAssessment | None = None
    inspection_scheduled_for: dt.date | None = None
    inspected_on: dt.date | None = None
    inspection_outcome: InspectionOutcome | None = None
    presumed_victims: int = 0
    linked_referrals: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DocumentRequestFacts:
    document: DocumentType
    issuing_country: str
    location_country: str
    for_return: str | None = None
    refusal_reason: str | None = None
    """Why the last identity verification failed, or why the document was refused."""
    valid_until: dt.date | None = None


@dataclass(frozen=True, slots=True)
class LinkedDocumentRequest:
    """A document request a return depends on; ``open`` until collected or refused."""

    request_case_id: str
    document: DocumentType
    open: bool = True
    collected: bool = False


@dataclass(frozen=True, slots=True)
class Case:
    """One referral, return, SAR incident, business report or document request. ``version``
    counts the events folded into it."""

    case_id: str
    kind: CaseKind
    state: CaseState
    version: int
    owner: str
    opened_at: dt.datetime
    state_entered_at: dt.datetime
    updated_at: dt.datetime
    assigned: tuple[str, ...] = ()
    """Agencies on the case besides the owner, sorted (deterministic snapshots)."""
    child: bool = False
    consent_to_share: bool = False
    person: PersonRef | None = None
    person_key: str | None = None
    handovers: tuple[Handover, ...] = ()
    sharing_overrides: tuple[SharingOverride, ...] = ()
    permitted_purposes: tuple[PermittedPurpose, ...] = ()
    possible_duplicate_of: tuple[str, ...] = ()
    same_person_as: tuple[str, ...] = ()
    referral: ReferralFacts | None = None
    returns: ReturnFacts | None = None
    sar: SarFacts | None = None
    business_report: BusinessReportFacts | None = None
    document_request: DocumentRequestFacts | None = None
    reporter: str | None = None
    """The business that reported (business reports): told the status, never a member."""

    @property
    def status(self) -> CaseStatus:
        return status_of(self.state)

    @property
    def is_open(self) -> bool:
        return self.state not in TERMINAL

    @property
    def members(self) -> frozenset[str]:
        """The owner and the assigned agencies: who works on the case."""
        return frozenset(self.assigned) | {self.owner}

    def requested_handovers(self) -> tuple[Handover, ...]:
        return tuple(h for h in self.handovers if h.status == HandoverStatus.requested)

    def latest_handover_to(self, agency_id: str) -> Handover | None:
        return next((h for h in reversed(self.handovers) if h.to_agency == agency_id), None)

    def related(self, agency_id: str) -> bool:
        """Whether the agency has any standing on the case (else it is told nothing about it)."""
        return (
            agency_id in self.members
            or any(h.to_agency == agency_id for h in self.handovers)
            or (self.returns is not None and self.returns.receiving_agency == agency_id)
            or agency_id == self.reporter
        )

    def has_override_for(self, agency_id: str) -> bool:
        return any(o.for_agency == agency_id for o in self.sharing_overrides)

    def has_purpose_for(self, agency_id: str) -> bool:
        return any(p.for_agency == agency_id for p in self.permitted_purposes)

    def may_receive_personal_data(self, agency_id: str) -> bool:
        """Consent-to-share gate: recorded consent, or an authorised override for this agency."""
        return self.consent_to_share or self.has_override_for(agency_id)


def with_assigned(
    assigned: Iterable[str], *, owner: str, add: Iterable[str] = (), remove: Iterable[str] = ()
) -> tuple[str, ...]:
    """Assigned agencies after a change: sorted, no duplicates, never the owner."""
    return tuple(sorted((set(assigned) | set(add)) - set(remove) - {owner}))


CASE_ADAPTER: TypeAdapter[Case] = TypeAdapter(Case)
"""Serialises a case snapshot (``CASE_ADAPTER.dump_json(case)`` / ``validate_json``)."""
