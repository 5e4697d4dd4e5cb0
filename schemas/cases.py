"""Case coordination on the wire: the actions agencies send and the events CaseBridge emits.

Actions (inbound, on the acting agency's own ``casebridge.in.<agency>``) report what an agency
did or wants on a case: ``org.casebridge.case.<action>.v1``. Each carries
``expected_version`` so two caseworkers cannot silently overwrite each other. CaseBridge
answers every action with either a ``TransitionRecorded`` or a ``TransitionRejected`` (reason
code + message, never personal data).

Emitted events (``org.casebridge.cases.<name>.v1``, the family naming the emitting service) are
not registered as inbound types, so no agency can publish one.

Each action has an ``action`` tag (defaulted, so senders may omit it) that makes a recorded
transition self-describing when the case is rebuilt from the log.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    model_validator,
)
from pydantic_core import PydanticCustomError

from schemas.business import (
    ForcedLabourIndicator,
    ForcedLabourReported,
    Sector,
    SupplierTier,
    WorkersAffected,
)
from schemas.common import (
    AgencyId,
    CaseId,
    CountryCode,
    EventPayload,
    IsoDate,
    PersonRef,
    ShortText,
    StrictModel,
    Timestamp,
    Token,
    unique_items,
)
from schemas.documents import DocumentRequested, DocumentType
from schemas.priorities import MinisterialPriority
from schemas.privacy import RequestId
from schemas.referral import IndicatorHit, VictimReferralSubmitted
from schemas.returns import ReturnRequested
from schemas.sar import SarAlertReceived
from schemas.vocab import (
    CaseStatus,
    DecisionMakingOrg,
    MethodOfControl,
    RecruitmentMethod,
    ReintegrationDimension,
    SarPhase,
    TraffickingStatus,
    TypeOfExploitation,
)

__all__ = [
    "ACTION_TYPE_PREFIX",
    "EMITTED_EVENT_TYPES",
    "EVENT_TYPES",
    "INTERNAL_ACTIONS",
    "SYSTEM_AGENCY",
    "AgeAssessed",
    "AssistanceImplemented",
    "AssistancePlanned",
    "CaseAction",
    "CaseActionUnion",
    "CaseClosed",
    "CaseKind",
    "CaseOpened",
    "CaseState",
    "CaseUpdate",
    "ConsentRecorded",
    "DecisionGrounds",
    "DocumentCollected",
    "DocumentIssued",
    "DocumentRefused",
    "DocumentRequestLinked",
    "DocumentRequestSettled",
    "DuplicateLinkRemoved",
    "DuplicateReviewed",
    "EscalationRaised",
    "FitnessToTravelAssessed",
    "FlagPossibleDuplicate",
    "HandoverAccepted",
    "HandoverCompleted",
    "HandoverDeclined",
    "HandoverMode",
    "HandoverRequested",
    "HandoverRevoked",
    "IdentityVerificationFailed",
    "IdentityVerified",
    "InspectionOutcome",
    "InspectionRecorded",
    "InspectionScheduled",
    "MonitoringVisitRecorded",
    "PermittedPurposeRecorded",
    "PersonalDataErased",
    "PossibleDuplicateFlagged",
    "ReferralAcknowledged",
    "ReferralLinked",
    "ReintegrationMeasure",
    "ReintegrationPlanned",
    "RejectionReason",
    "ReportAcknowledged",
    "ReportAssessed",
    "ReportAssessment",
    "ReturnArrived",
    "ReturnDeparted",
    "ReturnRiskAssessed",
    "ReturnRiskLevel",
    "ReturnWithdrawn",
    "SarConcluded",
    "SarCoordinationAccepted",
    "SarDisembarked",
    "SarPersonsRescued",
    "SarPhaseDeclared",
    "SarRescueStarted",
    "ScreeningRecorded",
    "ScreeningReferralOpened",
    "SharingOverrideRecorded",
    "SitrepReceived",
    "SupportPlanType",
    "TraffickingStatusDecided",
    "TransitionRecorded",
    "TransitionRejected",
    "TravelDocumentsIssued",
    "action_type",
]

ACTION_TYPE_PREFIX = "org.casebridge.case."
SYSTEM_AGENCY = "casebridge"
"""Actor id of actions CaseBridge itself takes (duplicate flags, SITREP updates, erasures)."""

MAX_MEASURES = 32
MAX_PERSONS = 5000


class SupportPlanType(StrEnum):
    """HTCDS 2.0 ``spl_Type``: the kinds of support a victim's plan can hold (verbatim)."""

    Education = "Education"
    Financial = "Financial"
    Health = "Health"
    LabourExploitationRehabilitation = "LabourExploitationRehabilitation"
    Legal = "Legal"
    Livelihood = "Livelihood"
    RightsBasedTraining = "RightsBasedTraining"
    SexualExploitationRehabilitation = "SexualExploitationRehabilitation"
    SocialCare = "SocialCare"


