"""SAR incident lifecycle (IAMSAR): phases, coordination and its handover, rescue,
disembarkation (which opens screening downstream), conclusion; SITREP updates."""

from __future__ import annotations

from schemas.cases import (
    CaseClosed,
    CaseState,
    HandoverAccepted,
    HandoverMode,
    HandoverRequested,
    RejectionReason,
    SarConcluded,
    SarCoordinationAccepted,
    SarDisembarked,
    SarPersonsRescued,
    SarPhaseDeclared,
    SarRescueStarted,
    ScreeningReferralOpened,
    TransitionRecorded,
)
from schemas.vocab import CaseStatus, SarPhase
from tests.unit.cases.case_builders import Run, sar_alert

LANDING = {"place_of_safety": "Port of Benoa", "country": "ID"}


def rescuing() -> Run:
    run = Run(sar_alert())
    run.ok(SarCoordinationAccepted, "rcc-a")
    run.ok(SarRescueStarted, "rcc-a")
    return run


def test_incident_runs_from_alert_to_conclusion() -> None:
    run = rescuing()
    run.ok(SarPersonsRescued, "rcc-a", count=38)
    assert run.case.state == CaseState.persons_rescued
    run.ok(SarDisembarked, "rcc-a", persons=38, **LANDING)
    assert run.case.state == CaseState.disembarked
    run.ok(SarConcluded, "rcc-a", reason="persons_disembarked")
    assert run.case.state == CaseState.concluded
    assert run.case.status == CaseStatus.Closed


def test_every_recorded_transition_quotes_the_current_phase() -> None:
    run = rescuing()
    run.ok(SarPhaseDeclared, "rcc-a", phase=SarPhase.ALERFA)
    phases = [e.phase for e in run.log if isinstance(e, TransitionRecorded)]
    assert phases == [SarPhase.DETRESFA, SarPhase.DETRESFA, SarPhase.ALERFA]
    again = run.do(SarPhaseDeclared(case_id="sar-1", reporting_agency="rcc-a", phase="ALERFA"))
    assert again.rejection is not None
    assert again.rejection.phase == SarPhase.ALERFA


def test_phase_is_raised_and_lowered_but_not_redeclared() -> None:
    run = Run(sar_alert(phase=SarPhase.INCERFA))
    run.ok(SarPhaseDeclared, "rcc-a", phase=SarPhase.DETRESFA)
    run.ok(SarPhaseDeclared, "rcc-a", phase=SarPhase.ALERFA)
    assert run.case.sar is not None
    assert run.case.sar.phase == SarPhase.ALERFA
    assert run.refused(SarPhaseDeclared, "rcc-a", phase=SarPhase.ALERFA) == (
        RejectionReason.GUARD_FAILED
    )


def test_disembarking_before_rescue_is_an_invalid_transition() -> None:
    run = rescuing()
    assert run.refused(SarDisembarked, "rcc-a", persons=1, **LANDING) == (
        RejectionReason.INVALID_TRANSITION
    )
    fresh = Run(sar_alert())
    assert fresh.refused(SarRescueStarted, "rcc-a") == RejectionReason.INVALID_TRANSITION


def test_more_persons_cannot_land_than_were_rescued() -> None:
    run = rescuing()
    run.ok(SarPersonsRescued, "rcc-a", count=10)
    assert run.refused(SarDisembarked, "rcc-a", persons=11, **LANDING) == (
        RejectionReason.GUARD_FAILED
    )


def test_partial_landing_keeps_the_incident_open_for_the_rest() -> None:
    run = rescuing()
    run.ok(SarPersonsRescued, "rcc-a", count=30)
    run.ok(SarDisembarked, "rcc-a", persons=20, **LANDING)
    assert run.case.state == CaseState.persons_rescued
    assert run.refused(SarConcluded, "rcc-a", reason="done") == RejectionReason.GUARD_FAILED
    run.ok(SarDisembarked, "rcc-a", persons=10, place_of_safety="Port of Darwin", country="AU")
    assert run.case.state == CaseState.disembarked
    run.ok(SarPersonsRescued, "rcc-a", count=2)  # survivors found later
    assert run.case.state == CaseState.persons_rescued


