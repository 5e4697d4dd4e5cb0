"""Business reports of forced-labour indicators: received, acknowledged, assessed, inspection
scheduled, inspected with its outcome, closed. The labour inspectorate that owns the report
acts; the business that reported is told each status and nothing else. Presumed victims found
at an inspection are referred through the referral flow, and each referral naming the report
is linked to it; a report whose inspection identified presumed victims closes only once a
referral is linked."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

from schemas.cases import (
    CaseKind,
    CaseState,
    InspectionRecorded,
    InspectionScheduled,
    ReferralLinked,
    ReportAcknowledged,
    ReportAssessed,
    ReportAssessment,
)
from services.cases.domain.model import BusinessReportFacts, Case
from services.cases.domain.transition import (
    CaseContext,
    Refusal,
    Transition,
    Transitions,
    Who,
    guard_failed,
    to,
)

INSPECTION_FOLLOWS_ASSESSMENT = "inspection-follows-assessment"
VICTIMS_REFERRED = "presumed-victims-referred"
_REPORT = frozenset({CaseKind.business_report})
_INSPECTED_OR_SCHEDULED = frozenset({CaseState.inspection_scheduled, CaseState.inspected})


def facts(case: Case) -> BusinessReportFacts:
    if case.business_report is None:
        raise ValueError(f"case {case.case_id} has no business report facts")
    return case.business_report


def _set(case: Case, **changes: Any) -> Case:
    return replace(case, business_report=replace(facts(case), **changes))


def _schedule_guard(
    case: Case, action: InspectionScheduled, ctx: CaseContext, now: dt.datetime
) -> Refusal | None:
    if facts(case).assessment != ReportAssessment.inspection_warranted:
        return guard_failed(
            f"the report was not assessed as warranting an inspection "
            f"(rule {INSPECTION_FOLLOWS_ASSESSMENT})"
        )
    if action.scheduled_for < now.date():
        return guard_failed("an inspection cannot be scheduled in the past")
    return None


def _inspection_guard(
    case: Case, action: InspectionRecorded, ctx: CaseContext, now: dt.datetime
) -> Refusal | None:
    if action.inspected_on > now.date():
        return guard_failed("an inspection cannot be recorded before it happens")
    return None


def _link_guard(
    case: Case, action: ReferralLinked, ctx: CaseContext, now: dt.datetime
) -> Refusal | None:
    if action.referral_case_id in facts(case).linked_referrals:
        return guard_failed("the referral is already linked to this report")
    return None


def close_guard(case: Case) -> Refusal | None:
    """A report is closed after an assessment that needs no inspection, or after the
    inspection; presumed victims must have been referred first."""
    f = facts(case)
    if case.state == CaseState.assessed and f.assessment == ReportAssessment.inspection_warranted:
        return guard_failed("the report warrants an inspection: record it before closing")
    if case.state not in {CaseState.assessed, CaseState.inspected}:
        return guard_failed("a report is closed after its assessment or its inspection")
    if f.presumed_victims and not f.linked_referrals:
        return guard_failed(
            "the inspection identified presumed victims: refer them first "
            f"(rule {VICTIMS_REFERRED})"
        )
    return None


TRANSITIONS: Transitions = {
    ReportAcknowledged: Transition(
        _REPORT, frozenset({CaseState.received}), Who.owner, to(CaseState.acknowledged)
    ),
    ReportAssessed: Transition(
        _REPORT,
        frozenset({CaseState.acknowledged}),
        Who.owner,
        to(CaseState.assessed),
        lambda case, a, at: _set(case, assessment=a.assessment),
    ),
    InspectionScheduled: Transition(
        _REPORT,
        frozenset({CaseState.assessed, CaseState.inspection_scheduled}),
        Who.owner,
        to(CaseState.inspection_scheduled),
        lambda case, a, at: _set(case, inspection_scheduled_for=a.scheduled_for),
        _schedule_guard,
    ),
    InspectionRecorded: Transition(
        _REPORT,
        frozenset({CaseState.inspection_scheduled}),
        Who.owner,
        to(CaseState.inspected),
        lambda case, a, at: _set(
            case,
            inspected_on=a.inspected_on,
            inspection_outcome=a.outcome,
            presumed_victims=a.presumed_victims,
        ),
        _inspection_guard,
    ),
    ReferralLinked: Transition(
        _REPORT,
        _INSPECTED_OR_SCHEDULED,
        Who.member,
        evolve=lambda case, a, at: _set(
            case, linked_referrals=(*facts(case).linked_referrals, a.referral_case_id)
        ),
        guard=_link_guard,
    ),
}