Services = Annotated[
    tuple[SupportPlanType, ...],
    Field(min_length=1, max_length=len(SupportPlanType)),
    AfterValidator(unique_items),
]


class CaseKind(StrEnum):
    """What a case is about: one victim referral, one assisted return, one SAR incident, one
    business report of forced-labour indicators, or one identity-document request."""

    referral = "referral"
    returns = "return"
    sar = "sar"
    business_report = "business_report"
    document_request = "document_request"


class CaseState(StrEnum):
    """Lifecycle states of all three case kinds (which belong to which: ``STATES`` in domain)."""

    # Victim-identification referral
    submitted = "submitted"
    acknowledged = "acknowledged"
    screened = "screened"
    status_decided = "status_decided"
    assistance_planned = "assistance_planned"
    assistance_in_progress = "assistance_in_progress"
    # Assisted voluntary return: the AVRR stages (vocab.AvrrStage), plus withdrawn
    pre_departure = "pre_departure"
    travel = "travel"
    post_arrival = "post_arrival"
    reintegration = "reintegration"
    monitoring = "monitoring"
    withdrawn = "withdrawn"
    # SAR incident
    alert_received = "alert_received"
    coordinated = "coordinated"
    rescue_under_way = "rescue_under_way"
    persons_rescued = "persons_rescued"
    disembarked = "disembarked"
    concluded = "concluded"
    # Business report of forced-labour indicators (acknowledged and closed are shared)
    received = "received"
    assessed = "assessed"
    inspection_scheduled = "inspection_scheduled"
    inspected = "inspected"
    # Identity-document request
    requested = "requested"
    identity_verified = "identity_verified"
    verification_failed = "verification_failed"
    issued = "issued"
    refused = "refused"
    collected = "collected"
    # Referrals, returns and business reports
    closed = "closed"
    closed_referred = "closed_referred"


class ReportAssessment(StrEnum):
    """The labour inspectorate's reading of a business report."""

    inspection_warranted = "inspection_warranted"
    insufficient_information = "insufficient_information"
    outside_mandate = "outside_mandate"


class InspectionOutcome(StrEnum):
    """What an inspection of the reported site found."""

    no_violation_found = "no_violation_found"
    labour_violations_found = "labour_violations_found"
    forced_labour_identified = "forced_labour_identified"


class HandoverMode(StrEnum):
    """Primero's two handshakes: a referral adds an agency; a transfer moves ownership."""

    referral = "referral"
    transfer = "transfer"


class DecisionGrounds(StrEnum):
    """Two-stage identification (e.g. UK NRM): reasonable grounds first, conclusive later."""

    reasonable_grounds = "reasonable_grounds"
    conclusive_grounds = "conclusive_grounds"


class ReturnRiskLevel(StrEnum):
    """Outcome of the pre-departure return risk assessment; ``high`` blocks departure."""

    low = "low"
    medium = "medium"
    high = "high"


