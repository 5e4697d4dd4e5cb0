"""``decide`` and ``apply``: the whole case logic as two pure functions.

``decide(case, message)`` checks an inbound opening event or case action against the case and
returns the events to record (or a rejection, leaving the case unchanged). ``apply(case, event)``
folds one recorded event into the case and never consults the policy or the directory, so
``replay(events)`` rebuilds exactly the state ``decide`` saw. Order of checks: standing, version,
lifecycle, role, then the step's own guard: an agency with no standing on a case learns nothing
about its state.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from schemas.business import FORCED_LABOUR_REPORTED, ForcedLabourReported
from schemas.cases import (
    SYSTEM_AGENCY,
    CaseAction,
    CaseKind,
    CaseOpened,
    CaseState,
    FlagPossibleDuplicate,
    RejectionReason,
    SitrepReceived,
    TransitionRecorded,
    TransitionRejected,
    action_type,
)
from schemas.documents import DOCUMENT_REQUESTED, DocumentRequested
from schemas.referral import REFERRAL_SUBMITTED, VictimReferralSubmitted
from schemas.returns import RETURN_REQUESTED, ReturnRequested
from schemas.sar import SAR_ALERT, SarAlertReceived
from services.cases.domain.lifecycle import TRANSITIONS
from services.cases.domain.lifecycle.protection import choose_child_protection
from services.cases.domain.model import (
    BusinessReportFacts,
    Case,
    DocumentRequestFacts,
    PermittedPurpose,
    ReferralFacts,
    ReturnFacts,
    SarFacts,
    status_of,
    with_assigned,
)
from services.cases.domain.person_key import person_key
from services.cases.domain.transition import CaseContext, FollowUp, Refusal, Transition, Who
from services.routing.policy import opening_owner

Opening = (
    VictimReferralSubmitted
    | ReturnRequested
    | SarAlertReceived
    | ForcedLabourReported
    | DocumentRequested
)
"""Inbound events that open a case (a later SAR alert on an open incident is a SITREP)."""
Message = Opening | CaseAction
CaseEvent = CaseOpened | TransitionRecorded

_OPENING_TYPES: dict[type[Opening], str] = {
    VictimReferralSubmitted: REFERRAL_SUBMITTED,
    ReturnRequested: RETURN_REQUESTED,
    SarAlertReceived: SAR_ALERT,
    ForcedLabourReported: FORCED_LABOUR_REPORTED,
    DocumentRequested: DOCUMENT_REQUESTED,
}


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one message: events to append (and publish), or a rejection to record
    and send back; ``case`` is the state afterwards (unchanged when rejected)."""

    case: Case | None
    events: tuple[CaseEvent, ...] = ()
    rejection: TransitionRejected | None = None
    follow_ups: tuple[FollowUp, ...] = ()

    @property
    def accepted(self) -> bool:
        return self.rejection is None


def decide(
    case: Case | None,
    message: Message,
    *,
    now: dt.datetime,
    ctx: CaseContext,
    routed_to: Sequence[str] = (),
) -> Decision:
    """Decide what one inbound message does to a case.

    ``routed_to``: for a referral or return opening, the agencies the router chose. A referral's
    owner is the first of them (else the reporting agency); a return's owner is the reporting
    programme until the handover on arrival; the others are assigned. Openings are never refused for
    want of directory data: a referral of a child or a distress alert must not be lost.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    attempted = _type_of(message)
    if isinstance(message, Opening):
        if case is None:
            return _open(message, now=now, ctx=ctx, routed_to=routed_to)
        if not isinstance(message, SarAlertReceived):
            return _rejected(
                case,
                message,
                attempted,
                now,
                Refusal(RejectionReason.CASE_EXISTS, "a case with this id is already open"),
            )
        message = SitrepReceived(
            case_id=message.case_id, reporting_agency=message.reporting_agency, sitrep=message
        )
    if case is None:
        return _rejected(
            case,
            message,
            attempted,
            now,
            Refusal(RejectionReason.UNKNOWN_CASE, "no case with this id"),
        )
    if message.case_id != case.case_id:
        raise ValueError("message and case differ in case_id")
    transition = TRANSITIONS[type(message)]
    refusal = _check(case, message, transition, ctx, now)
    if refusal is not None:
        return _rejected(case, message, attempted, now, refusal)
    assigns = transition.assigns(case, message, ctx) if transition.assigns else ()
    evolved = transition.evolve(case, message, now)
    event = TransitionRecorded(
        case_id=case.case_id,
        kind=case.kind,
        version=case.version + 1,
        previous_state=case.state,
        state=(state := transition.target(case, message)),
        status=status_of(state),
        occurred_at=now,
        actor_agency=message.reporting_agency,
        action_type=attempted,
        action=message,
        owner=evolved.owner,
        assigned_added=assigns,
        phase=evolved.sar.phase if evolved.sar else None,
    )
    after = _settled(case, evolved, event)
    follow_ups = transition.follow_ups(after, message, now) if transition.follow_ups else ()
    return Decision(after, (event,), None, follow_ups)


def apply(case: Case | None, event: CaseEvent) -> Case:
    """Fold one recorded event into the case. Raises ValueError on an event that does not
    follow the case (wrong case, version gap): the log is then not this case's log."""
    if isinstance(event, CaseOpened):
        if case is not None:
            raise ValueError(f"case {event.case_id} is already open")
        return _opened(event)
    if case is None or event.case_id != case.case_id or event.version != case.version + 1:
        raise ValueError(f"event version {event.version} does not follow the case")
    evolved = TRANSITIONS[type(event.action)].evolve(case, event.action, event.occurred_at)
    return _settled(case, evolved, event)


