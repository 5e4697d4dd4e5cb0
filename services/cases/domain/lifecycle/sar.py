"""SAR incident (ICAO Annex 12 / IAMSAR): alert received, coordination accepted, rescue under
way, persons rescued, disembarked at a place of safety, concluded. The phase (INCERFA, ALERFA,
DETRESFA) is raised or lowered at any open point; disembarkation opens victim screening
downstream and nothing here waits for screening."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

from schemas.cases import (
    CaseKind,
    CaseState,
    SarConcluded,
    SarCoordinationAccepted,
    SarDisembarked,
    SarPersonsRescued,
    SarPhaseDeclared,
    SarRescueStarted,
    ScreeningReferralOpened,
    SitrepReceived,
)
from services.cases.domain.model import Case, SarFacts, open_states
from services.cases.domain.transition import (
    CaseContext,
    FollowUp,
    Refusal,
    Transition,
    Transitions,
    Who,
    guard_failed,
    to,
)

RCC_KEEPS_COORDINATION = "rcc-keeps-coordination"
SCREENING_AFTER_DISEMBARKATION = "screening-after-disembarkation"
_SAR = frozenset({CaseKind.sar})
_OPEN = open_states(CaseKind.sar)
_RESCUING = frozenset(
    {CaseState.rescue_under_way, CaseState.persons_rescued, CaseState.disembarked}
)


def facts(case: Case) -> SarFacts:
    if case.sar is None:
        raise ValueError(f"case {case.case_id} has no SAR facts")
    return case.sar


def aboard(case: Case) -> int:
    """Rescued persons not yet disembarked."""
    f = facts(case)
    return f.persons_rescued - f.persons_disembarked


def _set(case: Case, **changes: Any) -> Case:
    return replace(case, sar=replace(facts(case), **changes))


def _with_phase(case: Case, phase: Any, at: dt.datetime) -> Case:
    if phase == facts(case).phase:
        return case
    return _set(case, phase=phase, phase_since=at)


def _sitrep_guard(
    case: Case, action: SitrepReceived, ctx: CaseContext, now: dt.datetime
) -> Refusal | None:
    sitrep, f = action.sitrep, facts(case)
    if sitrep.sitrep_number <= f.sitrep_number:
        return guard_failed(
            f"SITREP {sitrep.sitrep_number} is not newer than SITREP {f.sitrep_number}"
        )
    if sitrep.coordinating_rcc != case.owner:
        return guard_failed(
            "coordination moves only when another RCC accepts a transfer "
            f"(rule {RCC_KEEPS_COORDINATION})"
        )
    return None


def _sitrep(case: Case, action: SitrepReceived, at: dt.datetime) -> Case:
    s = action.sitrep
    case = _with_phase(case, s.phase, at)
    return _set(
        case,
        priority=s.priority,
        sitrep_number=s.sitrep_number,
        persons_at_risk=s.persons_at_risk,
        children_reported=s.children_reported or facts(case).children_reported,
    )


def _phase_guard(
    case: Case, action: SarPhaseDeclared, ctx: CaseContext, now: dt.datetime
) -> Refusal | None:
    if action.phase == facts(case).phase:
        return guard_failed(f"the incident is already in {action.phase}")
    return None


def _disembark_guard(
    case: Case, action: SarDisembarked, ctx: CaseContext, now: dt.datetime
) -> Refusal | None:
    if action.persons > aboard(case):
        return guard_failed(f"only {aboard(case)} rescued persons are awaiting disembarkation")
    return None


def _disembark(case: Case, action: SarDisembarked, at: dt.datetime) -> Case:
    f = facts(case)
    return _set(
        case,
        persons_disembarked=f.persons_disembarked + action.persons,
        places_of_safety=(*f.places_of_safety, action.place_of_safety),
    )


def _disembarked_state(case: Case, action: SarDisembarked) -> CaseState:
    if action.persons == aboard(case):
        return CaseState.disembarked
    return CaseState.persons_rescued


def _screening(case: Case, action: SarDisembarked, at: dt.datetime) -> tuple[FollowUp, ...]:
    """One screening referral per landing, with a stable id so a replay opens no second one."""
    f = facts(case)
    return (
        ScreeningReferralOpened(
            screening_id=f"{case.case_id}/screening/{len(f.places_of_safety)}",
            incident_id=case.case_id,
            coordinating_rcc=case.owner,
            place_of_safety=action.place_of_safety,
            country=action.country,
            persons=action.persons,
            children_reported=f.children_reported,
            disembarked_at=at,
        ),
    )


def _conclude_guard(
    case: Case, action: SarConcluded, ctx: CaseContext, now: dt.datetime
) -> Refusal | None:
    if aboard(case):
        return guard_failed(f"{aboard(case)} rescued persons are not yet disembarked")
    return None


TRANSITIONS: Transitions = {
    SitrepReceived: Transition(_SAR, _OPEN, Who.owner, evolve=_sitrep, guard=_sitrep_guard),
    SarPhaseDeclared: Transition(
        _SAR,
        _OPEN,
        Who.owner,
        evolve=lambda case, a, at: _with_phase(case, a.phase, at),
        guard=_phase_guard,
    ),
    SarCoordinationAccepted: Transition(
        _SAR,
        frozenset({CaseState.alert_received}),
        Who.owner,
        to(CaseState.coordinated),
        lambda case, a, at: _set(case, coordination_accepted=True),
    ),
    SarRescueStarted: Transition(
        _SAR, frozenset({CaseState.coordinated}), Who.owner, to(CaseState.rescue_under_way)
    ),
    SarPersonsRescued: Transition(
        _SAR,
        _RESCUING,
        Who.owner,
        to(CaseState.persons_rescued),
        lambda case, a, at: _set(case, persons_rescued=facts(case).persons_rescued + a.count),
    ),
    SarDisembarked: Transition(
        _SAR,
        frozenset({CaseState.persons_rescued}),
        Who.owner,
        _disembarked_state,
        _disembark,
        _disembark_guard,
        follow_ups=_screening,
    ),
    SarConcluded: Transition(
        _SAR, _OPEN, Who.owner, to(CaseState.concluded), guard=_conclude_guard
    ),
}