class RejectionReason(StrEnum):
    """Why an action was refused; senders switch on these, so never rename one."""

    UNKNOWN_CASE = "UNKNOWN_CASE"
    CASE_EXISTS = "CASE_EXISTS"
    """An opening event for a case id that is already open."""
    STALE_VERSION = "STALE_VERSION"
    """expected_version differs from the case's version: reload and retry."""
    INVALID_TRANSITION = "INVALID_TRANSITION"
    """The action is not allowed in the case's kind or current state."""
    NOT_AUTHORISED = "NOT_AUTHORISED"
    """The acting agency may not take this action on this case."""
    CONSENT_REQUIRED = "CONSENT_REQUIRED"
    """Consent (to share, or an adult's consent to referral) or an authorised override is
    missing."""
    NOT_ENTITLED = "NOT_ENTITLED"
    """The receiving agency is not entitled to receive this kind of case."""
    GUARD_FAILED = "GUARD_FAILED"
    """A precondition of the step does not hold (see the message)."""
    DOCUMENT_REQUEST_OPEN = "DOCUMENT_REQUEST_OPEN"
    """A return cannot depart while a travel-document request it depends on is open."""


# --- Actions -----------------------------------------------------------------------------------


class CaseAction(EventPayload):
    """Base of every action: the case, the acting agency (``reporting_agency``), the version."""

    expected_version: Annotated[StrictInt, Field(ge=1)] | None = None
    """The case version the sender last saw; refused with STALE_VERSION when it differs.
    None skips the check (for systems that cannot track versions)."""


# Victim-identification referral


class ReferralAcknowledged(CaseAction):
    """The owning agency confirms it has received the referral and will act on it."""

    action: Literal["referral_acknowledged"] = "referral_acknowledged"


class ScreeningRecorded(CaseAction):
    """Screening results: ILO/EC indicator hits with their strength (may be recorded again)."""

    action: Literal["screening_recorded"] = "screening_recorded"
    indicators: Annotated[
        tuple[IndicatorHit, ...], Field(max_length=64), AfterValidator(unique_items)
    ] = ()
    type_of_exploitation: Annotated[
        tuple[TypeOfExploitation, ...], AfterValidator(unique_items)
    ] = ()
    methods_of_control: Annotated[tuple[MethodOfControl, ...], AfterValidator(unique_items)] = ()
    recruitment_methods: Annotated[tuple[RecruitmentMethod, ...], AfterValidator(unique_items)] = ()


class TraffickingStatusDecided(CaseAction):
    """An identification decision in HTCDS terms: the status and the organisation that decided."""

    action: Literal["trafficking_status_decided"] = "trafficking_status_decided"
    trafficking_status: TraffickingStatus
    status_decided_by: DecisionMakingOrg
    grounds: DecisionGrounds = DecisionGrounds.conclusive_grounds


class AssistancePlanned(CaseAction):
    """Protection and assistance services planned for a possible or actual victim."""

    action: Literal["assistance_planned"] = "assistance_planned"
    services: Services


class AssistanceImplemented(CaseAction):
    """Planned services now delivered (each must have been planned)."""

    action: Literal["assistance_implemented"] = "assistance_implemented"
    services: Services


class CaseClosed(CaseAction):
    """Close a referral or return: Closed, or ClosedReferred (then ``referred_to`` is needed)."""

    action: Literal["case_closed"] = "case_closed"
    closure: Literal[CaseStatus.Closed, CaseStatus.ClosedReferred]
    referred_to: AgencyId | None = None
    reason: Token | None = None

    @model_validator(mode="after")
    def _referred_needs_target(self) -> Self:
        if (self.closure == CaseStatus.ClosedReferred) != (self.referred_to is not None):
            raise PydanticCustomError(
                "closure_target", "referred_to is required for ClosedReferred, and only then"
            )
        return self


# Consent, age and need-to-know


class ConsentRecorded(CaseAction):
    """Consent given or withdrawn (withdrawal is always possible, in any state)."""

    action: Literal["consent_recorded"] = "consent_recorded"
    consent_to_share: StrictBool | None = None
    adult_consent: StrictBool | None = None
    """An adult's consent to enter the referral mechanism (not asked of children)."""

    @model_validator(mode="after")
    def _something_recorded(self) -> Self:
        if self.consent_to_share is None and self.adult_consent is None:
            raise PydanticCustomError("empty_consent", "record consent_to_share or adult_consent")
        return self


class SharingOverrideRecorded(CaseAction):
    """An authorised override of the consent-to-share gate for one agency; audited as itself."""

    action: Literal["sharing_override_recorded"] = "sharing_override_recorded"
    for_agency: AgencyId
    legal_basis: ShortText
    reason: Token


