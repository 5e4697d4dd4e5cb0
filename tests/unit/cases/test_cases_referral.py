"""Victim-identification referral lifecycle: every step, valid and refused."""

from __future__ import annotations

import pytest

from schemas.cases import (
    AssistanceImplemented,
    AssistancePlanned,
    CaseClosed,
    CaseState,
    ConsentRecorded,
    ReferralAcknowledged,
    RejectionReason,
    ScreeningRecorded,
    SupportPlanType,
    TraffickingStatusDecided,
)
from schemas.referral import IndicatorHit
from schemas.vocab import (
    CaseStatus,
    DecisionMakingOrg,
    IndicatorDimension,
    IndicatorStrength,
    TraffickingStatus,
)
from tests.unit.cases.case_builders import CHILD, Run, referral

HIT = IndicatorHit(
    dimension=IndicatorDimension.coercion_at_destination,
    indicator="confiscation_of_documents",
    strength=IndicatorStrength.strong,
)
ACTUAL = {
    "trafficking_status": TraffickingStatus.ActualVictimOfTrafficking,
    "status_decided_by": DecisionMakingOrg.NGO,
}


def decided_run() -> Run:
    run = Run(referral(), routed_to=["sw-th"])
    run.ok(ReferralAcknowledged, "sw-th")
    run.ok(ScreeningRecorded, "sw-th", indicators=(HIT,))
    run.ok(TraffickingStatusDecided, "sw-th", **ACTUAL)
    return run


def test_routed_agency_owns_a_new_referral_and_the_reporter_stays_informed() -> None:
    run = Run(referral(), routed_to=["sw-th", "ngo-th"])
    assert run.case.state == CaseState.submitted
    assert run.case.owner == "sw-th"
    assert run.case.assigned == ("ngo-th", "police-th")
    assert run.case.version == 1


def test_referral_runs_from_submission_to_assistance_and_closure() -> None:
    run = decided_run()
    assert run.case.state == CaseState.status_decided
    assert run.case.referral is not None
    assert run.case.referral.indicators == (HIT,)
    assert run.case.referral.status_decided_by == DecisionMakingOrg.NGO
    run.ok(AssistancePlanned, "sw-th", services=(SupportPlanType.Health, SupportPlanType.Legal))
    assert run.case.state == CaseState.assistance_planned
    run.ok(AssistanceImplemented, "sw-th", services=(SupportPlanType.Health,))
    assert run.case.state == CaseState.assistance_in_progress
    run.ok(CaseClosed, "sw-th", closure=CaseStatus.Closed)
    assert run.case.state == CaseState.closed
    assert run.case.status == CaseStatus.Closed
    assert run.case.version == 7


def test_closed_referred_names_the_agency_and_maps_to_htcds_status() -> None:
    run = decided_run()
    run.ok(CaseClosed, "sw-th", closure=CaseStatus.ClosedReferred, referred_to="ngo-th")
    assert run.case.state == CaseState.closed_referred
    assert run.case.status == CaseStatus.ClosedReferred


def test_only_the_owner_acknowledges() -> None:
    run = Run(referral(), routed_to=["sw-th"])
    assert run.refused(ReferralAcknowledged, "police-th") == RejectionReason.NOT_AUTHORISED


@pytest.mark.parametrize(
    ("action", "fields"),
    [
        (ScreeningRecorded, {}),
        (TraffickingStatusDecided, ACTUAL),
        (AssistancePlanned, {"services": (SupportPlanType.Health,)}),
        (AssistanceImplemented, {"services": (SupportPlanType.Health,)}),
    ],
)
def test_steps_out_of_order_are_invalid_transitions(
    action: type, fields: dict[str, object]
) -> None:
    run = Run(referral(), routed_to=["sw-th"])
    assert run.refused(action, "sw-th", **fields) == RejectionReason.INVALID_TRANSITION


def test_screening_can_be_recorded_again_and_keeps_every_hit_once() -> None:
    run = Run(referral(), routed_to=["sw-th"])
    run.ok(ReferralAcknowledged, "sw-th")
    run.ok(ScreeningRecorded, "sw-th", indicators=(HIT,))
    other = HIT.model_copy(update={"indicator": "debt_bondage"})
    run.ok(ScreeningRecorded, "sw-th", indicators=(HIT, other))
    assert run.case.referral is not None
    assert run.case.referral.indicators == (HIT, other)


def test_adult_without_consent_to_referral_is_not_screened_until_consent_is_recorded() -> None:
    run = Run(referral(adult_consent=False), routed_to=["sw-th"])
    run.ok(ReferralAcknowledged, "sw-th")
    assert run.refused(ScreeningRecorded, "sw-th") == RejectionReason.CONSENT_REQUIRED
    run.ok(ConsentRecorded, "sw-th", adult_consent=True)
    run.ok(ScreeningRecorded, "sw-th")


def test_child_workflow_skips_the_adult_consent_gate_and_assigns_child_protection() -> None:
    run = Run(referral(person=CHILD, adult_consent=None), routed_to=["sw-th"])
    assert run.case.child
    assert "cp-th" in run.case.assigned  # the one in the child's country
    run.ok(ReferralAcknowledged, "sw-th")
    run.ok(ScreeningRecorded, "sw-th")


def test_age_disputed_adult_is_treated_as_a_child() -> None:
    disputed = referral().person.model_copy(update={"age_disputed": True})
    run = Run(referral(person=disputed), routed_to=["sw-th"])
    assert run.case.child
    assert "cp-th" in run.case.assigned


def test_assistance_needs_a_victim_status() -> None:
    run = Run(referral(), routed_to=["sw-th"])
    run.ok(ReferralAcknowledged, "sw-th")
    run.ok(ScreeningRecorded, "sw-th")
    run.ok(
        TraffickingStatusDecided,
        "sw-th",
        trafficking_status=TraffickingStatus.NotAVictimOfTrafficking,
        status_decided_by=DecisionMakingOrg.Police,
    )
    reason = run.refused(AssistancePlanned, "sw-th", services=(SupportPlanType.Health,))
    assert reason == RejectionReason.GUARD_FAILED


def test_not_a_victim_decision_during_assistance_returns_to_decided() -> None:
    run = decided_run()
    run.ok(AssistancePlanned, "sw-th", services=(SupportPlanType.Health,))
    run.ok(
        TraffickingStatusDecided,
        "sw-th",
        trafficking_status=TraffickingStatus.NotAVictimOfTrafficking,
        status_decided_by=DecisionMakingOrg.CourtOrProsecution,
    )
    assert run.case.state == CaseState.status_decided


def test_only_planned_services_can_be_implemented() -> None:
    run = decided_run()
    run.ok(AssistancePlanned, "sw-th", services=(SupportPlanType.Health,))
    reason = run.refused(AssistanceImplemented, "sw-th", services=(SupportPlanType.Legal,))
    assert reason == RejectionReason.GUARD_FAILED


def test_a_closed_referral_takes_no_further_step() -> None:
    run = decided_run()
    run.ok(CaseClosed, "sw-th", closure=CaseStatus.Closed)
    reason = run.refused(AssistancePlanned, "sw-th", services=(SupportPlanType.Health,))
    assert reason == RejectionReason.INVALID_TRANSITION
    assert run.refused(CaseClosed, "sw-th", closure=CaseStatus.Closed) == (
        RejectionReason.INVALID_TRANSITION
    )
