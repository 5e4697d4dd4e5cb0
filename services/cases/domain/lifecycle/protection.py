"""Protection steps any referral or return may take at any open point: consent (given or
withdrawn), audited sharing overrides, permitted purposes for restricted agencies, age
assessment (the child workflow), and possible-duplicate flags and their human review."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import replace

from schemas.cases import (
    AgeAssessed,
    CaseKind,
    ConsentRecorded,
    DuplicateReviewed,
    FlagPossibleDuplicate,
    PermittedPurposeRecorded,
    PossibleDuplicateFlagged,
    RejectionReason,
    SharingOverrideRecorded,
)
from schemas.vocab import AgencyKind
from services.cases.domain.lifecycle import handshake
from services.cases.domain.model import (
    STATES,
    Agencies,
    Case,
    PermittedPurpose,
    SharingOverride,
    open_states,
)
from services.cases.domain.transition import (
    CaseContext,
    FollowUp,
    Refusal,
    Transition,
    Transitions,
    Who,
    guard_failed,
    refuse,
)

CHILD_WORKFLOW = handshake.CHILD_WORKFLOW  # one rule, enforced in both modules
NON_PUNISHMENT = "non-punishment-visibility"
DUPLICATES = "duplicates-reviewed-not-merged"
_PERSON_KINDS = frozenset({CaseKind.referral, CaseKind.returns})
_OPEN = open_states(*_PERSON_KINDS)
_ANY_STATE = STATES[CaseKind.referral] | STATES[CaseKind.returns]


def choose_child_protection(
    agencies: Agencies, *, country: str | None, members: Iterable[str]
) -> str | None:
    """The child-protection agency to assign (rule child-workflow): none if one is already on
    the case, else one in the person's country, else any; None if the directory has none."""
    members = set(members)
    of_kind = sorted(
        (a for a in agencies.values() if a.kind == AgencyKind.child_protection),
        key=lambda a: a.agency_id,
    )
    if any(a.agency_id in members for a in of_kind) or not of_kind:
        return None
    local = [a for a in of_kind if a.country == country]
    return (local or of_kind)[0].agency_id


def person_country(case: Case) -> str | None:
    """Where the person is now: decides which national child-protection agency joins."""
    if case.referral is not None:
        return case.referral.location_country
    if case.returns is not None:
        return case.returns.host_country
    return None


def _consent_guard(
    case: Case, action: ConsentRecorded, ctx: CaseContext, now: dt.datetime
) -> Refusal | None:
    if action.adult_consent is not None and case.referral is None:
        return guard_failed("adult_consent applies to referrals only")
    return None


def _consent(case: Case, action: ConsentRecorded, at: dt.datetime) -> Case:
    if action.consent_to_share is not None:
        case = replace(case, consent_to_share=action.consent_to_share)
    if action.adult_consent is not None and case.referral is not None:
        case = replace(case, referral=replace(case.referral, adult_consent=action.adult_consent))
    return case


def _override_guard(
    case: Case, action: SharingOverrideRecorded, ctx: CaseContext, now: dt.datetime
) -> Refusal | None:
    actor = ctx.agencies.get(action.reporting_agency)
    sharing = ctx.policy.sharing
    allowed = sharing.override_kinds | (sharing.child_override_kinds if case.child else set())
    if actor is None or actor.kind not in allowed:
        return refuse(RejectionReason.NOT_AUTHORISED, "this agency may not override consent")
    if action.for_agency not in ctx.agencies:
        return guard_failed("the agency the override is for is not in the directory")
    return None


def _override(case: Case, action: SharingOverrideRecorded, at: dt.datetime) -> Case:
    override = SharingOverride(
        for_agency=action.for_agency,
        recorded_by=action.reporting_agency,
        legal_basis=action.legal_basis,
        reason=action.reason,
        recorded_at=at,
    )
    return replace(case, sharing_overrides=(*case.sharing_overrides, override))