class PermittedPurposeRecorded(CaseAction):
    """A purpose for which an immigration or enforcement agency may see victim-status details
    on this case (non-punishment principle: without one, it never does)."""

    action: Literal["permitted_purpose_recorded"] = "permitted_purpose_recorded"
    for_agency: AgencyId
    purpose: Token
    legal_basis: ShortText


class AgeAssessed(CaseAction):
    """Outcome of an age assessment: until one says adult, a disputed age means a child."""

    action: Literal["age_assessed"] = "age_assessed"
    assessed_as_child: StrictBool


# Referral handshake between agencies


class HandoverRequested(CaseAction):
    """The owner asks another agency to join (referral) or to take the case over (transfer)."""

    action: Literal["handover_requested"] = "handover_requested"
    to_agency: AgencyId
    mode: HandoverMode
    reason: Token | None = None


class HandoverAccepted(CaseAction):
    """The receiving agency accepts; only now does a transfer change the owner."""

    action: Literal["handover_accepted"] = "handover_accepted"


class HandoverDeclined(CaseAction):
    """The receiving agency declines, saying why."""

    action: Literal["handover_declined"] = "handover_declined"
    reason: Token


class HandoverRevoked(CaseAction):
    """The requesting agency withdraws a request not yet answered."""

    action: Literal["handover_revoked"] = "handover_revoked"
    to_agency: AgencyId


class HandoverCompleted(CaseAction):
    """The referred agency has done its part and leaves the case (need to know)."""

    action: Literal["handover_completed"] = "handover_completed"


# Assisted voluntary return and reintegration


class ReturnRiskAssessed(CaseAction):
    """Pre-departure return risk assessment (required for trafficking victims)."""

    action: Literal["return_risk_assessed"] = "return_risk_assessed"
    risk_level: ReturnRiskLevel


class TravelDocumentsIssued(CaseAction):
    action: Literal["travel_documents_issued"] = "travel_documents_issued"


class FitnessToTravelAssessed(CaseAction):
    """Medical check before departure; may be repeated (the latest counts)."""

    action: Literal["fitness_to_travel_assessed"] = "fitness_to_travel_assessed"
    fit_to_travel: StrictBool


class ReturnWithdrawn(CaseAction):
    """The person withdraws consent to return; possible until departure, never after."""

    action: Literal["return_withdrawn"] = "return_withdrawn"


class ReturnDeparted(CaseAction):
    """The person has left; names the receiving agency if the request did not."""

    action: Literal["return_departed"] = "return_departed"
    receiving_agency: AgencyId | None = None
    escort_agency: AgencyId | None = None


class ReturnArrived(CaseAction):
    """The receiving agency in the country of origin accepts the handover (and ownership)."""

    action: Literal["return_arrived"] = "return_arrived"


class ReintegrationMeasure(StrictModel):
    dimension: ReintegrationDimension
    measure: Token


class ReintegrationPlanned(CaseAction):
    """Reintegration plan across the economic, social and psychosocial dimensions."""

    action: Literal["reintegration_planned"] = "reintegration_planned"
    measures: Annotated[
        tuple[ReintegrationMeasure, ...],
        Field(min_length=1, max_length=MAX_MEASURES),
        AfterValidator(unique_items),
    ]


Score = Annotated[StrictFloat, Field(ge=0, le=1)]


class MonitoringVisitRecorded(CaseAction):
    """A follow-up visit with dated reintegration sustainability scores (0..1 per dimension)."""

    action: Literal["monitoring_visit_recorded"] = "monitoring_visit_recorded"
    visited_on: IsoDate
    economic: Score
    social: Score
    psychosocial: Score


# Business report of forced-labour indicators (the labour inspectorate acts)


class ReportAcknowledged(CaseAction):
    """The labour inspectorate confirms it has received the business's report."""

    action: Literal["report_acknowledged"] = "report_acknowledged"


class ReportAssessed(CaseAction):
    """The inspectorate's assessment: inspect the site, or not (and then close)."""

    action: Literal["report_assessed"] = "report_assessed"
    assessment: ReportAssessment


