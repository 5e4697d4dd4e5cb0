"""Assisted voluntary return and reintegration lifecycle."""

from __future__ import annotations

import datetime as dt

import pytest

from schemas.cases import (
    CaseClosed,
    CaseState,
    FitnessToTravelAssessed,
    MonitoringVisitRecorded,
    ReintegrationMeasure,
    ReintegrationPlanned,
    RejectionReason,
    ReturnArrived,
    ReturnDeparted,
    ReturnRiskAssessed,
    ReturnRiskLevel,
    ReturnWithdrawn,
    TravelDocumentsIssued,
)
from schemas.vocab import CaseStatus, ReintegrationDimension
from tests.unit.cases.case_builders import CHILD, Run, return_request

PLAN = (
    ReintegrationMeasure(dimension=ReintegrationDimension.economic, measure="vocational_training"),
    ReintegrationMeasure(dimension=ReintegrationDimension.social, measure="family_tracing"),
    ReintegrationMeasure(dimension=ReintegrationDimension.psychosocial, measure="counselling"),
)


def ready_to_depart(**request: object) -> Run:
    run = Run(return_request(**request))
    run.ok(ReturnRiskAssessed, "iom-th", risk_level=ReturnRiskLevel.low)
    run.ok(TravelDocumentsIssued, "iom-th")
    run.ok(FitnessToTravelAssessed, "iom-th", fit_to_travel=True)
    return run


def arrived() -> Run:
    run = ready_to_depart()
    run.ok(ReturnDeparted, "iom-th")
    run.tick(dt.timedelta(hours=20))
    run.ok(ReturnArrived, "recv-mm")
    return run


def test_return_runs_through_every_avrr_stage_to_closure() -> None:
    run = arrived()
    assert run.case.state == CaseState.post_arrival
    run.ok(ReintegrationPlanned, "recv-mm", measures=PLAN)
    assert run.case.state == CaseState.reintegration
    run.tick(dt.timedelta(days=92))
    run.ok(
        MonitoringVisitRecorded,
        "recv-mm",
        visited_on=run.now.date(),
        economic=0.4,
        social=0.6,
        psychosocial=0.5,
    )
    assert run.case.state == CaseState.monitoring
    assert run.case.status == CaseStatus.FollowUp
    assert run.case.returns is not None
    assert run.case.returns.monitoring_visits[0].social == 0.6
    run.ok(CaseClosed, "recv-mm", closure=CaseStatus.Closed)
    assert run.case.state == CaseState.closed


def test_arrival_is_the_receiving_agency_accepting_the_handover() -> None:
    run = ready_to_depart()
    run.ok(ReturnDeparted, "iom-th")
    assert run.case.owner == "iom-th"
    assert run.refused(ReturnArrived, "iom-th") == RejectionReason.NOT_AUTHORISED
    run.ok(ReturnArrived, "recv-mm")
    assert run.case.owner == "recv-mm"
    assert "iom-th" in run.case.assigned


@pytest.mark.parametrize("missing", ["documents", "fitness", "risk_assessment"])
def test_departure_waits_for_every_pre_departure_step(missing: str) -> None:
    run = Run(return_request())
    if missing != "risk_assessment":
        run.ok(ReturnRiskAssessed, "iom-th", risk_level=ReturnRiskLevel.medium)
    if missing != "documents":
        run.ok(TravelDocumentsIssued, "iom-th")
    if missing != "fitness":
        run.ok(FitnessToTravelAssessed, "iom-th", fit_to_travel=True)
    assert run.refused(ReturnDeparted, "iom-th") == RejectionReason.GUARD_FAILED


def test_a_non_victim_departs_without_a_risk_assessment() -> None:
    run = Run(return_request(trafficking_victim=False, travel_document_held=True))
    run.ok(FitnessToTravelAssessed, "iom-th", fit_to_travel=True)
    run.ok(ReturnDeparted, "iom-th")


def test_high_return_risk_blocks_departure_until_reassessed() -> None:
    run = ready_to_depart()
    run.ok(ReturnRiskAssessed, "iom-th", risk_level=ReturnRiskLevel.high)
    assert run.refused(ReturnDeparted, "iom-th") == RejectionReason.GUARD_FAILED
    run.ok(ReturnRiskAssessed, "iom-th", risk_level=ReturnRiskLevel.medium)
    run.ok(ReturnDeparted, "iom-th")