def test_disembarkation_opens_a_screening_referral_and_is_never_gated_by_screening() -> None:
    run = Run(sar_alert(children_reported=True))
    run.ok(SarCoordinationAccepted, "rcc-a")
    run.ok(SarRescueStarted, "rcc-a")
    run.ok(SarPersonsRescued, "rcc-a", count=12)
    landed = run.do(
        SarDisembarked(case_id="sar-1", reporting_agency="rcc-a", persons=12, **LANDING)
    )
    assert landed.accepted
    (screening,) = landed.follow_ups
    assert isinstance(screening, ScreeningReferralOpened)
    assert screening.incident_id == "sar-1"
    assert screening.persons == 12
    assert screening.children_reported is True
    assert screening.screening_id == "sar-1/screening/1"


def test_false_alarm_concludes_without_rescue() -> None:
    run = Run(sar_alert(phase=SarPhase.INCERFA))
    run.ok(SarConcluded, "rcc-a", reason="false_alarm")
    assert run.case.state == CaseState.concluded
    assert run.refused(SarPhaseDeclared, "rcc-a", phase=SarPhase.ALERFA) == (
        RejectionReason.INVALID_TRANSITION
    )


def test_first_rcc_keeps_coordination_until_the_other_accepts() -> None:
    run = Run(sar_alert())
    run.ok(HandoverRequested, "rcc-a", to_agency="rcc-b", mode=HandoverMode.transfer)
    assert run.case.owner == "rcc-a"
    assert run.case.state == CaseState.alert_received
    assert run.refused(SarCoordinationAccepted, "rcc-b") == RejectionReason.NOT_AUTHORISED
    run.ok(HandoverAccepted, "rcc-b")
    assert run.case.owner == "rcc-b"
    assert run.case.state == CaseState.coordinated
    assert run.refused(SarRescueStarted, "rcc-a") == RejectionReason.NOT_AUTHORISED
    run.ok(SarRescueStarted, "rcc-b")


def test_sar_coordination_moves_only_by_transfer_to_an_rcc() -> None:
    run = Run(sar_alert())
    assert (
        run.refused(HandoverRequested, "rcc-a", to_agency="rcc-b", mode=HandoverMode.referral)
        == RejectionReason.GUARD_FAILED
    )
    assert (
        run.refused(HandoverRequested, "rcc-a", to_agency="sw-th", mode=HandoverMode.transfer)
        == RejectionReason.NOT_ENTITLED
    )


def test_sitreps_update_the_incident_in_sequence() -> None:
    run = Run(sar_alert(phase=SarPhase.ALERFA))
    second = sar_alert(sitrep_number=2, phase=SarPhase.DETRESFA, persons_at_risk=55)
    assert run.do(second).accepted
    assert run.case.sar is not None
    assert (run.case.sar.phase, run.case.sar.persons_at_risk) == (SarPhase.DETRESFA, 55)
    stale = run.do(sar_alert(sitrep_number=2))
    assert stale.rejection is not None
    assert stale.rejection.reason == RejectionReason.GUARD_FAILED
    assert stale.rejection.attempted_type == "org.casebridge.sar.alert.v1"


def test_a_sitrep_cannot_move_coordination() -> None:
    run = Run(sar_alert())
    takeover = run.do(sar_alert(sitrep_number=2, coordinating_rcc="rcc-b"))
    assert takeover.rejection is not None
    assert takeover.rejection.reason == RejectionReason.GUARD_FAILED
    assert run.case.owner == "rcc-a"


def test_referral_steps_do_not_apply_to_an_incident() -> None:
    run = Run(sar_alert())
    assert run.refused(CaseClosed, "rcc-a", closure=CaseStatus.Closed) == (
        RejectionReason.INVALID_TRANSITION
    )