class InspectionScheduled(CaseAction):
    action: Literal["inspection_scheduled"] = "inspection_scheduled"
    scheduled_for: IsoDate


class InspectionRecorded(CaseAction):
    """The site was inspected. Presumed victims are a count here: each is referred through
    the referral flow, with ``business_report_id`` naming this report."""

    action: Literal["inspection_recorded"] = "inspection_recorded"
    inspected_on: IsoDate
    outcome: InspectionOutcome
    indicators_confirmed: Annotated[
        tuple[ForcedLabourIndicator, ...], Field(max_length=11), AfterValidator(unique_items)
    ] = ()
    presumed_victims: Annotated[StrictInt, Field(ge=0, le=MAX_PERSONS)] = 0

    @model_validator(mode="after")
    def _victims_mean_forced_labour(self) -> Self:
        if self.presumed_victims and self.outcome != InspectionOutcome.forced_labour_identified:
            raise PydanticCustomError(
                "outcome_victims",
                "presumed_victims needs the outcome forced_labour_identified",
            )
        return self


# Identity-document request (the civil registry acts)


class IdentityVerified(CaseAction):
    action: Literal["identity_verified"] = "identity_verified"


class IdentityVerificationFailed(CaseAction):
    """The registry could not verify the identity; it may verify again with more evidence."""

    action: Literal["identity_verification_failed"] = "identity_verification_failed"
    reason: Token


class DocumentIssued(CaseAction):
    action: Literal["document_issued"] = "document_issued"
    valid_until: IsoDate | None = None


class DocumentRefused(CaseAction):
    action: Literal["document_refused"] = "document_refused"
    reason: Token


class DocumentCollected(CaseAction):
    """The person (or the agency for them) has the document in hand."""

    action: Literal["document_collected"] = "document_collected"


# SAR incident (IAMSAR)


class SarPhaseDeclared(CaseAction):
    """The coordinating RCC raises or lowers the emergency phase."""

    action: Literal["sar_phase_declared"] = "sar_phase_declared"
    phase: SarPhase


class SarCoordinationAccepted(CaseAction):
    """The RCC that received the alert accepts responsibility for coordinating it."""

    action: Literal["sar_coordination_accepted"] = "sar_coordination_accepted"


class SarRescueStarted(CaseAction):
    action: Literal["sar_rescue_started"] = "sar_rescue_started"


class SarPersonsRescued(CaseAction):
    """Persons taken aboard by rescue units (adds to the incident's count)."""

    action: Literal["sar_persons_rescued"] = "sar_persons_rescued"
    count: Annotated[StrictInt, Field(ge=1, le=MAX_PERSONS)]


class SarDisembarked(CaseAction):
    """Rescued persons landed at a place of safety; victim screening follows, never precedes."""

    action: Literal["sar_disembarked"] = "sar_disembarked"
    place_of_safety: ShortText
    country: CountryCode
    persons: Annotated[StrictInt, Field(ge=1, le=MAX_PERSONS)]


class SarConcluded(CaseAction):
    """The incident is over; ``reason`` e.g. ``persons_disembarked``, ``false_alarm``."""

    action: Literal["sar_concluded"] = "sar_concluded"
    reason: Token


# Duplicates


class DuplicateReviewed(CaseAction):
    """A person's review of a possible-duplicate flag; a same-person finding is never a merge."""

    action: Literal["duplicate_reviewed"] = "duplicate_reviewed"
    other_case_id: CaseId
    same_person: StrictBool


# Internal actions: produced by CaseBridge, never accepted from an agency (not in EVENT_TYPES).


class SitrepReceived(CaseAction):
    """A later SITREP on an open incident (a SAR alert for a case that already exists)."""

    action: Literal["sitrep_received"] = "sitrep_received"
    sitrep: SarAlertReceived


class FlagPossibleDuplicate(CaseAction):
    """Two cases share a pseudonymous person key: flag for human review."""

    action: Literal["possible_duplicate_flagged"] = "possible_duplicate_flagged"
    other_case_id: CaseId


class PersonalDataErased(CaseAction):
    """The data-protection officer's erasure request was carried out: the case's data key is
    destroyed, and the person, the person key and the duplicate links leave the case."""

    action: Literal["personal_data_erased"] = "personal_data_erased"
    request_id: RequestId
    reason: Token


