"""Business reports of forced-labour indicators: the labour inspectorate's lifecycle, the
business that reported kept as reporter (told the status, never a member), and the link from a
referral of a presumed victim back to the report."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from pydantic import ValidationError

from schemas.cases import (
    CaseAction,
    CaseClosed,
    CaseKind,
    CaseState,
    CaseUpdate,
    HandoverAccepted,
    HandoverCompleted,
    HandoverDeclined,
    HandoverMode,
    HandoverRequested,
    HandoverRevoked,
    InspectionOutcome,
    InspectionRecorded,
    InspectionScheduled,
    ReferralAcknowledged,
    ReferralLinked,
    RejectionReason,
    ReportAcknowledged,
    ReportAssessed,
    ReportAssessment,
)
from schemas.vocab import CaseStatus
from services.cases.domain import Case, case_updates, decide, link_actions, view_for, violations
from tests.unit.cases.case_builders import AGENCIES, CTX, T0, Run, act, business_report, referral

INSPECTORATE = "li-id"
BUSINESS = "biz-th"
WARRANTED = ReportAssessment.inspection_warranted
FORCED_LABOUR = InspectionOutcome.forced_labour_identified
# What a CaseUpdate carries about the update itself rather than about the case.
ENVELOPE = frozenset(
    {"recipient", "case_id", "kind", "version", "status", "occurred_at", "withheld", "role"}
)


def received(**changes: Any) -> Run:
    return Run(business_report(**changes), routed_to=[INSPECTORATE])


def assessed(assessment: ReportAssessment = WARRANTED) -> Run:
    run = received()
    run.ok(ReportAcknowledged, INSPECTORATE)
    run.ok(ReportAssessed, INSPECTORATE, assessment=assessment)
    return run


def scheduled() -> Run:
    run = assessed()
    run.ok(InspectionScheduled, INSPECTORATE, scheduled_for=run.now.date() + dt.timedelta(days=7))
    run.tick(dt.timedelta(days=7))
    return run


def inspected(
    outcome: InspectionOutcome = InspectionOutcome.no_violation_found, presumed_victims: int = 0
) -> Run:
    run = scheduled()
    run.ok(
        InspectionRecorded,
        INSPECTORATE,
        inspected_on=run.now.date(),
        outcome=outcome,
        presumed_victims=presumed_victims,
    )
    return run


def with_victims() -> Run:
    return inspected(FORCED_LABOUR, presumed_victims=3)


def closing(run: Run) -> str:
    return run.refused(CaseClosed, INSPECTORATE, closure=CaseStatus.Closed)


# --- Lifecycle -----------------------------------------------------------------------------------


def test_report_runs_from_received_to_closed() -> None:
    run = received()
    assert run.case.kind == CaseKind.business_report
    assert run.case.state == CaseState.received
    assert run.case.owner == INSPECTORATE
    assert run.ok(ReportAcknowledged, INSPECTORATE).state == CaseState.acknowledged
    assert run.ok(ReportAssessed, INSPECTORATE, assessment=WARRANTED).state == CaseState.assessed
    on = run.now.date() + dt.timedelta(days=7)
    case = run.ok(InspectionScheduled, INSPECTORATE, scheduled_for=on)
    assert case.state == CaseState.inspection_scheduled
    run.tick(dt.timedelta(days=7))
    case = run.ok(
        InspectionRecorded,
        INSPECTORATE,
        inspected_on=on,
        outcome=InspectionOutcome.labour_violations_found,
    )
    assert case.state == CaseState.inspected
    case = run.ok(CaseClosed, INSPECTORATE, closure=CaseStatus.Closed)
    assert case.state == CaseState.closed
    assert case.status == CaseStatus.Closed
    facts = case.business_report
    assert facts is not None
    assert facts.assessment == WARRANTED
    assert facts.inspection_scheduled_for == on
    assert facts.inspected_on == on
    assert facts.inspection_outcome == InspectionOutcome.labour_violations_found


@pytest.mark.parametrize(
    "assessment",
    [ReportAssessment.insufficient_information, ReportAssessment.outside_mandate],
)
def test_a_report_needing_no_inspection_closes_after_its_assessment(
    assessment: ReportAssessment,
) -> None:
    run = assessed(assessment)
    run.ok(CaseClosed, INSPECTORATE, closure=CaseStatus.Closed)
    assert run.case.state == CaseState.closed


@pytest.mark.parametrize(
    "assessment",
    [ReportAssessment.insufficient_information, ReportAssessment.outside_mandate],
)
def test_an_inspection_is_scheduled_only_for_a_report_that_warrants_one(
    assessment: ReportAssessment,
) -> None:
    run = assessed(assessment)
    assert run.refused(InspectionScheduled, INSPECTORATE, scheduled_for=run.now.date()) == (
        RejectionReason.GUARD_FAILED
    )


def test_an_inspection_cannot_be_scheduled_in_the_past() -> None:
    run = assessed()
    yesterday = run.now.date() - dt.timedelta(days=1)
    assert run.refused(InspectionScheduled, INSPECTORATE, scheduled_for=yesterday) == (
        RejectionReason.GUARD_FAILED
    )
    run.ok(InspectionScheduled, INSPECTORATE, scheduled_for=run.now.date())


def test_an_inspection_can_be_rescheduled() -> None:
    run = scheduled()
    later = run.now.date() + dt.timedelta(days=3)
    run.ok(InspectionScheduled, INSPECTORATE, scheduled_for=later)
    assert run.case.state == CaseState.inspection_scheduled
    assert run.case.business_report is not None
    assert run.case.business_report.inspection_scheduled_for == later


def test_steps_cannot_be_skipped() -> None:
    """Assessment follows acknowledgement, an inspection is recorded once scheduled."""
    run = received()
    assert run.refused(ReportAssessed, INSPECTORATE, assessment=WARRANTED) == (
        RejectionReason.INVALID_TRANSITION
    )
    warranted = assessed()
    assert warranted.refused(
        InspectionRecorded,
        INSPECTORATE,
        inspected_on=warranted.now.date(),
        outcome=InspectionOutcome.no_violation_found,
    ) == (RejectionReason.INVALID_TRANSITION)


def test_an_inspection_cannot_be_recorded_before_it_happens() -> None:
    run = scheduled()
    tomorrow = run.now.date() + dt.timedelta(days=1)
    outcome = InspectionOutcome.no_violation_found
    assert run.refused(
        InspectionRecorded, INSPECTORATE, inspected_on=tomorrow, outcome=outcome
    ) == (RejectionReason.GUARD_FAILED)
    run.ok(InspectionRecorded, INSPECTORATE, inspected_on=run.now.date(), outcome=outcome)


@pytest.mark.parametrize(
    "outcome", [InspectionOutcome.no_violation_found, InspectionOutcome.labour_violations_found]
)
def test_presumed_victims_need_the_outcome_forced_labour(outcome: InspectionOutcome) -> None:
    fields = {"inspected_on": T0.date(), "outcome": outcome, "presumed_victims": 2}
    with pytest.raises(ValidationError, match="forced_labour_identified"):
        act(InspectionRecorded, "rep-1", INSPECTORATE, **fields)


@pytest.mark.parametrize("early", ["received", "acknowledged"])
def test_a_report_is_not_closed_before_its_assessment(early: str) -> None:
    run = received()
    if early == "acknowledged":
        run.ok(ReportAcknowledged, INSPECTORATE)
    assert closing(run) == RejectionReason.GUARD_FAILED


def test_a_warranted_report_is_not_closed_before_the_inspection() -> None:
    run = assessed()
    assert closing(run) == RejectionReason.GUARD_FAILED
    run.ok(InspectionScheduled, INSPECTORATE, scheduled_for=run.now.date())
    assert closing(run) == RejectionReason.GUARD_FAILED


def test_presumed_victims_are_referred_before_the_report_closes() -> None:
    run = with_victims()
    assert closing(run) == RejectionReason.GUARD_FAILED
    assert run.last.rejection is not None
    assert "presumed-victims-referred" in run.last.rejection.message
    run.ok(ReferralLinked, INSPECTORATE, referral_case_id="ref-1")
    run.ok(CaseClosed, INSPECTORATE, closure=CaseStatus.Closed)
    assert run.case.state == CaseState.closed


def test_a_report_is_closed_never_closed_referred() -> None:
    run = inspected()
    assert run.refused(
        CaseClosed, INSPECTORATE, closure=CaseStatus.ClosedReferred, referred_to="li-id-hq"
    ) == (RejectionReason.GUARD_FAILED)
    run.ok(CaseClosed, INSPECTORATE, closure=CaseStatus.Closed)


# --- Linking referrals ---------------------------------------------------------------------------


def test_a_referral_is_linked_once() -> None:
    run = with_victims()
    run.ok(ReferralLinked, INSPECTORATE, referral_case_id="ref-1")
    assert run.refused(ReferralLinked, INSPECTORATE, referral_case_id="ref-1") == (
        RejectionReason.GUARD_FAILED
    )
    run.ok(ReferralLinked, INSPECTORATE, referral_case_id="ref-2")
    assert run.case.business_report is not None
    assert run.case.business_report.linked_referrals == ("ref-1", "ref-2")


def test_only_an_agency_on_the_report_links_a_referral_to_it() -> None:
    run = with_victims()
    assert run.refused(ReferralLinked, "police-th", referral_case_id="ref-1") == (
        RejectionReason.NOT_AUTHORISED
    )


def test_a_referral_is_linked_only_once_an_inspection_is_under_way() -> None:
    run = assessed()
    assert run.refused(ReferralLinked, INSPECTORATE, referral_case_id="ref-1") == (
        RejectionReason.INVALID_TRANSITION
    )


def test_a_referral_naming_the_report_asks_for_the_link() -> None:
    message = referral("ref-1", reporting_agency=INSPECTORATE, business_report_id="rep-1")
    opened = Run(message, routed_to=["sw-th"])
    assert link_actions(None, opened.case, message) == [
        ReferralLinked(case_id="rep-1", reporting_agency=INSPECTORATE, referral_case_id="ref-1")
    ]


def test_the_link_a_referral_asks_for_is_accepted_by_the_report() -> None:
    """The link is decided against the report as the lead will: with its actor's standing."""
    message = referral("ref-1", reporting_agency=INSPECTORATE, business_report_id="rep-1")
    [link] = link_actions(None, Run(message, routed_to=["sw-th"]).case, message)
    report = with_victims()
    assert report.do(link).accepted
    assert report.case.business_report is not None
    assert report.case.business_report.linked_referrals == ("ref-1",)
    report.ok(CaseClosed, INSPECTORATE, closure=CaseStatus.Closed)


