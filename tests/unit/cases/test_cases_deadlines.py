"""Deadlines and escalation on a fake clock: nothing here sleeps."""

from __future__ import annotations

import datetime as dt

import pytest

from schemas.cases import (
    CaseClosed,
    FitnessToTravelAssessed,
    HandoverMode,
    HandoverRequested,
    MonitoringVisitRecorded,
    ReferralAcknowledged,
    ReintegrationMeasure,
    ReintegrationPlanned,
    ReturnArrived,
    ReturnDeparted,
    ReturnRiskAssessed,
    SarCoordinationAccepted,
    SarPhaseDeclared,
    TravelDocumentsIssued,
)
from schemas.vocab import AgencyKind, CaseStatus, SarPhase
from services.cases.domain import (
    CaseContext,
    FakeClock,
    deadlines_for,
    due_escalations,
    next_due,
    replay,
)
from services.cases.domain.deadlines import add_months
from tests.unit.cases.case_builders import (
    AGENCIES,
    CHILD,
    CTX,
    T0,
    Run,
    referral,
    return_request,
    sar_alert,
)

MINUTE, HOUR, DAY = dt.timedelta(minutes=1), dt.timedelta(hours=1), dt.timedelta(days=1)


def rule_ids(run: Run, ctx: CaseContext = CTX) -> list[str]:
    return [d.rule_id for d in deadlines_for(run.case, ctx)]


def test_unacknowledged_referral_escalates_to_owner_and_fallback_after_24_hours() -> None:
    clock = FakeClock(T0)
    run = Run(referral(), routed_to=["sw-th"], at=clock.now())
    deadlines = deadlines_for(run.case, CTX)
    assert [d.rule_id for d in deadlines] == ["referral-acknowledgement"]
    clock.advance(23 * HOUR + 59 * MINUTE)
    assert due_escalations(deadlines, clock.now()) == []
    clock.advance(MINUTE)
    (escalation,) = due_escalations(deadlines, clock.now())
    assert escalation.escalate_to == ("sw-th", "sw-national")
    assert escalation.serves == "victim-identification-and-protection"
    assert escalation.due_at == T0 + DAY


def test_acknowledging_meets_the_deadline_and_starts_the_next() -> None:
    run = Run(referral(), routed_to=["sw-th"])
    run.tick(2 * HOUR)
    run.ok(ReferralAcknowledged, "sw-th")
    (screening,) = deadlines_for(run.case, CTX)
    assert screening.rule_id == "referral-screening"
    assert screening.due_at == T0 + 2 * HOUR + 3 * DAY


def test_detresfa_alert_needs_an_accepting_rcc_within_ten_minutes() -> None:
    clock = FakeClock(T0)
    run = Run(sar_alert(), at=clock.now())
    deadlines = deadlines_for(run.case, CTX)
    assert [d.rule_id for d in deadlines] == ["sar-coordination-detresfa"]
    clock.advance(10 * MINUTE)
    (escalation,) = due_escalations(deadlines, clock.now())
    assert escalation.escalate_to == ("rcc-a", "jrcc-hq")
    assert escalation.phase == SarPhase.DETRESFA
    run.ok(SarCoordinationAccepted, "rcc-a")
    assert deadlines_for(run.case, CTX) == []


def test_raising_the_phase_restarts_the_clock_at_the_shorter_limit() -> None:
    run = Run(sar_alert(phase=SarPhase.INCERFA))
    (incerfa,) = deadlines_for(run.case, CTX)
    assert incerfa.due_at == T0 + HOUR
    run.tick(30 * MINUTE)
    run.ok(SarPhaseDeclared, "rcc-a", phase=SarPhase.DETRESFA)
    (detresfa,) = deadlines_for(run.case, CTX)
    assert detresfa.due_at == T0 + 40 * MINUTE


def test_unanswered_handover_escalates_to_receiver_its_fallback_and_owner() -> None:
    run = Run(return_request())
    run.ok(HandoverRequested, "iom-th", to_agency="recv-mm", mode=HandoverMode.referral)
    (deadline,) = [d for d in deadlines_for(run.case, CTX) if d.rule_id.endswith("response")]
    assert deadline.escalate_to == ("recv-mm", "recv-mm-hq", "iom-th")
    assert deadline.due_at == T0 + 48 * HOUR