class DuplicateLinkRemoved(CaseAction):
    """The other case's person was erased: its possible-duplicate or same-person link goes."""

    action: Literal["duplicate_link_removed"] = "duplicate_link_removed"
    other_case_id: CaseId


class ReferralLinked(CaseAction):
    """A referral names this business report (``business_report_id``): it is linked here. The
    acting agency is the referral's reporter, which must be on the report."""

    action: Literal["referral_linked"] = "referral_linked"
    referral_case_id: CaseId


class DocumentRequestLinked(CaseAction):
    """A document request names this return (``for_return``): the return now depends on it.
    The acting agency is the requester, which must have standing on the return."""

    action: Literal["document_request_linked"] = "document_request_linked"
    request_case_id: CaseId
    document: DocumentType


class DocumentRequestSettled(CaseAction):
    """The linked document request was collected or refused: it no longer gates departure."""

    action: Literal["document_request_settled"] = "document_request_settled"
    request_case_id: CaseId
    collected: StrictBool


CaseActionUnion = Annotated[
    ReferralAcknowledged
    | ScreeningRecorded
    | TraffickingStatusDecided
    | AssistancePlanned
    | AssistanceImplemented
    | CaseClosed
    | ConsentRecorded
    | SharingOverrideRecorded
    | PermittedPurposeRecorded
    | AgeAssessed
    | HandoverRequested
    | HandoverAccepted
    | HandoverDeclined
    | HandoverRevoked
    | HandoverCompleted
    | ReturnRiskAssessed
    | TravelDocumentsIssued
    | FitnessToTravelAssessed
    | ReturnWithdrawn
    | ReturnDeparted
    | ReturnArrived
    | ReintegrationPlanned
    | MonitoringVisitRecorded
    | SarPhaseDeclared
    | SarCoordinationAccepted
    | SarRescueStarted
    | SarPersonsRescued
    | SarDisembarked
    | SarConcluded
    | DuplicateReviewed
    | ReportAcknowledged
    | ReportAssessed
    | InspectionScheduled
    | InspectionRecorded
    | IdentityVerified
    | IdentityVerificationFailed
    | DocumentIssued
    | DocumentRefused
    | DocumentCollected
    | SitrepReceived
    | FlagPossibleDuplicate
    | PersonalDataErased
    | DuplicateLinkRemoved
    | ReferralLinked
    | DocumentRequestLinked
    | DocumentRequestSettled,
    Field(discriminator="action"),
]

INTERNAL_ACTIONS: tuple[type[CaseAction], ...] = (
    SitrepReceived,
    FlagPossibleDuplicate,
    PersonalDataErased,
    DuplicateLinkRemoved,
    ReferralLinked,
    DocumentRequestLinked,
    DocumentRequestSettled,
)


def action_type(action: type[CaseAction] | CaseAction) -> str:
    """The CloudEvents type of an action, e.g. ``org.casebridge.case.handover_accepted.v1``."""
    cls = action if isinstance(action, type) else type(action)
    return f"{ACTION_TYPE_PREFIX}{cls.model_fields['action'].default}.v1"


# --- Emitted events ----------------------------------------------------------------------------


class CaseOpened(StrictModel):
    """A case opened by an inbound referral, return request, SAR alert, business report or
    document request (version 1).

    Exactly one of the sources is set, matching ``kind``;
    the agencies CaseBridge chose (routing, child protection) are recorded so that a replay
    needs no directory.
    """

    case_id: CaseId
    kind: CaseKind
    version: Literal[1] = 1
    state: CaseState
    occurred_at: Timestamp
    owner: AgencyId
    assigned: tuple[AgencyId, ...] = ()
    child: StrictBool
    person_key: Annotated[str, Field(max_length=80)] | None = None
    referral: VictimReferralSubmitted | None = None
    return_request: ReturnRequested | None = None
    sar_alert: SarAlertReceived | None = None
    business_report: ForcedLabourReported | None = None
    document_request: DocumentRequested | None = None
    reporter: AgencyId | None = None
    """The business that reported (business reports only): told the status, never a member."""

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        sources = {
            CaseKind.referral: self.referral,
            CaseKind.returns: self.return_request,
            CaseKind.sar: self.sar_alert,
            CaseKind.business_report: self.business_report,
            CaseKind.document_request: self.document_request,
        }
        if sources[self.kind] is None or sum(s is not None for s in sources.values()) != 1:
            raise PydanticCustomError("opening_source", "exactly the kind's source must be set")
        return self


