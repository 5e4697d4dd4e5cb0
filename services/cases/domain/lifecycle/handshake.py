"""Referral handshake between agencies (after Primero): requested, then accepted, declined or
revoked; a referral is later done. A transfer moves ownership only when the receiver accepts,
and no personal data moves without consent to share or an authorised override."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

from schemas.cases import (
    CaseKind,
    CaseState,
    HandoverAccepted,
    HandoverCompleted,
    HandoverDeclined,
    HandoverMode,
    HandoverRequested,
    HandoverRevoked,
    RejectionReason,
)
from schemas.vocab import AgencyKind
from services.cases.domain.model import (
    STATES,
    Case,
    Handover,
    HandoverStatus,
    open_states,
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
)

CHILD_WORKFLOW = "child-workflow"
CONSENT_GATE = "consent-to-share-gate"
ENTITLEMENT = "receiver-entitlement"
_ALL_KINDS = frozenset(CaseKind)
_OPEN = open_states(*CaseKind)
_ANY_STATE = frozenset().union(*STATES.values())


def consent_gate(case: Case, agency_id: str) -> Refusal | None:
    """Personal data reaches another agency only with consent or an override for it. SAR
    incidents and business reports carry no one's personal data, so they may always move."""
    if case.kind in (CaseKind.sar, CaseKind.business_report) or case.may_receive_personal_data(
        agency_id
    ):
        return None
    return refuse(
        RejectionReason.CONSENT_REQUIRED,
        "consent to share is not recorded and no override is recorded for the receiving "
        f"agency (rule {CONSENT_GATE})",
    )


def entitlement(case: Case, agency_id: str, ctx: CaseContext) -> Refusal | None:
    """The receiver must exist and be of a kind entitled to this kind of case."""
    info = ctx.agencies.get(agency_id)
    if info is None:
        return refuse(RejectionReason.NOT_ENTITLED, "the receiving agency is not in the directory")
    if info.kind not in ctx.policy.sharing.entitled_kinds.get(case.kind, frozenset()):
        return refuse(
            RejectionReason.NOT_ENTITLED,
            f"a {info.kind} agency is not entitled to {case.kind} cases (rule {ENTITLEMENT})",
        )
    return None


def _with_handover(case: Case, old: Handover, new: Handover) -> Case:
    index = max(i for i, h in enumerate(case.handovers) if h is old)
    return replace(case, handovers=(*case.handovers[:index], new, *case.handovers[index + 1 :]))


def _request_guard(
    case: Case, action: HandoverRequested, ctx: CaseContext, now: dt.datetime
) -> Refusal | None:
    to_agency = action.to_agency
    if to_agency == case.owner:
        return guard_failed("the owner cannot hand the case over to itself")
    if case.kind == CaseKind.sar and action.mode != HandoverMode.transfer:
        return guard_failed("SAR coordination moves only by transfer to another RCC")
    if action.mode == HandoverMode.referral and to_agency in case.assigned:
        return guard_failed("the agency is already assigned to the case")
    pending = case.requested_handovers()
    if any(h.to_agency == to_agency for h in pending):
        return guard_failed("a request to that agency is already open")
    if action.mode == HandoverMode.transfer and any(
        h.mode == HandoverMode.transfer for h in pending
    ):
        return guard_failed("another transfer is pending")
    return entitlement(case, to_agency, ctx) or consent_gate(case, to_agency)


def _request(case: Case, action: HandoverRequested, at: dt.datetime) -> Case:
    handover = Handover(
        to_agency=action.to_agency,
        from_agency=action.reporting_agency,
        mode=action.mode,
        status=HandoverStatus.requested,
        requested_at=at,
    )
    return replace(case, handovers=(*case.handovers, handover))


def _own_request(case: Case, agency_id: str, status: HandoverStatus) -> Handover | Refusal:
    """The latest handover addressed to the acting agency, if it is in ``status``."""
    handover = case.latest_handover_to(agency_id)
    if handover is None:
        return refuse(RejectionReason.NOT_AUTHORISED, "no handover was requested of this agency")
    if handover.status != status:
        return refuse(
            RejectionReason.INVALID_TRANSITION, f"the handover is {handover.status}, not {status}"
        )
    return handover


def _answer_guard(
    case: Case, action: HandoverAccepted | HandoverDeclined, ctx: CaseContext, now: dt.datetime
) -> Refusal | None:
    found = _own_request(case, action.reporting_agency, HandoverStatus.requested)
    if isinstance(found, Refusal):
        return found
    if isinstance(action, HandoverAccepted):
        # Consent may have been withdrawn since the request: data moves now, so check now.
        return consent_gate(case, action.reporting_agency)
    return None