def test_a_referral_naming_no_report_asks_for_no_link() -> None:
    message = referral("ref-1")
    assert link_actions(None, Run(message, routed_to=["sw-th"]).case, message) == []


def test_only_the_opening_of_a_referral_links_it() -> None:
    message = referral("ref-1", reporting_agency=INSPECTORATE, business_report_id="rep-1")
    run = Run(message, routed_to=["sw-th"])
    before = run.case
    action = act(ReferralAcknowledged, run.case, "sw-th")
    assert run.do(action).accepted
    assert link_actions(before, run.case, action) == []


# --- The business that reported ------------------------------------------------------------------


def test_the_business_is_the_reporter_not_a_member() -> None:
    run = Run(business_report(), routed_to=[INSPECTORATE, "li-id-hq"])
    assert run.case.reporter == BUSINESS
    assert run.case.owner == INSPECTORATE
    assert run.case.assigned == ("li-id-hq",)
    assert BUSINESS not in run.case.members
    assert violations(run.case, AGENCIES) == []


def test_a_report_nobody_but_the_business_could_act_on_is_refused() -> None:
    """Were nothing routed, the business would own its own report: the opening is refused
    instead (back to the business, which may send it again), and no case exists."""
    decision = decide(None, business_report(), now=T0, ctx=CTX, routed_to=(BUSINESS,))
    assert decision.case is None
    assert decision.rejection is not None
    assert decision.rejection.reason == RejectionReason.GUARD_FAILED
    assert decide(None, business_report(), now=T0, ctx=CTX, routed_to=(INSPECTORATE,)).accepted


