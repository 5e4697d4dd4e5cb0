"""Erasure of a person's data at the data-protection officer's request, in any state.

The case stays (its coordination history is needed and holds no personal data): the person,
the person key and the duplicate links leave it, and every case linked to it as a possible
duplicate or the same person loses the link, so no case points at an erased person. The data
key that sealed the person's data at rest is destroyed by the cases service in the same
transaction (services/privacy/vault.py), which is what makes the older events unreadable.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import replace

from schemas.cases import (
    SYSTEM_AGENCY,
    CaseKind,
    DuplicateLinkRemoved,
    PersonalDataErased,
)
from services.cases.domain.model import STATES, Case
from services.cases.domain.transition import (
    CaseContext,
    Refusal,
    Transition,
    Transitions,
    Who,
    guard_failed,
)

_PERSON_KINDS = frozenset({CaseKind.referral, CaseKind.returns, CaseKind.document_request})
"""Kinds whose cases hold a person (SAR incidents and business reports hold no one)."""
_ANY_STATE = frozenset().union(*(STATES[kind] for kind in _PERSON_KINDS))


def linked_cases(case: Case) -> tuple[str, ...]:
    """The cases this one names as a possible duplicate or as the same person."""
    return tuple(dict.fromkeys((*case.possible_duplicate_of, *case.same_person_as)))


def _erasable(
    case: Case, action: PersonalDataErased, ctx: CaseContext, now: dt.datetime
) -> Refusal | None:
    if case.person is None and case.person_key is None and not linked_cases(case):
        return guard_failed("the case holds no personal data: already erased")
    return None


def _erase(case: Case, action: PersonalDataErased, at: dt.datetime) -> Case:
    return replace(case, person=None, person_key=None, possible_duplicate_of=(), same_person_as=())


def _linked(
    case: Case, action: DuplicateLinkRemoved, ctx: CaseContext, now: dt.datetime
) -> Refusal | None:
    if action.other_case_id not in linked_cases(case):
        return guard_failed("no link to that case")
    return None


def _unlink(case: Case, action: DuplicateLinkRemoved, at: dt.datetime) -> Case:
    other = action.other_case_id
    return replace(
        case,
        possible_duplicate_of=tuple(c for c in case.possible_duplicate_of if c != other),
        same_person_as=tuple(c for c in case.same_person_as if c != other),
    )


def unlink_actions(case: Case, erased: Iterable[str]) -> list[DuplicateLinkRemoved]:
    """The internal actions that remove `case`'s links to the erased cases (decide them one
    after the other, each against the case the previous one left)."""
    gone = set(erased)
    return [
        DuplicateLinkRemoved(
            case_id=case.case_id, reporting_agency=SYSTEM_AGENCY, other_case_id=other
        )
        for other in linked_cases(case)
        if other in gone
    ]


TRANSITIONS: Transitions = {
    PersonalDataErased: Transition(
        _PERSON_KINDS, _ANY_STATE, Who.system, evolve=_erase, guard=_erasable
    ),
    DuplicateLinkRemoved: Transition(
        _PERSON_KINDS, _ANY_STATE, Who.system, evolve=_unlink, guard=_linked
    ),
}