class TransitionRecorded(StrictModel):
    """An accepted action: the new state and version. The log of these rebuilds the case."""

    case_id: CaseId
    kind: CaseKind
    version: Annotated[StrictInt, Field(ge=2)]
    previous_state: CaseState
    state: CaseState
    status: CaseStatus
    occurred_at: Timestamp
    actor_agency: AgencyId
    action_type: str
    action: CaseActionUnion
    owner: AgencyId
    assigned_added: tuple[AgencyId, ...] = ()
    """Agencies CaseBridge assigned as a consequence (e.g. child protection for a child)."""
    phase: SarPhase | None = None
    """The current SAR phase after this transition (IAMSAR: every message quotes it)."""


class TransitionRejected(StrictModel):
    """A refused action: the case is unchanged; the attempt is recorded and the sender told."""

    case_id: CaseId
    attempted_type: str
    actor_agency: AgencyId
    reason: RejectionReason
    message: Annotated[str, Field(max_length=300)]
    occurred_at: Timestamp
    case_version: StrictInt | None = None
    """The case's current version (None if unknown), so the sender can reload and retry."""
    phase: SarPhase | None = None


class EscalationRaised(StrictModel):
    """A deadline was missed: the owning agency and its fallback/supervisor are told."""

    deadline_id: Annotated[str, Field(max_length=200)]
    case_id: CaseId
    kind: CaseKind
    rule_id: Annotated[str, Field(max_length=80)]
    serves: MinisterialPriority
    due_at: Timestamp
    raised_at: Timestamp
    owner: AgencyId
    escalate_to: tuple[AgencyId, ...]
    phase: SarPhase | None = None


class PossibleDuplicateFlagged(StrictModel):
    """Two cases may concern the same person; for human review on both, never merged."""

    case_id: CaseId
    other_case_id: CaseId
    owner: AgencyId
    flagged_at: Timestamp


class ScreeningReferralOpened(StrictModel):
    """After disembarkation, survivors are to be screened as possible victims: a downstream
    referral that follows disembarkation and never gates it (IMO MSC.167(78))."""

    screening_id: Annotated[str, Field(max_length=100)]
    incident_id: CaseId
    coordinating_rcc: AgencyId
    place_of_safety: ShortText
    country: CountryCode
    persons: Annotated[StrictInt, Field(ge=1, le=MAX_PERSONS)]
    children_reported: StrictBool | None = None
    disembarked_at: Timestamp