def _settled(before: Case, evolved: Case, event: TransitionRecorded) -> Case:
    """The evolved facts plus what the event itself records: state, version, assignments."""
    return replace(
        evolved,
        state=event.state,
        version=event.version,
        updated_at=event.occurred_at,
        state_entered_at=(
            event.occurred_at if event.state != before.state else before.state_entered_at
        ),
        assigned=with_assigned(evolved.assigned, add=event.assigned_added, owner=evolved.owner),
    )


def replay(events: Iterable[CaseEvent]) -> Case | None:
    """The case a log of its events describes (None for an empty log)."""
    case: Case | None = None
    for event in events:
        case = apply(case, event)
    return case


def _type_of(message: Message) -> str:
    if isinstance(message, CaseAction):
        return action_type(message)
    return _OPENING_TYPES[type(message)]


def _check(
    case: Case, action: CaseAction, transition: Transition, ctx: CaseContext, now: dt.datetime
) -> Refusal | None:
    actor = action.reporting_agency
    if transition.who == Who.system:
        if actor != SYSTEM_AGENCY:
            return Refusal(RejectionReason.NOT_AUTHORISED, "only CaseBridge takes this action")
    elif not case.related(actor):
        return Refusal(RejectionReason.NOT_AUTHORISED, "this agency has no standing on the case")
    elif actor == case.reporter:
        return Refusal(RejectionReason.NOT_AUTHORISED, "the business that reported takes no action")
    if action.expected_version is not None and action.expected_version != case.version:
        return Refusal(
            RejectionReason.STALE_VERSION,
            f"expected version {action.expected_version}, the case is at {case.version}",
        )
    if case.kind not in transition.kinds or case.state not in transition.sources:
        return Refusal(
            RejectionReason.INVALID_TRANSITION,
            f"{type(action).__name__} is not allowed for a {case.kind} case in state {case.state}",
        )
    if (transition.who == Who.owner and actor != case.owner) or (
        transition.who == Who.member and actor not in case.members
    ):
        return Refusal(
            RejectionReason.NOT_AUTHORISED, f"only the case's {transition.who} may do this"
        )
    return transition.guard(case, action, ctx, now)


def _rejected(
    case: Case | None, message: Message, attempted: str, now: dt.datetime, refusal: Refusal
) -> Decision:
    return Decision(
        case,
        rejection=TransitionRejected(
            case_id=message.case_id,
            attempted_type=attempted,
            actor_agency=message.reporting_agency,
            reason=refusal.reason,
            message=refusal.message,
            occurred_at=now,
            case_version=case.version if case else None,
            phase=case.sar.phase if case and case.sar else None,
        ),
    )


def _open(
    message: Opening, *, now: dt.datetime, ctx: CaseContext, routed_to: Sequence[str]
) -> Decision:
    owner = opening_owner(message, routed_to)
    if isinstance(message, ForcedLabourReported) and owner == message.reporting_agency:
        refusal = Refusal(RejectionReason.GUARD_FAILED, "no agency was found to act on the report")
        return _rejected(None, message, FORCED_LABOUR_REPORTED, now, refusal)
    reporter = None
    others = [a for a in (*routed_to, message.reporting_agency) if a != owner]
    if isinstance(message, SarAlertReceived):
        kind, state, child, country = CaseKind.sar, CaseState.alert_received, False, None
    elif isinstance(message, ForcedLabourReported):
        # The business is told its report's status; it never works on the case.
        kind, state, child, country = CaseKind.business_report, CaseState.received, False, None
        reporter = message.reporting_agency
        others = [a for a in routed_to if a not in (owner, reporter)]
    else:
        child = message.involves_child()
        if isinstance(message, VictimReferralSubmitted):
            kind, state, country = CaseKind.referral, CaseState.submitted, message.location_country
        elif isinstance(message, DocumentRequested):
            kind, state = CaseKind.document_request, CaseState.requested
            country = message.location_country
        else:
            kind, state, country = CaseKind.returns, CaseState.pre_departure, message.host_country
    if child:
        chosen = choose_child_protection(ctx.agencies, country=country, members=[owner, *others])
        others += [chosen] if chosen else []
    key = None
    if ctx.person_key_secret is not None and isinstance(
        message, VictimReferralSubmitted | ReturnRequested | DocumentRequested
    ):
        key = person_key(message.person, ctx.person_key_secret)
    event = CaseOpened(
        case_id=message.case_id,
        kind=kind,
        state=state,
        occurred_at=now,
        owner=owner,
        assigned=with_assigned(others, owner=owner),
        child=child,
        person_key=key,
        referral=message if isinstance(message, VictimReferralSubmitted) else None,
        return_request=message if isinstance(message, ReturnRequested) else None,
        sar_alert=message if isinstance(message, SarAlertReceived) else None,
        business_report=message if isinstance(message, ForcedLabourReported) else None,
        document_request=message if isinstance(message, DocumentRequested) else None,
        reporter=reporter,
    )
    return Decision(apply(None, event), (event,))


