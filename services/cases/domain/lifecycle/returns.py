"""Assisted voluntary return and reintegration: pre-departure (risk assessment, travel
documents, fitness to travel; withdrawable), travel, post-arrival (the receiving agency takes the
case over), reintegration planning, monitoring, closed. States are the AVRR stages."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

from schemas.cases import (
    CaseKind,
    CaseState,
    FitnessToTravelAssessed,
    MonitoringVisitRecorded,
    ReintegrationPlanned,
    RejectionReason,
    ReturnArrived,
    ReturnDeparted,
    ReturnRiskAssessed,
    ReturnRiskLevel,
    ReturnWithdrawn,
    TravelDocumentsIssued,
)
from services.cases.domain.lifecycle.handshake import consent_gate, entitlement
from services.cases.domain.model import (
    Case,
    HandoverStatus,
    MonitoringVisit,
    ReturnFacts,
    with_assigned,
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

VOLUNTARY_RETURN = "voluntary-return"
DOCUMENT_GATE = "travel-document-gates-departure"
_RETURN = frozenset({CaseKind.returns})
_PRE_DEPARTURE = frozenset({CaseState.pre_departure})


def facts(case: Case) -> ReturnFacts:
    if case.returns is None:
        raise ValueError(f"case {case.case_id} has no return facts")
    return case.returns


def _set(case: Case, **changes: Any) -> Case:
    return replace(case, returns=replace(facts(case), **changes))


def _departure_guard(
    case: Case, action: ReturnDeparted, ctx: CaseContext, now: dt.datetime
) -> Refusal | None:
    f = facts(case)
    awaited = f.open_travel_document_requests()
    if awaited:
        return refuse(
            RejectionReason.DOCUMENT_REQUEST_OPEN,
            f"the travel-document request {', '.join(awaited)} is still open: departure waits "
            f"until it is collected or refused (rule {DOCUMENT_GATE})",
        )
    problems = []
    if not f.travel_documents_ready:
        problems.append("travel documents are not issued")
    if f.fit_to_travel is not True:
        problems.append("fitness to travel is not confirmed")
    if f.trafficking_victim and f.risk_level is None:
        problems.append("a trafficking victim needs a return risk assessment")
    if f.risk_level == ReturnRiskLevel.high:
        problems.append("the return risk is assessed as high")
    if f.escort_required and action.escort_agency is None:
        problems.append("an escort is required")
    receiving = action.receiving_agency or f.receiving_agency
    if receiving is None:
        problems.append("no receiving agency is named")
    if problems:
        return guard_failed(f"{'; '.join(problems)} (rule {VOLUNTARY_RETURN})")
    assert receiving is not None
    return entitlement(case, receiving, ctx) or consent_gate(case, receiving)


def _depart(case: Case, action: ReturnDeparted, at: dt.datetime) -> Case:
    f = facts(case)
    return _set(
        case,
        departed_at=at,
        receiving_agency=action.receiving_agency or f.receiving_agency,
        escort_agency=action.escort_agency,
    )


def _arrival_guard(
    case: Case, action: ReturnArrived, ctx: CaseContext, now: dt.datetime
) -> Refusal | None:
    agency = action.reporting_agency
    if agency != facts(case).receiving_agency:
        return refuse(RejectionReason.NOT_AUTHORISED, "only the receiving agency confirms arrival")
    if any(h.to_agency == agency for h in case.requested_handovers()):
        return guard_failed("answer the open handover request to the receiving agency first")
    return None


def _arrive(case: Case, action: ReturnArrived, at: dt.datetime) -> Case:
    """The receiving agency's acceptance is a transfer: it becomes the owner."""
    agency = action.reporting_agency
    case = replace(
        case, owner=agency, assigned=with_assigned(case.assigned, add=[case.owner], owner=agency)
    )
    return _set(case, arrived_at=at)


def _visit_guard(
    case: Case, action: MonitoringVisitRecorded, ctx: CaseContext, now: dt.datetime
) -> Refusal | None:
    arrived = facts(case).arrived_at
    if arrived is not None and action.visited_on < arrived.date():
        return guard_failed("a monitoring visit cannot precede arrival")
    if action.visited_on > now.date():
        return guard_failed("a monitoring visit cannot be in the future")
    return None


def _visit(case: Case, action: MonitoringVisitRecorded, at: dt.datetime) -> Case:
    visit = MonitoringVisit(action.visited_on, action.economic, action.social, action.psychosocial)
    return _set(case, monitoring_visits=(*facts(case).monitoring_visits, visit))


def _withdraw(case: Case, action: ReturnWithdrawn, at: dt.datetime) -> Case:
    """Withdrawal is the person's right until departure and is never blocked: any handover
    still awaiting an answer is revoked with it, so no receiver is left holding a request."""
    return replace(
        case,
        handovers=tuple(
            replace(h, status=HandoverStatus.revoked, answered_at=at)
            if h.status == HandoverStatus.requested
            else h
            for h in case.handovers
        ),
    )


TRANSITIONS: Transitions = {
    ReturnRiskAssessed: Transition(
        _RETURN,
        _PRE_DEPARTURE,
        Who.member,
        evolve=lambda case, a, at: _set(case, risk_level=a.risk_level),
    ),
    TravelDocumentsIssued: Transition(
        _RETURN,
        _PRE_DEPARTURE,
        Who.member,
        evolve=lambda case, a, at: _set(case, travel_documents_ready=True),
    ),
    FitnessToTravelAssessed: Transition(
        _RETURN,
        _PRE_DEPARTURE,
        Who.member,
        evolve=lambda case, a, at: _set(case, fit_to_travel=a.fit_to_travel),
    ),
    ReturnWithdrawn: Transition(
        _RETURN, _PRE_DEPARTURE, Who.member, to(CaseState.withdrawn), _withdraw
    ),
    ReturnDeparted: Transition(
        _RETURN, _PRE_DEPARTURE, Who.owner, to(CaseState.travel), _depart, _departure_guard
    ),
    ReturnArrived: Transition(
        _RETURN,
        frozenset({CaseState.travel}),
        Who.related,
        to(CaseState.post_arrival),
        _arrive,
        _arrival_guard,
    ),
    ReintegrationPlanned: Transition(
        _RETURN,
        frozenset({CaseState.post_arrival, CaseState.reintegration}),
        Who.member,
        to(CaseState.reintegration),
        lambda case, a, at: _set(case, reintegration_plan=a.measures),
    ),
    MonitoringVisitRecorded: Transition(
        _RETURN,
        frozenset({CaseState.reintegration, CaseState.monitoring}),
        Who.member,
        to(CaseState.monitoring),
        _visit,
        _visit_guard,
    ),
}