class CaseUpdate(StrictModel):
    """What one agency may know of a case after a change (need to know).

    Fields the recipient is not entitled to are None and named in ``withheld``; which ones is
    decided by ``services.cases.domain.visibility`` from ``policy.yaml``.
    """

    recipient: AgencyId
    case_id: CaseId
    kind: CaseKind
    version: StrictInt
    status: CaseStatus
    occurred_at: Timestamp
    withheld: tuple[str, ...] = ()
    role: Literal["owner", "assigned", "pending", "former", "reporter"]
    """``reporter``: the business that reported (it is told its report's status only)."""
    # Operational
    state: CaseState | None = None
    change: str | None = None
    owner: AgencyId | None = None
    assigned: tuple[AgencyId, ...] = ()
    pending_handovers: tuple[AgencyId, ...] = ()
    child: StrictBool | None = None
    consent_to_share: StrictBool | None = None
    possible_duplicate_of: tuple[CaseId, ...] = ()
    location_country: CountryCode | None = None
    origin_country: CountryCode | None = None
    host_country: CountryCode | None = None
    receiving_agency: AgencyId | None = None
    departed_at: Timestamp | None = None
    arrived_at: Timestamp | None = None
    phase: SarPhase | None = None
    coordination_accepted: StrictBool | None = None
    sitrep_number: StrictInt | None = None
    persons_at_risk: StrictInt | None = None
    persons_rescued: StrictInt | None = None
    persons_disembarked: StrictInt | None = None
    children_reported: StrictBool | None = None
    site_country: CountryCode | None = None
    sector: Sector | None = None
    supplier_tier: SupplierTier | None = None
    workers_affected: WorkersAffected | None = None
    report_assessment: ReportAssessment | None = None
    inspection_scheduled_for: IsoDate | None = None
    inspection_outcome: InspectionOutcome | None = None
    document: DocumentType | None = None
    issuing_country: CountryCode | None = None
    for_return: CaseId | None = None
    document_requests_open: tuple[CaseId, ...] = ()
    """A return's travel-document requests not yet collected or refused."""
    refusal_reason: str | None = None
    """Why an identity verification failed or a document was refused (a code)."""
    presumed_victims: StrictInt | None = None
    """How many presumed victims an inspection found (a count; each is a referral)."""
    linked_referrals: tuple[CaseId, ...] | None = None
    # Victim status and protection details
    trafficking_status: TraffickingStatus | None = None
    status_decided_by: DecisionMakingOrg | None = None
    type_of_exploitation: tuple[TypeOfExploitation, ...] | None = None
    indicators: tuple[IndicatorHit, ...] | None = None
    methods_of_control: tuple[MethodOfControl, ...] | None = None
    recruitment_methods: tuple[RecruitmentMethod, ...] | None = None
    trafficking_victim: StrictBool | None = None
    services_planned: tuple[SupportPlanType, ...] | None = None
    services_implemented: tuple[SupportPlanType, ...] | None = None
    return_risk_level: ReturnRiskLevel | None = None
    reintegration_plan: tuple[ReintegrationMeasure, ...] | None = None
    monitoring_visits: StrictInt | None = None
    # Personal data
    person: PersonRef | None = None
    person_key: str | None = None


# --- Registries --------------------------------------------------------------------------------

_AGENCY_ACTIONS: tuple[type[CaseAction], ...] = (
    ReferralAcknowledged,
    ScreeningRecorded,
    TraffickingStatusDecided,
    AssistancePlanned,
    AssistanceImplemented,
    CaseClosed,
    ConsentRecorded,
    SharingOverrideRecorded,
    PermittedPurposeRecorded,
    AgeAssessed,
    HandoverRequested,
    HandoverAccepted,
    HandoverDeclined,
    HandoverRevoked,
    HandoverCompleted,
    ReturnRiskAssessed,
    TravelDocumentsIssued,
    FitnessToTravelAssessed,
    ReturnWithdrawn,
    ReturnDeparted,
    ReturnArrived,
    ReintegrationPlanned,
    MonitoringVisitRecorded,
    SarPhaseDeclared,
    SarCoordinationAccepted,
    SarRescueStarted,
    SarPersonsRescued,
    SarDisembarked,
    SarConcluded,
    DuplicateReviewed,
    ReportAcknowledged,
    ReportAssessed,
    InspectionScheduled,
    InspectionRecorded,
    IdentityVerified,
    IdentityVerificationFailed,
    DocumentIssued,
    DocumentRefused,
    DocumentCollected,
)

EVENT_TYPES: Mapping[str, type[BaseModel]] = {action_type(a): a for a in _AGENCY_ACTIONS}
"""Inbound action types agencies may publish (for ``schemas.registry``)."""

EMITTED_EVENT_TYPES: Mapping[str, type[BaseModel]] = {
    "org.casebridge.cases.case_opened.v1": CaseOpened,
    "org.casebridge.cases.transition_recorded.v1": TransitionRecorded,
    "org.casebridge.cases.transition_rejected.v1": TransitionRejected,
    "org.casebridge.cases.escalation_raised.v1": EscalationRaised,
    "org.casebridge.cases.possible_duplicate_flagged.v1": PossibleDuplicateFlagged,
    "org.casebridge.cases.screening_referral_opened.v1": ScreeningReferralOpened,
    "org.casebridge.cases.case_update.v1": CaseUpdate,
}
"""Events the cases service emits, by CloudEvents type."""
