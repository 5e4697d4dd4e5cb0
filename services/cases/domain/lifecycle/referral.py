"""Victim-identification referral: submitted, acknowledged, screened, status decided,
assistance planned and in progress, closed or closed-referred (HTCDS terms throughout)."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import TypeVar

from schemas.cases import (
    AssistanceImplemented,
    AssistancePlanned,
    CaseClosed,
    CaseKind,
    CaseState,
    ReferralAcknowledged,
    RejectionReason,
    ScreeningRecorded,
    TraffickingStatusDecided,
)
from schemas.vocab import CaseStatus, TraffickingStatus
from services.cases.domain.lifecycle.business import close_guard as report_close_guard
from services.cases.domain.lifecycle.handshake import no_pending_handover
from services.cases.domain.model import (
    VICTIM_STATUSES,
    Case,
    ReferralFacts,
    open_states,
)
from services.cases.domain.transition import (
    CaseContext,
    Refusal,
    Transition,
    Transitions,
    Who,
    guard_failed,
    refuse,
    to,
)

ADULT_CONSENT_GATE = "adult-consent-gate"
_REFERRAL = frozenset({CaseKind.referral})
_ASSISTANCE = frozenset({CaseState.assistance_planned, CaseState.assistance_in_progress})
_DECIDED = frozenset({CaseState.status_decided}) | _ASSISTANCE
T = TypeVar("T")


def facts(case: Case) -> ReferralFacts:
    if case.referral is None:
        raise ValueError(f"case {case.case_id} has no referral facts")
    return case.referral


def _merged(old: tuple[T, ...], new: tuple[T, ...]) -> tuple[T, ...]:
    return old + tuple(x for x in new if x not in old)


def _adult_consent(
    case: Case, action: object, ctx: CaseContext, now: dt.datetime
) -> Refusal | None:
    """Screening and decisions need an adult's consent to the referral; a child's do not."""
    if case.child or facts(case).adult_consent:
        return None
    return refuse(
        RejectionReason.CONSENT_REQUIRED,
        f"the adult's consent to referral is not recorded (rule {ADULT_CONSENT_GATE})",
    )


def _screen(case: Case, action: ScreeningRecorded, at: dt.datetime) -> Case:
    f = facts(case)
    return replace(
        case,
        referral=replace(
            f,
            indicators=_merged(f.indicators, action.indicators),
            type_of_exploitation=_merged(f.type_of_exploitation, action.type_of_exploitation),
            methods_of_control=_merged(f.methods_of_control, action.methods_of_control),
            recruitment_methods=_merged(f.recruitment_methods, action.recruitment_methods),
        ),
    )


def _decided_state(case: Case, action: TraffickingStatusDecided) -> CaseState:
    """A victim keeps any assistance under way; a not-a-victim decision leaves assistance."""
    if action.trafficking_status in VICTIM_STATUSES and case.state in _ASSISTANCE:
        return case.state
    return CaseState.status_decided


def _decide(case: Case, action: TraffickingStatusDecided, at: dt.datetime) -> Case:
    return replace(
        case,
        referral=replace(
            facts(case),
            trafficking_status=action.trafficking_status,
            status_decided_by=action.status_decided_by,
            grounds=action.grounds,
        ),
    )


def _is_victim(case: Case, action: object, ctx: CaseContext, now: dt.datetime) -> Refusal | None:
    if facts(case).trafficking_status in VICTIM_STATUSES:
        return None
    return guard_failed(
        f"assistance needs status {TraffickingStatus.PossibleVictimOfTrafficking} or "
        f"{TraffickingStatus.ActualVictimOfTrafficking}"
    )


def _plan(case: Case, action: AssistancePlanned, at: dt.datetime) -> Case:
    f = facts(case)
    return replace(
        case, referral=replace(f, services_planned=_merged(f.services_planned, action.services))
    )


def _planned_state(case: Case, action: AssistancePlanned) -> CaseState:
    return case.state if case.state in _ASSISTANCE else CaseState.assistance_planned


def _only_planned(
    case: Case, action: AssistanceImplemented, ctx: CaseContext, now: dt.datetime
) -> Refusal | None:
    unplanned = sorted(set(action.services) - set(facts(case).services_planned))
    if unplanned:
        return guard_failed(f"services not planned: {', '.join(unplanned)}")
    return _is_victim(case, action, ctx, now)


def _implement(case: Case, action: AssistanceImplemented, at: dt.datetime) -> Case:
    f = facts(case)
    return replace(
        case,
        referral=replace(f, services_implemented=_merged(f.services_implemented, action.services)),
    )


def _close_guard(
    case: Case, action: CaseClosed, ctx: CaseContext, now: dt.datetime
) -> Refusal | None:
    if case.kind == CaseKind.business_report:
        if action.closure != CaseStatus.Closed:
            return guard_failed("a business report is closed, never closed-referred")
        return report_close_guard(case) or no_pending_handover(case, action, ctx, now)
    return no_pending_handover(case, action, ctx, now)


def closed_state(case: Case, action: CaseClosed) -> CaseState:
    if action.closure == CaseStatus.ClosedReferred:
        return CaseState.closed_referred
    return CaseState.closed


TRANSITIONS: Transitions = {
    ReferralAcknowledged: Transition(
        _REFERRAL, frozenset({CaseState.submitted}), Who.owner, to(CaseState.acknowledged)
    ),
    ScreeningRecorded: Transition(
        _REFERRAL,
        frozenset({CaseState.acknowledged, CaseState.screened}),
        Who.member,
        to(CaseState.screened),
        _screen,
        _adult_consent,
    ),
    TraffickingStatusDecided: Transition(
        _REFERRAL,
        frozenset({CaseState.screened}) | _DECIDED,
        Who.member,
        _decided_state,
        _decide,
        _adult_consent,
    ),
    AssistancePlanned: Transition(
        _REFERRAL, _DECIDED, Who.member, _planned_state, _plan, _is_victim
    ),
    AssistanceImplemented: Transition(
        _REFERRAL,
        _ASSISTANCE,
        Who.member,
        to(CaseState.assistance_in_progress),
        _implement,
        _only_planned,
    ),
    CaseClosed: Transition(
        frozenset({CaseKind.referral, CaseKind.returns, CaseKind.business_report}),
        open_states(CaseKind.referral, CaseKind.returns, CaseKind.business_report)
        - {CaseState.travel},
        Who.owner,
        closed_state,
        guard=_close_guard,
    ),
}
