"""Deadlines are data derived from a case's state, so they survive restarts: the lead stores
``deadlines_for(case)`` after each change and asks ``due_escalations`` on each clock tick.

A deadline's id is stable for as long as the situation that caused it lasts (same rule, same
state entry, same request), so storing it twice or escalating it twice can be detected.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass

from schemas.cases import CaseKind, EscalationRaised
from schemas.priorities import MinisterialPriority
from schemas.vocab import AgencyKind, SarPhase
from services.cases.domain.model import Case, Handover
from services.cases.domain.policy import (
    ChildProtectionDeadline,
    DeadlineRule,
    EscalationRole,
    HandoverDeadline,
    InStateDeadline,
    MonitoringDeadline,
)
from services.cases.domain.transition import CaseContext


@dataclass(frozen=True, slots=True)
class Deadline:
    deadline_id: str
    case_id: str
    kind: CaseKind
    rule_id: str
    serves: MinisterialPriority
    due_at: dt.datetime
    owner: str
    escalate_to: tuple[str, ...]
    phase: SarPhase | None = None


def add_months(when: dt.datetime, months: int) -> dt.datetime:
    """Calendar months later, clamped to the month's last day (31 Jan + 1 month = 28/29 Feb)."""
    index = when.month - 1 + months
    year, month = when.year + index // 12, index % 12 + 1
    return when.replace(
        year=year, month=month, day=min(when.day, calendar.monthrange(year, month)[1])
    )


def deadlines_for(case: Case, ctx: CaseContext) -> list[Deadline]:
    """Every deadline the case is currently under, with whom to escalate to."""
    if not case.is_open:
        return []
    found: list[Deadline] = []
    for rule in ctx.policy.deadlines:
        if rule.kind != case.kind:
            continue
        for suffix, due_at, handover in _due_dates(case, rule, ctx):
            found.append(
                Deadline(
                    deadline_id=f"{case.case_id}:{rule.rule_id}:{suffix}",
                    case_id=case.case_id,
                    kind=case.kind,
                    rule_id=rule.rule_id,
                    serves=rule.serves,
                    due_at=due_at,
                    owner=case.owner,
                    escalate_to=_escalate_to(case, rule.escalate_to, handover, ctx),
                    phase=case.sar.phase if case.sar else None,
                )
            )
    return sorted(found, key=lambda d: (d.due_at, d.deadline_id))


def due_escalations(
    deadlines: Iterable[Deadline], now: dt.datetime, *, already_raised: Collection[str] = ()
) -> list[EscalationRaised]:
    """Escalations for deadlines due at ``now`` that were not raised before."""
    return [
        EscalationRaised(
            deadline_id=d.deadline_id,
            case_id=d.case_id,
            kind=d.kind,
            rule_id=d.rule_id,
            serves=d.serves,
            due_at=d.due_at,
            raised_at=now,
            owner=d.owner,
            escalate_to=d.escalate_to,
            phase=d.phase,
        )
        for d in deadlines
        if d.due_at <= now and d.deadline_id not in already_raised
    ]


def next_due(deadlines: Iterable[Deadline]) -> dt.datetime | None:
    """When to look again (None: no deadline pending)."""
    return min((d.due_at for d in deadlines), default=None)


def _due_dates(
    case: Case, rule: DeadlineRule, ctx: CaseContext
) -> Iterator[tuple[str, dt.datetime, Handover | None]]:
    if isinstance(rule, InStateDeadline):
        sar = case.sar
        if case.state not in rule.states or (
            rule.phases and (sar is None or sar.phase not in rule.phases)
        ):
            return
        anchor = case.state_entered_at
        if rule.anchor == "phase_since" and sar is not None:
            anchor = max(anchor, sar.phase_since)
        yield anchor.isoformat(), anchor + rule.within, None
    elif isinstance(rule, HandoverDeadline):
        for h in case.requested_handovers():
            yield f"{h.to_agency}:{h.requested_at.isoformat()}", h.requested_at + rule.within, h
    elif isinstance(rule, MonitoringDeadline):
        arrived = case.returns.arrived_at if case.returns else None
        if arrived is None:
            return
        done = len(case.returns.monitoring_visits) if case.returns else 0
        for months in rule.months_after_arrival[done:]:
            yield f"{months}m", add_months(arrived, months) + rule.grace, None
    elif isinstance(rule, ChildProtectionDeadline):
        kinds = {ctx.agencies[a].kind for a in case.members if a in ctx.agencies}
        if case.child and AgencyKind.child_protection not in kinds:
            yield "child", case.opened_at + rule.within, None


def _escalate_to(
    case: Case, roles: Iterable[EscalationRole], handover: Handover | None, ctx: CaseContext
) -> tuple[str, ...]:
    def fallback(agency_id: str | None) -> str | None:
        info = ctx.agencies.get(agency_id) if agency_id else None
        return info.fallback if info else None

    receiver = handover.to_agency if handover else None
    resolved = {
        EscalationRole.owner: case.owner,
        EscalationRole.owner_fallback: fallback(case.owner),
        EscalationRole.receiver: receiver,
        EscalationRole.receiver_fallback: fallback(receiver),
    }
    return tuple(dict.fromkeys(a for role in roles if (a := resolved[role]) is not None))