def _at(state: CaseState) -> Run:
    if state == CaseState.received:
        return received()
    if state == CaseState.acknowledged:
        run = received()
        run.ok(ReportAcknowledged, INSPECTORATE)
        return run
    if state == CaseState.assessed:
        return assessed()
    if state == CaseState.inspection_scheduled:
        return scheduled()
    run = with_victims()
    if state == CaseState.closed:
        run.ok(ReferralLinked, INSPECTORATE, referral_case_id="ref-1")
        run.ok(CaseClosed, INSPECTORATE, closure=CaseStatus.Closed)
    return run


REPORT_STATES = [
    CaseState.received,
    CaseState.acknowledged,
    CaseState.assessed,
    CaseState.inspection_scheduled,
    CaseState.inspected,
    CaseState.closed,
]
ACTIONS: list[tuple[type[CaseAction], dict[str, Any]]] = [
    (ReportAcknowledged, {}),
    (ReportAssessed, {"assessment": WARRANTED}),
    (InspectionScheduled, {"scheduled_for": T0.date() + dt.timedelta(days=30)}),
    (InspectionRecorded, {"inspected_on": T0.date(), "outcome": FORCED_LABOUR}),
    (ReferralLinked, {"referral_case_id": "ref-9"}),
    (CaseClosed, {"closure": CaseStatus.Closed}),
    (HandoverRequested, {"to_agency": "li-id-hq", "mode": HandoverMode.transfer}),
    (HandoverAccepted, {}),
    (HandoverDeclined, {"reason": "not_ours"}),
    (HandoverRevoked, {"to_agency": "li-id-hq"}),
    (HandoverCompleted, {}),
]
# Each action where the inspectorate itself could take it: only the actor differs.
ALLOWED_TO_THE_OWNER: list[tuple[CaseState, type[CaseAction], dict[str, Any]]] = [
    (CaseState.received, ReportAcknowledged, {}),
    (CaseState.acknowledged, ReportAssessed, {"assessment": WARRANTED}),
    (CaseState.assessed, InspectionScheduled, {"scheduled_for": T0.date()}),
    (
        CaseState.inspection_scheduled,
        InspectionRecorded,
        {"inspected_on": T0.date(), "outcome": FORCED_LABOUR, "presumed_victims": 1},
    ),
    (CaseState.inspected, ReferralLinked, {"referral_case_id": "ref-1"}),
]


