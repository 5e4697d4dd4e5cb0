"""The shape of one guarded transition, shared by every lifecycle module.

A lifecycle is a table ``action type -> Transition``: which case kinds and source states allow
the action, who may take it, what must hold (guard), the target state and how the case's facts
change (evolve). ``decide`` reads the guards; ``apply`` only evolves, so replaying the log never
consults anything but the events.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from schemas.cases import (
    CaseAction,
    CaseKind,
    CaseState,
    PossibleDuplicateFlagged,
    RejectionReason,
    ScreeningReferralOpened,
)
from services.cases.domain.model import AgencyInfo, Case
from services.cases.domain.policy import CasePolicy
from services.privacy.policy import DataSharingPolicy
from services.privacy.policy import load_policy as load_data_sharing_policy

FollowUp = ScreeningReferralOpened | PossibleDuplicateFlagged
"""Events a transition asks the lead to publish besides the transition itself."""


@dataclass(frozen=True, slots=True)
class CaseContext:
    """Everything ``decide`` consults besides the case: the agency directory, the case policy,
    the data-sharing policy (the packaged one unless given) and the key for pseudonymous person
    keys (held outside the database)."""

    agencies: Mapping[str, AgencyInfo]
    policy: CasePolicy
    person_key_secret: bytes | None = None
    data_sharing: DataSharingPolicy = field(default_factory=load_data_sharing_policy)


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: RejectionReason
    message: str


class Who(StrEnum):
    """Which agencies may take an action (finer checks, e.g. "the receiver", are guards)."""

    owner = "owner"
    member = "member"
    related = "related"
    """Any agency with standing: members, handover receivers, a return's receiving agency."""
    system = "system"


def _unchanged(case: Case, action: Any, at: dt.datetime) -> Case:
    return case


def _no_guard(case: Case, action: Any, ctx: CaseContext, now: dt.datetime) -> Refusal | None:
    return None


def _stay(case: Case, action: Any) -> CaseState:
    return case.state


@dataclass(frozen=True, slots=True)
class Transition:
    kinds: frozenset[CaseKind]
    sources: frozenset[CaseState]
    who: Who
    target: Callable[[Case, Any], CaseState] = _stay
    evolve: Callable[[Case, Any, dt.datetime], Case] = _unchanged
    guard: Callable[[Case, Any, CaseContext, dt.datetime], Refusal | None] = _no_guard
    assigns: Callable[[Case, Any, CaseContext], tuple[str, ...]] | None = None
    """Agencies CaseBridge assigns as a consequence; recorded in the event for replay."""
    follow_ups: Callable[[Case, Any, dt.datetime], tuple[FollowUp, ...]] | None = None
    """Given the case after the transition."""


def to(state: CaseState) -> Callable[[Case, Any], CaseState]:
    """A target that does not depend on the action."""

    def target(case: Case, action: Any) -> CaseState:
        return state

    return target


Transitions = Mapping[type[CaseAction], Transition]


def refuse(reason: RejectionReason, message: str) -> Refusal:
    return Refusal(reason, message)


def guard_failed(message: str) -> Refusal:
    return Refusal(RejectionReason.GUARD_FAILED, message)