def test_unfit_to_travel_blocks_departure() -> None:
    run = ready_to_depart()
    run.ok(FitnessToTravelAssessed, "iom-th", fit_to_travel=False)
    assert run.refused(ReturnDeparted, "iom-th") == RejectionReason.GUARD_FAILED


def test_required_escort_must_be_named_at_departure() -> None:
    run = ready_to_depart(escort_required=True)
    assert run.refused(ReturnDeparted, "iom-th") == RejectionReason.GUARD_FAILED
    run.ok(ReturnDeparted, "iom-th", escort_agency="iom-hq")


def test_receiving_agency_may_be_named_at_departure_and_must_be_entitled() -> None:
    run = ready_to_depart(receiving_agency=None)
    assert run.refused(ReturnDeparted, "iom-th") == RejectionReason.GUARD_FAILED
    assert run.refused(ReturnDeparted, "iom-th", receiving_agency="police-th") == (
        RejectionReason.NOT_ENTITLED
    )
    run.ok(ReturnDeparted, "iom-th", receiving_agency="recv-mm")


def test_departure_shares_data_with_the_receiving_agency_only_with_consent() -> None:
    run = ready_to_depart(consent_to_share=False)
    assert run.refused(ReturnDeparted, "iom-th") == RejectionReason.CONSENT_REQUIRED


def test_voluntariness_can_be_withdrawn_until_departure_and_not_after() -> None:
    before = ready_to_depart()
    before.ok(ReturnWithdrawn, "iom-th")
    assert before.case.state == CaseState.withdrawn
    assert before.case.status == CaseStatus.Closed
    after = ready_to_depart()
    after.ok(ReturnDeparted, "iom-th")
    assert after.refused(ReturnWithdrawn, "iom-th") == RejectionReason.INVALID_TRANSITION


def test_a_return_in_transit_cannot_be_closed() -> None:
    run = ready_to_depart()
    run.ok(ReturnDeparted, "iom-th")
    assert run.refused(CaseClosed, "iom-th", closure=CaseStatus.Closed) == (
        RejectionReason.INVALID_TRANSITION
    )


def test_monitoring_needs_a_plan_and_a_real_date() -> None:
    run = arrived()
    visit = {"economic": 0.5, "social": 0.5, "psychosocial": 0.5}
    assert (
        run.refused(MonitoringVisitRecorded, "recv-mm", visited_on=run.now.date(), **visit)
        == RejectionReason.INVALID_TRANSITION
    )
    run.ok(ReintegrationPlanned, "recv-mm", measures=PLAN)
    tomorrow = run.now.date() + dt.timedelta(days=1)
    assert run.refused(MonitoringVisitRecorded, "recv-mm", visited_on=tomorrow, **visit) == (
        RejectionReason.GUARD_FAILED
    )
    before_arrival = run.now.date() - dt.timedelta(days=30)
    assert (
        run.refused(MonitoringVisitRecorded, "recv-mm", visited_on=before_arrival, **visit)
        == RejectionReason.GUARD_FAILED
    )


def test_pre_departure_steps_are_refused_after_departure() -> None:
    run = ready_to_depart()
    run.ok(ReturnDeparted, "iom-th")
    assert run.refused(TravelDocumentsIssued, "iom-th") == RejectionReason.INVALID_TRANSITION
    assert run.refused(ReturnRiskAssessed, "iom-th", risk_level=ReturnRiskLevel.low) == (
        RejectionReason.INVALID_TRANSITION
    )


def test_a_returning_child_gets_child_protection() -> None:
    run = Run(return_request(person=CHILD))
    assert run.case.child
    assert "cp-th" in run.case.assigned


def test_withdrawal_is_never_blocked_and_revokes_an_unanswered_handover() -> None:
    """Found by the property test: a return withdrawn while a handover awaited an answer
    left the case closed with a request open. Withdrawal is the person's right: it goes
    through, and the request is revoked with it."""
    from schemas.cases import HandoverMode, HandoverRequested, ReturnWithdrawn
    from services.cases.domain import violations
    from services.cases.domain.model import HandoverStatus

    run = Run(return_request())
    run.ok(HandoverRequested, "iom-th", to_agency="iom-hq", mode=HandoverMode.referral)
    run.ok(ReturnWithdrawn, "iom-th")
    assert run.case.state == CaseState.withdrawn
    assert [h.status for h in run.case.handovers] == [HandoverStatus.revoked]
    assert violations(run.case) == []