def _opened(event: CaseOpened) -> Case:
    at = event.occurred_at
    case = Case(
        case_id=event.case_id,
        kind=event.kind,
        state=event.state,
        version=1,
        owner=event.owner,
        opened_at=at,
        state_entered_at=at,
        updated_at=at,
        assigned=event.assigned,
        child=event.child,
        person_key=event.person_key,
        reporter=event.reporter,
    )
    opening = event.referral or event.return_request
    if opening is not None and opening.permitted_purposes:
        # Purposes recorded with the opening event (intake checked each against the policy).
        case = replace(
            case,
            permitted_purposes=tuple(
                PermittedPurpose(
                    for_agency=g.for_agency,
                    purpose=g.purpose,
                    legal_basis=g.legal_basis,
                    recorded_by=opening.reporting_agency,
                    recorded_at=at,
                )
                for g in opening.permitted_purposes
            ),
        )
    if (r := event.referral) is not None:
        return replace(
            case,
            consent_to_share=r.consent_to_share,
            person=r.person,
            referral=ReferralFacts(
                location_country=r.location_country,
                adult_consent=r.adult_consent,
                trafficking_status=r.trafficking_status,
                status_decided_by=r.status_decided_by,
                type_of_exploitation=r.type_of_exploitation,
                indicators=r.indicators,
                methods_of_control=r.methods_of_control,
                recruitment_methods=r.recruitment_methods,
            ),
        )
    if (q := event.return_request) is not None:
        return replace(
            case,
            consent_to_share=q.consent_to_share,
            person=q.person,
            returns=ReturnFacts(
                origin_country=q.origin_country,
                host_country=q.host_country,
                trafficking_victim=q.trafficking_victim,
                receiving_agency=q.receiving_agency,
                escort_required=q.escort_required,
                travel_documents_ready=q.travel_document_held,
                reintegration_needs=q.reintegration_needs,
            ),
        )
    if (b := event.business_report) is not None:
        return replace(
            case,
            business_report=BusinessReportFacts(
                site_country=b.site.country,
                sector=b.site.sector,
                supplier_tier=b.site.supplier_tier,
                workers_affected=b.workers_affected,
                indicators=b.indicators,
            ),
        )
    if (d := event.document_request) is not None:
        return replace(
            case,
            consent_to_share=d.consent_to_share,
            person=d.person,
            document_request=DocumentRequestFacts(
                document=d.document,
                issuing_country=d.issuing_country,
                location_country=d.location_country,
                for_return=d.for_return,
            ),
        )
    s = event.sar_alert
    assert s is not None  # CaseOpened validates that the kind's source is set
    return replace(
        case,
        sar=SarFacts(
            phase=s.phase,
            phase_since=at,
            priority=s.priority,
            sitrep_number=s.sitrep_number,
            search_region_country=s.search_region_country,
            persons_at_risk=s.persons_at_risk,
            children_reported=s.children_reported,
        ),
    )


def duplicate_flags(case_id: str, matching_case_ids: Iterable[str]) -> list[FlagPossibleDuplicate]:
    """Internal actions flagging a new case and each case sharing its person key, both ways.
    Decide each against its own case; a flag is for human review and never merges cases."""
    flags: list[FlagPossibleDuplicate] = []
    for other in matching_case_ids:
        if other == case_id:
            continue
        flags.append(
            FlagPossibleDuplicate(
                case_id=case_id, reporting_agency=SYSTEM_AGENCY, other_case_id=other
            )
        )
        flags.append(
            FlagPossibleDuplicate(
                case_id=other, reporting_agency=SYSTEM_AGENCY, other_case_id=case_id
            )
        )
    return flags