@pytest.mark.parametrize(
    ("state", "action", "fields"),
    ALLOWED_TO_THE_OWNER,
    ids=[a.__name__ for _, a, _ in ALLOWED_TO_THE_OWNER],
)
def test_the_business_may_not_act_on_its_report(
    state: CaseState, action: type[CaseAction], fields: dict[str, Any]
) -> None:
    run = _at(state)
    assert run.refused(action, BUSINESS, **fields) == RejectionReason.NOT_AUTHORISED
    run.ok(action, INSPECTORATE, **fields)


def test_the_business_may_not_hand_its_report_over() -> None:
    run = received()
    assert run.refused(
        HandoverRequested, BUSINESS, to_agency="li-id-hq", mode=HandoverMode.transfer
    ) == (RejectionReason.NOT_AUTHORISED)


@pytest.mark.parametrize("mode", [HandoverMode.transfer, HandoverMode.referral])
def test_the_inspectorate_may_hand_a_report_to_another_inspectorate(mode: HandoverMode) -> None:
    run = received()
    run.ok(HandoverRequested, INSPECTORATE, to_agency="li-id-hq", mode=mode)
    run.ok(HandoverAccepted, "li-id-hq")


def test_the_business_may_not_close_its_report() -> None:
    run = assessed(ReportAssessment.insufficient_information)
    assert run.refused(CaseClosed, BUSINESS, closure=CaseStatus.Closed) == (
        RejectionReason.NOT_AUTHORISED
    )
    run.ok(CaseClosed, INSPECTORATE, closure=CaseStatus.Closed)


@pytest.mark.parametrize("state", REPORT_STATES)
def test_no_action_of_the_business_is_accepted_in_any_state(state: CaseState) -> None:
    run = _at(state)
    for action, fields in ACTIONS:
        run.refused(action, BUSINESS, **fields)
    assert run.case.reporter == BUSINESS


