"""What a caseworker can do through the console, whichever face they use (pages or JSON API).

Every read and every action is recorded in the audit log first (`ActivityLog`); reads go
through `CaseReader`, so PostgreSQL's row-level security decides which cases the agency sees;
actions are published as the agency (`AgencyPublishers`). A case the agency may not see is
simply not found: the console never says whether another agency's case exists.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from schemas.cases import CaseKind, CaseState, action_type
from schemas.common import CASE_ID_PATTERN
from schemas.console import ConsoleActivity, ConsoleActivityKind
from services.cases.domain.offers import action_name, offered_actions
from services.cases.reads import (
    CaseReader,
    CaseSummary,
    PendingDeadline,
    Standing,
    TimelineEntry,
)
from services.console.accounts import Role, User
from services.console.actions import (
    ACTIONS,
    AgencyPublishers,
    FormField,
    action_record,
    build_action,
    errors_of,
    form_fields,
)
from services.console.activity import ActivityLog, now
from services.runtime.logging import get_logger

_CASE_ID = re.compile(CASE_ID_PATTERN)
log = get_logger("casebridge.console")


class UnrecordedError(Exception):
    """The activity could not be recorded in the audit log, so it is not done (503)."""


def activity_of(user: User, kind: ConsoleActivityKind, **fields: Any) -> ConsoleActivity:
    """What `user` did, for the activity log."""
    return ConsoleActivity(
        kind=kind,
        username=user.username,
        agency=user.agency,
        role=user.role.value,
        at=now(),
        **fields,
    )


async def record_activity(activity_log: ActivityLog, activity: ConsoleActivity) -> None:
    try:
        await activity_log.record(activity)
    except Exception as exc:
        log.error("console activity not recorded; refused", error=type(exc).__name__)
        raise UnrecordedError from exc


class NotFoundError(Exception):
    """No case by that id that this agency may see."""


class ForbiddenError(Exception):
    """The account's role may not do this (an auditor acting on a case)."""


class StaleVersionError(Exception):
    """The caseworker's version is not the case's: reload and retry (412)."""

    def __init__(self, current: int) -> None:
        super().__init__(f"the case is at version {current}")
        self.current = current


class NotOfferedError(Exception):
    """The action is not open to this agency in the case's state now (409)."""


class InvalidActionError(Exception):
    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{e['name']}: {e['reason']}" for e in errors))
        self.errors = errors


@dataclass(frozen=True, slots=True)
class OfferedAction:
    name: str
    event_type: str
    description: str
    fields: tuple[FormField, ...] | None
    """None when the action needs the JSON API (a field is a list or a record)."""


@dataclass(frozen=True, slots=True)
class CaseView:
    summary: CaseSummary
    timeline: list[TimelineEntry]
    deadlines: list[PendingDeadline]
    actions: list[OfferedAction]


@dataclass(frozen=True, slots=True)
class ActionOutcome:
    event_id: str
    event_type: str
    recorded: bool
    """The case moved past the caseworker's version within the wait; else still pending."""
    version: int
    """The case's version when the answer was given."""


class Casework:
    def __init__(
        self,
        reader: CaseReader,
        activity: ActivityLog,
        publishers: AgencyPublishers,
        *,
        wait_s: float,
        poll_s: float = 0.1,
    ) -> None:
        self._reader = reader
        self._activity = activity
        self._publishers = publishers
        self._wait_s = wait_s
        self._poll_s = poll_s

    async def _record(self, user: User, kind: ConsoleActivityKind, **fields: Any) -> None:
        await record_activity(self._activity, activity_of(user, kind, **fields))

    @staticmethod
    def _caseworker(user: User) -> None:
        if user.role != Role.caseworker:
            raise ForbiddenError("only caseworkers read and act on cases")

    async def cases(self, user: User, *, limit: int = 100) -> list[CaseSummary]:
        """The agency's cases, overdue first."""
        self._caseworker(user)
        await self._record(user, ConsoleActivityKind.read_cases)
        return await self._reader.cases(user.agency, limit=limit)

    async def case(self, user: User, case_id: str) -> CaseView:
        self._caseworker(user)
        await self._record(user, ConsoleActivityKind.read_case, case_id=_case_id(case_id))
        summary = await self._reader.case(user.agency, case_id)
        standing = await self._reader.standing(user.agency, case_id)
        if summary is None or standing is None:
            raise NotFoundError(case_id)
        timeline, deadlines = await asyncio.gather(
            self._reader.timeline(user.agency, case_id),
            self._reader.pending_deadlines(user.agency, case_id),
        )
        offered = _offered(summary, standing, user.agency)
        actions = [
            OfferedAction(action_name(a), action_type(a), (a.__doc__ or "").strip(), form_fields(a))
            for a in offered
        ]
        return CaseView(summary, timeline, deadlines, actions)

    async def act(
        self,
        user: User,
        case_id: str,
        name: str,
        fields: dict[str, Any],
        *,
        if_match: int,
    ) -> ActionOutcome:
        """Check, record, publish as the agency, then wait briefly for the case to move."""
        self._caseworker(user)
        action = ACTIONS.get(name)
        event_type = action_type(action) if action is not None else None

        async def refuse(reason: str) -> None:
            await self._record(
                user,
                ConsoleActivityKind.action_refused,
                case_id=_case_id(case_id),
                action_type=event_type,
                reason=reason,
            )

        summary = await self._reader.case(user.agency, case_id)
        standing = await self._reader.standing(user.agency, case_id)
        if summary is None or standing is None:
            await refuse("not_found")
            raise NotFoundError(case_id)
        if summary.version != if_match:
            await refuse("stale_version")
            raise StaleVersionError(summary.version)
        offered = _offered(summary, standing, user.agency)
        if action is None or action not in offered:
            await refuse("not_offered")
            raise NotOfferedError(f"{name} is not open to {user.agency} on this case now")
        try:
            built = build_action(
                action, fields, case_id=case_id, agency=user.agency, expected_version=if_match
            )
        except (ValidationError, ValueError) as exc:
            await refuse("invalid_fields")
            raise InvalidActionError(errors_of(exc)) from None
        event_id, record = action_record(built)
        await self._record(
            user,
            ConsoleActivityKind.action_sent,
            case_id=case_id,
            action_type=event_type,
            action_event_id=event_id,
        )
        await self._publishers.publish(user.agency, record)
        version = await self._moved_past(user.agency, case_id, if_match)
        return ActionOutcome(event_id, event_type or "", version > if_match, version)

    async def _moved_past(self, agency: str, case_id: str, version: int) -> int:
        deadline = asyncio.get_running_loop().time() + self._wait_s
        current = version
        while True:
            summary = await self._reader.case(agency, case_id)
            current = summary.version if summary is not None else current
            if current > version or asyncio.get_running_loop().time() >= deadline:
                return current
            await asyncio.sleep(self._poll_s)


def _offered(summary: CaseSummary, standing: Standing, agency: str) -> tuple[type[Any], ...]:
    return offered_actions(
        CaseKind(summary.kind),
        CaseState(summary.state),
        owner=summary.owner == agency,
        member=standing.member,
        handover_requested=standing.handover_requested,
    )


def _case_id(value: str) -> str | None:
    """The case id as the activity record may carry it (the schema's pattern), else None."""
    return value if _CASE_ID.fullmatch(value) else None
