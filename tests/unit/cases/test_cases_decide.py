"""decide() as a whole: rejections leave the case unchanged, the order of checks, every
transition refused outside its states, the log replays, and the wire types are well formed."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

import pytest

from schemas.cases import (
    EMITTED_EVENT_TYPES,
    EVENT_TYPES,
    INTERNAL_ACTIONS,
    SYSTEM_AGENCY,
    AgeAssessed,
    AssistanceImplemented,
    AssistancePlanned,
    CaseAction,
    CaseClosed,
    CaseKind,
    CaseOpened,
    ConsentRecorded,
    DocumentCollected,
    DocumentIssued,
    DocumentRefused,
    DocumentRequestLinked,
    DocumentRequestSettled,
    DuplicateLinkRemoved,
    DuplicateReviewed,
    FitnessToTravelAssessed,
    FlagPossibleDuplicate,
    HandoverAccepted,
    HandoverCompleted,
    HandoverDeclined,
    HandoverMode,
    HandoverRequested,
    HandoverRevoked,
    IdentityVerificationFailed,
    IdentityVerified,
    InspectionRecorded,
    InspectionScheduled,
    MonitoringVisitRecorded,
    PermittedPurposeRecorded,
    PersonalDataErased,
    ReferralAcknowledged,
    ReferralLinked,
    ReintegrationMeasure,
    ReintegrationPlanned,
    RejectionReason,
    ReportAcknowledged,
    ReportAssessed,
    ReturnArrived,
    ReturnDeparted,
    ReturnRiskAssessed,
    ReturnWithdrawn,
    SarConcluded,
    SarCoordinationAccepted,
    SarDisembarked,
    SarPersonsRescued,
    SarPhaseDeclared,
    SarRescueStarted,
    ScreeningRecorded,
    SharingOverrideRecorded,
    SitrepReceived,
    SupportPlanType,
    TraffickingStatusDecided,
    TransitionRecorded,
    TravelDocumentsIssued,
    action_type,
)
from schemas.vocab import CaseStatus, ReintegrationDimension
from services.cases.domain import CASE_ADAPTER, decide, replay
from services.cases.domain.lifecycle import TRANSITIONS
from services.cases.domain.model import STATES, Case
from tests.unit.cases.case_builders import (
    CTX,
    T0,
    Run,
    act,
    business_report,
    document_request,
    referral,
    return_request,
    sar_alert,
)

FIELDS: dict[type[CaseAction], dict[str, Any]] = {
    ReferralAcknowledged: {},
    ScreeningRecorded: {},
    TraffickingStatusDecided: {
        "trafficking_status": "PossibleVictimOfTrafficking",
        "status_decided_by": "NGO",
    },
    AssistancePlanned: {"services": (SupportPlanType.Health,)},
    AssistanceImplemented: {"services": (SupportPlanType.Health,)},
    CaseClosed: {"closure": CaseStatus.Closed},
    ConsentRecorded: {"consent_to_share": True},
    SharingOverrideRecorded: {"for_agency": "ngo-th", "legal_basis": "order", "reason": "risk"},
    PermittedPurposeRecorded: {
        "for_agency": "imm-th",
        "purpose": "reflection_and_recovery_period",
        "legal_basis": "Act s.5",
    },
    AgeAssessed: {"assessed_as_child": False},
    HandoverRequested: {"to_agency": "ngo-th", "mode": HandoverMode.referral},
    HandoverAccepted: {},
    HandoverDeclined: {"reason": "no_capacity"},
    HandoverRevoked: {"to_agency": "ngo-th"},
    HandoverCompleted: {},
    ReturnRiskAssessed: {"risk_level": "low"},
    TravelDocumentsIssued: {},
    FitnessToTravelAssessed: {"fit_to_travel": True},
    ReturnWithdrawn: {},
    ReturnDeparted: {},
    ReturnArrived: {},
    ReintegrationPlanned: {
        "measures": (ReintegrationMeasure(dimension=ReintegrationDimension.social, measure="x"),)
    },
    MonitoringVisitRecorded: {
        "visited_on": T0.date(),
        "economic": 0.5,
        "social": 0.5,
        "psychosocial": 0.5,
    },
    SarPhaseDeclared: {"phase": "ALERFA"},
    SarCoordinationAccepted: {},
    SarRescueStarted: {},
    SarPersonsRescued: {"count": 3},
    SarDisembarked: {"place_of_safety": "Port", "country": "ID", "persons": 1},
    SarConcluded: {"reason": "done"},
    DuplicateReviewed: {"other_case_id": "ref-9", "same_person": False},
    SitrepReceived: {"sitrep": sar_alert(sitrep_number=2)},
    FlagPossibleDuplicate: {"other_case_id": "ref-9"},
    PersonalDataErased: {"request_id": "req-1", "reason": "subject_request"},
    DuplicateLinkRemoved: {"other_case_id": "ref-9"},
    ReportAcknowledged: {},
    ReportAssessed: {"assessment": "inspection_warranted"},
    InspectionScheduled: {"scheduled_for": T0.date()},
    InspectionRecorded: {"inspected_on": T0.date(), "outcome": "no_violation_found"},
    ReferralLinked: {"referral_case_id": "ref-9"},
    IdentityVerified: {},
    IdentityVerificationFailed: {"reason": "no_civil_record"},
    DocumentIssued: {},
    DocumentRefused: {"reason": "not_a_national"},
    DocumentCollected: {},
    DocumentRequestLinked: {"request_case_id": "doc-9", "document": "travel_document"},
    DocumentRequestSettled: {"request_case_id": "doc-9", "collected": True},
}
SYSTEM_ACTIONS = (
    FlagPossibleDuplicate,
    PersonalDataErased,
    DuplicateLinkRemoved,
    DocumentRequestSettled,
)
OPENED = {
    CaseKind.referral: Run(referral("c-1"), routed_to=["sw-th"]).case,
    CaseKind.returns: Run(return_request("c-1")).case,
    CaseKind.sar: Run(sar_alert("c-1")).case,
    CaseKind.business_report: Run(business_report("c-1"), routed_to=["li-id"]).case,
    CaseKind.document_request: Run(document_request("c-1"), routed_to=["reg-mm"]).case,
}


def action_for(cls: type[CaseAction], case: Case, **extra: Any) -> CaseAction:
    actor = SYSTEM_AGENCY if cls in SYSTEM_ACTIONS else case.owner
    return act(cls, case, actor, **(FIELDS[cls] | extra))


def test_every_action_has_exactly_one_transition_and_a_sample() -> None:
    assert set(TRANSITIONS) == set(FIELDS)


@pytest.mark.parametrize("cls", list(FIELDS), ids=lambda c: c.__name__)
def test_every_action_is_refused_in_every_state_it_does_not_start_from(
    cls: type[CaseAction],
) -> None:
    transition = TRANSITIONS[cls]
    for kind, opened in OPENED.items():
        for state in STATES[kind]:
            if kind in transition.kinds and state in transition.sources:
                continue
            case = replace(opened, state=state)
            decision = decide(case, action_for(cls, case), now=T0, ctx=CTX)
            assert decision.rejection is not None, (kind, state)
            assert decision.rejection.reason == RejectionReason.INVALID_TRANSITION, (kind, state)
            assert decision.case is case
            assert decision.events == ()


def test_an_action_on_an_unknown_case_is_refused() -> None:
    decision = decide(None, act(ReferralAcknowledged, "nope", "sw-th"), now=T0, ctx=CTX)
    assert decision.rejection is not None
    assert decision.rejection.reason == RejectionReason.UNKNOWN_CASE
    assert decision.rejection.case_version is None
    assert decision.case is None


def test_a_second_opening_for_the_same_case_is_refused() -> None:
    run = Run(referral())
    decision = decide(run.case, referral(), now=T0, ctx=CTX)
    assert decision.rejection is not None
    assert decision.rejection.reason == RejectionReason.CASE_EXISTS
    assert decide(run.case, return_request("ref-1"), now=T0, ctx=CTX).rejection is not None


def test_stale_version_is_refused_and_the_current_one_accepted() -> None:
    run = Run(referral(), routed_to=["sw-th"])
    stale = act(ReferralAcknowledged, run.case, "sw-th", expected_version=2)
    decision = decide(run.case, stale, now=T0, ctx=CTX)
    assert decision.rejection is not None
    assert decision.rejection.reason == RejectionReason.STALE_VERSION
    assert decision.rejection.case_version == 1
    fresh = act(ReferralAcknowledged, run.case, "sw-th", expected_version=1)
    assert decide(run.case, fresh, now=T0, ctx=CTX).accepted


def test_an_agency_with_no_standing_learns_nothing_about_the_state() -> None:
    run = Run(referral(), routed_to=["sw-th"])
    # Would be an invalid transition for a member; a stranger is simply not authorised.
    stranger = act(AssistancePlanned, run.case, "imm-th", **FIELDS[AssistancePlanned])
    decision = decide(run.case, stranger, now=T0, ctx=CTX)
    assert decision.rejection is not None
    assert decision.rejection.reason == RejectionReason.NOT_AUTHORISED


def test_internal_actions_are_refused_from_agencies_and_not_accepted_inbound() -> None:
    run = Run(referral(), routed_to=["sw-th"])
    forged = act(FlagPossibleDuplicate, run.case, "sw-th", other_case_id="ref-9")
    decision = decide(run.case, forged, now=T0, ctx=CTX)
    assert decision.rejection is not None
    assert decision.rejection.reason == RejectionReason.NOT_AUTHORISED
    assert not {action_type(a) for a in INTERNAL_ACTIONS} & set(EVENT_TYPES)


def test_the_clock_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="timezone"):
        decide(None, referral(), now=dt.datetime(2025, 1, 1), ctx=CTX)


def test_replaying_the_serialised_log_rebuilds_the_same_case() -> None:
    run = Run(referral(), routed_to=["sw-th"])
    run.ok(ReferralAcknowledged, "sw-th")
    run.ok(HandoverRequested, "sw-th", to_agency="ngo-th", mode=HandoverMode.transfer)
    run.tick(dt.timedelta(hours=3))
    run.ok(HandoverAccepted, "ngo-th")
    wire = [(type(e), e.model_dump_json()) for e in run.log]
    rebuilt = replay(cls.model_validate_json(text) for cls, text in wire)
    assert rebuilt == run.case


def test_case_snapshots_round_trip() -> None:
    run = Run(return_request())
    assert CASE_ADAPTER.validate_json(CASE_ADAPTER.dump_json(run.case)) == run.case


def test_apply_refuses_an_event_that_does_not_follow_the_case() -> None:
    run = Run(referral(), routed_to=["sw-th"])
    run.ok(ReferralAcknowledged, "sw-th")
    opened, acknowledged = run.log
    assert isinstance(acknowledged, TransitionRecorded)
    assert isinstance(opened, CaseOpened)
    with pytest.raises(ValueError, match="does not follow"):
        replay([opened, acknowledged, acknowledged])
    with pytest.raises(ValueError, match="already open"):
        replay([opened, opened])


def test_action_types_are_versioned_and_apart_from_emitted_types() -> None:
    for event_type in EVENT_TYPES:
        assert event_type.startswith("org.casebridge.case.")
        assert event_type.endswith(".v1")
    for event_type in EMITTED_EVENT_TYPES:
        assert event_type.startswith("org.casebridge.cases.")
    assert not set(EVENT_TYPES) & set(EMITTED_EVENT_TYPES)