def test_every_action_of_the_business_is_refused_as_not_authorised() -> None:
    reasons = {
        (state.value, action.__name__): _at(state).refused(action, BUSINESS, **fields)
        for state in REPORT_STATES
        for action, fields in ACTIONS
    }
    assert {k: r for k, r in reasons.items() if r != RejectionReason.NOT_AUTHORISED} == {}


# --- What the business is told -------------------------------------------------------------------


def _update_for(agency: str, before: Case, run: Run) -> CaseUpdate:
    updates = case_updates(
        before,
        run.case,
        change="org.casebridge.case.inspection_recorded.v1",
        occurred_at=run.now,
        ctx=CTX,
    )
    [update] = [u for u in updates if u.recipient == agency]
    return update


def _worked_on() -> tuple[Case, Run]:
    """A report with an assigned agency, inspected with presumed victims, one referral linked:
    the case just before the inspection, and the run after the link."""
    run = Run(business_report(), routed_to=[INSPECTORATE, "li-id-hq"])
    run.ok(ReportAcknowledged, INSPECTORATE)
    run.ok(ReportAssessed, INSPECTORATE, assessment=WARRANTED)
    run.ok(InspectionScheduled, INSPECTORATE, scheduled_for=run.now.date())
    before = run.case
    run.ok(
        InspectionRecorded,
        INSPECTORATE,
        inspected_on=run.now.date(),
        outcome=FORCED_LABOUR,
        presumed_victims=3,
    )
    run.ok(ReferralLinked, INSPECTORATE, referral_case_id="ref-1")
    return before, run


def test_the_business_is_told_only_what_reporter_sees_allows() -> None:
    before, run = _worked_on()
    update = _update_for(BUSINESS, before, run)
    assert update.role == "reporter"
    sent = set(update.model_dump(exclude_defaults=True)) - ENVELOPE
    assert sent <= CTX.data_sharing.reporter_sees
    assert update.state == CaseState.inspected
    assert update.inspection_outcome == FORCED_LABOUR


def test_the_business_is_never_told_of_victims_referrals_or_who_works_on_it() -> None:
    before, run = _worked_on()
    update = _update_for(BUSINESS, before, run)
    assert update.presumed_victims is None
    assert update.linked_referrals is None
    assert update.assigned == ()
    assert {"presumed_victims", "linked_referrals", "assigned"} <= set(update.withheld)
    text = update.model_dump_json()
    assert "ref-1" not in text
    assert "li-id-hq" not in text


def test_the_inspectorate_is_told_what_the_business_is_not() -> None:
    """The control for the two tests above: the facts are there to withhold."""
    before, run = _worked_on()
    update = _update_for(INSPECTORATE, before, run)
    assert update.role == "owner"
    assert update.presumed_victims == 3
    assert update.linked_referrals == ("ref-1",)
    assert update.assigned == ("li-id-hq",)


def test_view_for_the_business_is_the_reporter_view() -> None:
    _, run = _worked_on()
    update = view_for(run.case, BUSINESS, change=None, occurred_at=run.now, ctx=CTX)
    assert update.role == "reporter"
    assert update.presumed_victims is None
    assert set(update.model_dump(exclude_defaults=True)) - ENVELOPE <= (
        CTX.data_sharing.reporter_sees
    )


def test_the_business_is_told_each_status_and_no_more() -> None:
    """A change of state reaches the business; a linked referral, which leaves the state as it
    was, does not."""
    run = with_victims()
    before = run.case
    run.ok(ReferralLinked, INSPECTORATE, referral_case_id="ref-1")
    same_state = case_updates(before, run.case, change=None, occurred_at=run.now, ctx=CTX)
    assert [u.recipient for u in same_state] == [INSPECTORATE]
    before = run.case
    run.ok(CaseClosed, INSPECTORATE, closure=CaseStatus.Closed)
    closed = case_updates(before, run.case, change=None, occurred_at=run.now, ctx=CTX)
    assert [u.recipient for u in closed] == [BUSINESS, INSPECTORATE]