def test_monitoring_visits_are_due_3_6_and_12_months_after_arrival() -> None:
    run = Run(return_request())
    run.ok(ReturnRiskAssessed, "iom-th", risk_level="low")
    run.ok(TravelDocumentsIssued, "iom-th")
    run.ok(FitnessToTravelAssessed, "iom-th", fit_to_travel=True)
    run.ok(ReturnDeparted, "iom-th")
    run.tick(DAY)
    run.ok(ReturnArrived, "recv-mm")
    grace = 14 * DAY
    visits = [d for d in deadlines_for(run.case, CTX) if d.rule_id == "reintegration-monitoring"]
    assert [d.due_at for d in visits] == [
        dt.datetime(2025, 6, 2, 8, tzinfo=dt.UTC) + grace,
        dt.datetime(2025, 9, 2, 8, tzinfo=dt.UTC) + grace,
        dt.datetime(2026, 3, 2, 8, tzinfo=dt.UTC) + grace,
    ]
    assert all(d.escalate_to == ("recv-mm", "recv-mm-hq") for d in visits)
    measure = ReintegrationMeasure(dimension="economic", measure="small_business_grant")
    run.ok(ReintegrationPlanned, "recv-mm", measures=(measure,))
    run.tick(95 * DAY)
    run.ok(
        MonitoringVisitRecorded,
        "recv-mm",
        visited_on=run.now.date(),
        economic=0.3,
        social=0.5,
        psychosocial=0.4,
    )
    remaining = [d.deadline_id for d in deadlines_for(run.case, CTX)]
    assert remaining == ["ret-1:reintegration-monitoring:6m", "ret-1:reintegration-monitoring:12m"]


def test_a_child_case_without_child_protection_escalates() -> None:
    no_cp = {a: info for a, info in AGENCIES.items() if info.kind != AgencyKind.child_protection}
    ctx = CaseContext(agencies=no_cp, policy=CTX.policy)
    run = Run(referral(person=CHILD), routed_to=["sw-th"])
    deadlines = deadlines_for(run.case, ctx)
    assert "referral-child-protection" not in rule_ids(run)  # with the full directory: assigned
    (child,) = [d for d in deadlines if d.rule_id == "referral-child-protection"]
    assert child.due_at == T0 + HOUR


def test_deadlines_survive_a_restart_with_the_same_ids() -> None:
    run = Run(referral(), routed_to=["sw-th"])
    run.ok(HandoverRequested, "sw-th", to_agency="ngo-th", mode=HandoverMode.transfer)
    rebuilt = replay(run.log)
    assert rebuilt is not None
    assert deadlines_for(rebuilt, CTX) == deadlines_for(run.case, CTX)


def test_an_escalation_is_raised_once() -> None:
    run = Run(referral(), routed_to=["sw-th"])
    deadlines = deadlines_for(run.case, CTX)
    later = T0 + 2 * DAY
    (first,) = due_escalations(deadlines, later)
    assert due_escalations(deadlines, later, already_raised={first.deadline_id}) == []


def test_next_due_says_when_to_look_again() -> None:
    run = Run(referral(), routed_to=["sw-th"])
    assert next_due(deadlines_for(run.case, CTX)) == T0 + DAY
    run.ok(CaseClosed, "sw-th", closure=CaseStatus.Closed)
    assert deadlines_for(run.case, CTX) == []
    assert next_due([]) is None


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        (dt.datetime(2025, 1, 31, tzinfo=dt.UTC), 1, dt.datetime(2025, 2, 28, tzinfo=dt.UTC)),
        (dt.datetime(2024, 1, 31, tzinfo=dt.UTC), 1, dt.datetime(2024, 2, 29, tzinfo=dt.UTC)),
        (dt.datetime(2025, 11, 15, tzinfo=dt.UTC), 3, dt.datetime(2026, 2, 15, tzinfo=dt.UTC)),
        (dt.datetime(2025, 3, 1, tzinfo=dt.UTC), 12, dt.datetime(2026, 3, 1, tzinfo=dt.UTC)),
    ],
)
def test_months_are_calendar_months(start: dt.datetime, months: int, expected: dt.datetime) -> None:
    assert add_months(start, months) == expected


def test_the_fake_clock_never_runs_backwards() -> None:
    clock = FakeClock(T0)
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-MINUTE)