def _accept(case: Case, action: HandoverAccepted, at: dt.datetime) -> Case:
    agency = action.reporting_agency
    old = case.latest_handover_to(agency)
    assert old is not None
    case = _with_handover(case, old, replace(old, status=HandoverStatus.accepted, answered_at=at))
    if old.mode == HandoverMode.referral:
        return replace(case, assigned=with_assigned(case.assigned, add=[agency], owner=case.owner))
    case = replace(
        case,
        owner=agency,
        assigned=with_assigned(case.assigned, add=[case.owner], owner=agency),
    )
    if case.sar is not None:
        case = replace(case, sar=replace(case.sar, coordination_accepted=True))
    return case


def _accepted_state(case: Case, action: HandoverAccepted) -> CaseState:
    """An RCC accepting a transferred alert is the RCC accepting coordination."""
    if case.state == CaseState.alert_received:
        return CaseState.coordinated
    return case.state


def _decline(case: Case, action: HandoverDeclined, at: dt.datetime) -> Case:
    old = case.latest_handover_to(action.reporting_agency)
    assert old is not None
    new = replace(old, status=HandoverStatus.declined, answered_at=at, decline_reason=action.reason)
    return _with_handover(case, old, new)


def _revoke_guard(
    case: Case, action: HandoverRevoked, ctx: CaseContext, now: dt.datetime
) -> Refusal | None:
    handover = case.latest_handover_to(action.to_agency)
    if handover is None or handover.status != HandoverStatus.requested:
        return refuse(RejectionReason.INVALID_TRANSITION, "no open request to that agency")
    if handover.from_agency != action.reporting_agency:
        return refuse(RejectionReason.NOT_AUTHORISED, "only the requesting agency may revoke")
    return None


def _revoke(case: Case, action: HandoverRevoked, at: dt.datetime) -> Case:
    old = case.latest_handover_to(action.to_agency)
    assert old is not None
    return _with_handover(case, old, replace(old, status=HandoverStatus.revoked, answered_at=at))


def _complete_guard(
    case: Case, action: HandoverCompleted, ctx: CaseContext, now: dt.datetime
) -> Refusal | None:
    found = _own_request(case, action.reporting_agency, HandoverStatus.accepted)
    if isinstance(found, Refusal):
        return found
    if found.mode != HandoverMode.referral or found.to_agency == case.owner:
        return refuse(RejectionReason.INVALID_TRANSITION, "only a referral can be completed")
    if case.child and not _other_child_protection(case, found.to_agency, ctx):
        return guard_failed(
            f"a child's case keeps a child-protection agency (rule {CHILD_WORKFLOW})"
        )
    return None


def _other_child_protection(case: Case, leaving: str, ctx: CaseContext) -> bool:
    """Whether a child-protection agency stays on the case when ``leaving`` leaves (or the
    leaving agency is not child protection at all)."""

    def is_cp(agency_id: str) -> bool:
        info = ctx.agencies.get(agency_id)
        return info is not None and info.kind == AgencyKind.child_protection

    return not is_cp(leaving) or any(is_cp(a) for a in case.members - {leaving})


def _complete(case: Case, action: HandoverCompleted, at: dt.datetime) -> Case:
    agency = action.reporting_agency
    old = case.latest_handover_to(agency)
    assert old is not None
    case = _with_handover(case, old, replace(old, status=HandoverStatus.done))
    return replace(case, assigned=with_assigned(case.assigned, remove=[agency], owner=case.owner))


TRANSITIONS: Transitions = {
    HandoverRequested: Transition(
        _ALL_KINDS, _OPEN, Who.owner, evolve=_request, guard=_request_guard
    ),
    HandoverAccepted: Transition(
        _ALL_KINDS, _OPEN, Who.related, _accepted_state, _accept, _answer_guard
    ),
    HandoverDeclined: Transition(
        _ALL_KINDS, _OPEN, Who.related, evolve=_decline, guard=_answer_guard
    ),
    HandoverRevoked: Transition(
        _ALL_KINDS, _OPEN, Who.related, evolve=_revoke, guard=_revoke_guard
    ),
    HandoverCompleted: Transition(
        _ALL_KINDS, _ANY_STATE, Who.related, evolve=_complete, guard=_complete_guard
    ),
}


def no_pending_handover(
    case: Case, action: object, ctx: CaseContext, now: dt.datetime
) -> Refusal | None:
    """Closing with a request unanswered would strand the receiver: revoke it first."""
    if case.requested_handovers():
        return guard_failed("a handover request is unanswered: revoke it before closing")
    return None