def _purpose_guard(
    case: Case, action: PermittedPurposeRecorded, ctx: CaseContext, now: dt.datetime
) -> Refusal | None:
    restricted = ctx.data_sharing.restricted_kinds
    actor = ctx.agencies.get(action.reporting_agency)
    if actor is None or actor.kind in restricted:
        return refuse(
            RejectionReason.NOT_AUTHORISED,
            f"an immigration or enforcement agency cannot record a purpose (rule {NON_PUNISHMENT})",
        )
    target = ctx.agencies.get(action.for_agency)
    if target is None or target.kind not in restricted:
        return guard_failed("purposes are recorded only for immigration or enforcement agencies")
    if not ctx.data_sharing.purpose_permitted(action.purpose, target.kind):
        return guard_failed(f"{action.purpose} is not a permitted purpose for a {target.kind}")
    return None


def _purpose(case: Case, action: PermittedPurposeRecorded, at: dt.datetime) -> Case:
    purpose = PermittedPurpose(
        for_agency=action.for_agency,
        purpose=action.purpose,
        legal_basis=action.legal_basis,
        recorded_by=action.reporting_agency,
        recorded_at=at,
    )
    return replace(case, permitted_purposes=(*case.permitted_purposes, purpose))


def _child_protection(case: Case, action: AgeAssessed, ctx: CaseContext) -> tuple[str, ...]:
    if not action.assessed_as_child:
        return ()
    chosen = choose_child_protection(
        ctx.agencies, country=person_country(case), members=case.members
    )
    return () if chosen is None else (chosen,)


def _flag_guard(
    case: Case, action: FlagPossibleDuplicate, ctx: CaseContext, now: dt.datetime
) -> Refusal | None:
    other = action.other_case_id
    if other == case.case_id:
        return guard_failed("a case is not a duplicate of itself")
    if other in case.possible_duplicate_of or other in case.same_person_as:
        return guard_failed("already flagged")
    return None


def _flagged(case: Case, action: FlagPossibleDuplicate, at: dt.datetime) -> tuple[FollowUp, ...]:
    return (
        PossibleDuplicateFlagged(
            case_id=case.case_id,
            other_case_id=action.other_case_id,
            owner=case.owner,
            flagged_at=at,
        ),
    )


def _review_guard(
    case: Case, action: DuplicateReviewed, ctx: CaseContext, now: dt.datetime
) -> Refusal | None:
    if action.other_case_id not in case.possible_duplicate_of:
        return guard_failed(f"no open duplicate flag for that case (rule {DUPLICATES})")
    return None


def _review(case: Case, action: DuplicateReviewed, at: dt.datetime) -> Case:
    other = action.other_case_id
    return replace(
        case,
        possible_duplicate_of=tuple(c for c in case.possible_duplicate_of if c != other),
        same_person_as=(*case.same_person_as, other) if action.same_person else case.same_person_as,
    )


TRANSITIONS: Transitions = {
    ConsentRecorded: Transition(
        _PERSON_KINDS, _ANY_STATE, Who.member, evolve=_consent, guard=_consent_guard
    ),
    SharingOverrideRecorded: Transition(
        _PERSON_KINDS, _OPEN, Who.member, evolve=_override, guard=_override_guard
    ),
    PermittedPurposeRecorded: Transition(
        _PERSON_KINDS, _OPEN, Who.member, evolve=_purpose, guard=_purpose_guard
    ),
    AgeAssessed: Transition(
        _PERSON_KINDS,
        _OPEN,
        Who.member,
        evolve=lambda case, a, at: replace(case, child=a.assessed_as_child),
        assigns=_child_protection,
    ),
    FlagPossibleDuplicate: Transition(
        _PERSON_KINDS,
        _ANY_STATE,
        Who.system,
        evolve=lambda case, a, at: replace(
            case, possible_duplicate_of=(*case.possible_duplicate_of, a.other_case_id)
        ),
        guard=_flag_guard,
        follow_ups=_flagged,
    ),
    DuplicateReviewed: Transition(
        _PERSON_KINDS, _ANY_STATE, Who.member, evolve=_review, guard=_review_guard
    ),
}
