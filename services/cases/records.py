"""Outgoing records of the cases service: pure functions from domain results to CloudEvents.

Every id is derived from what it answers (case and version, deadline, rejected message) and
the source of that (the message's source, or this service's for what it originates), so a
record published twice after a crash is recognisably the same record, and two agencies that
use the same message id never get records under one id.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from pydantic import BaseModel

from schemas.cases import (
    CaseOpened,
    CaseUpdate,
    EscalationRaised,
    PossibleDuplicateFlagged,
    ScreeningReferralOpened,
    TransitionRecorded,
    TransitionRejected,
)
from schemas.topics import CASE_EVENTS, updates_topic
from services.runtime.dead_letter import derived_id
from services.runtime.kafka import Outgoing

CASE_EVENTS_TOPIC = CASE_EVENTS.name

SOURCE = "casebridge/cases"
_TYPES: dict[type[BaseModel], str] = {
    CaseOpened: "org.casebridge.cases.case_opened.v1",
    TransitionRecorded: "org.casebridge.cases.transition_recorded.v1",
    TransitionRejected: "org.casebridge.cases.transition_rejected.v1",
    EscalationRaised: "org.casebridge.cases.escalation_raised.v1",
    PossibleDuplicateFlagged: "org.casebridge.cases.possible_duplicate_flagged.v1",
    ScreeningReferralOpened: "org.casebridge.cases.screening_referral_opened.v1",
    CaseUpdate: "org.casebridge.cases.case_update.v1",
}


def type_of(model: BaseModel) -> str:
    return _TYPES[type(model)]


def _withheld(model: BaseModel) -> set[str]:
    """A case update omits what its recipient may not see: absent, not merely empty."""
    return set(model.withheld) if isinstance(model, CaseUpdate) else set()


def _record(
    topic: str,
    model: BaseModel,
    *,
    event_id: str,
    case_id: str,
    occurred_at: dt.datetime,
    causation: str | None = None,
) -> Outgoing:
    headers = {
        "content-type": "application/json",
        "ce_specversion": "1.0",
        "ce_id": event_id,
        "ce_source": SOURCE,
        "ce_type": type_of(model),
        "ce_time": occurred_at.isoformat(),
        "ce_subject": case_id,
    }
    if causation:
        headers["ce_causationid"] = causation
    return Outgoing(
        topic=topic,
        key=case_id.encode(),
        value=model.model_dump_json(exclude_none=True, exclude=_withheld(model)).encode(),
        headers=headers,
    )


def case_event_record(event: CaseOpened | TransitionRecorded, *, causation: str) -> Outgoing:
    return _record(
        CASE_EVENTS_TOPIC,
        event,
        event_id=derived_id("case-event", SOURCE, event.case_id, str(event.version)),
        case_id=event.case_id,
        occurred_at=event.occurred_at,
        causation=causation,
    )


def update_records(updates: Iterable[CaseUpdate], *, causation: str) -> list[Outgoing]:
    """Each agency's view on its own updates topic: only what it is entitled to see."""
    return [
        _record(
            updates_topic(u.recipient),
            u,
            event_id=derived_id("case-update", SOURCE, u.case_id, str(u.version), u.recipient),
            case_id=u.case_id,
            occurred_at=u.occurred_at,
            causation=causation,
        )
        for u in updates
    ]


def rejection_record(
    rejection: TransitionRejected, *, causation: str, causation_source: str
) -> Outgoing:
    """The refusal goes back to the sender, on its own updates topic."""
    return _record(
        updates_topic(rejection.actor_agency),
        rejection,
        event_id=derived_id("rejected", causation_source, causation),
        case_id=rejection.case_id,
        occurred_at=rejection.occurred_at,
        causation=causation,
    )


def escalation_records(escalation: EscalationRaised) -> list[Outgoing]:
    """To the owning agency and to each fallback or supervising agency."""
    recipients = dict.fromkeys((escalation.owner, *escalation.escalate_to))
    return [
        _record(
            updates_topic(agency),
            escalation,
            event_id=derived_id("escalation", SOURCE, escalation.deadline_id, agency),
            case_id=escalation.case_id,
            occurred_at=escalation.raised_at,
        )
        for agency in recipients
    ]


def follow_up_records(
    follow_up: ScreeningReferralOpened | PossibleDuplicateFlagged,
    *,
    recipients: Iterable[str],
    causation: str,
    causation_source: str,
) -> list[Outgoing]:
    case_id = (
        follow_up.incident_id
        if isinstance(follow_up, ScreeningReferralOpened)
        else follow_up.case_id
    )
    occurred = (
        follow_up.disembarked_at
        if isinstance(follow_up, ScreeningReferralOpened)
        else follow_up.flagged_at
    )
    name = type_of(follow_up)
    out = [
        _record(
            CASE_EVENTS_TOPIC,
            follow_up,
            event_id=derived_id(name, causation_source, causation),
            case_id=case_id,
            occurred_at=occurred,
            causation=causation,
        )
    ]
    out += [
        _record(
            updates_topic(agency),
            follow_up,
            event_id=derived_id(name, causation_source, causation, agency),
            case_id=case_id,
            occurred_at=occurred,
            causation=causation,
        )
        for agency in dict.fromkeys(recipients)
    ]
    return out
