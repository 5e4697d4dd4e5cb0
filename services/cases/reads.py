"""What an agency's caseworkers may read of the cases: the read path of their HTTP API.

Every method runs in a read-only transaction as `casebridge_caseworkers` that first names the
acting agency (`casebridge.agency`, local to the transaction, so a pooled connection never
carries it to the next caller). Which rows that agency may see is decided by PostgreSQL's
row-level security (migration 0015), not by these queries: none of them filters by agency, so
a mistake in one cannot show another agency's case. Row security decides which cases, not which
fields: the role may select the event and snapshot JSON of its agency's cases, which carry
fields need-to-know withholds from some agencies (services/privacy), so these queries return
neither.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from services.cases.domain.clock import Clock, SystemClock
from services.runtime.database import Database

AGENCY_SETTING = "casebridge.agency"
"""The transaction-local setting the row-level security policies read."""


@dataclass(frozen=True, slots=True)
class CaseSummary:
    case_id: str
    kind: str
    state: str
    version: int
    owner: str
    updated_at: dt.datetime
    next_due_at: dt.datetime | None
    """The earliest pending deadline, if any."""
    overdue: bool
    """A pending deadline is past due."""


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    version: int
    event_type: str
    recorded_at: dt.datetime
    actor: str | None
    """The acting agency; for the opening event, the agency that reported it."""
    state: str | None
    action: str | None = None
    """For a recorded transition, the action taken (`handover_accepted`)."""

    @property
    def what(self) -> str:
        """What happened, for a person: the action, else the event (`case opened`)."""
        if self.action:
            return self.action.replace("_", " ")
        words = "".join(f" {c.lower()}" if c.isupper() else c for c in self.event_type)
        return words.strip()


@dataclass(frozen=True, slots=True)
class PendingDeadline:
    deadline_id: str
    rule_id: str | None
    due_at: dt.datetime
    owner: str | None
    escalate_to: tuple[str, ...]


_CASES = """
SELECT s.case_id, s.kind, s.state, s.version, s.owner, s.updated_at, d.next_due_at,
       coalesce(d.next_due_at <= $1, false) AS overdue
FROM case_state AS s
LEFT JOIN LATERAL (
    SELECT min(due_at) AS next_due_at FROM case_deadline
    WHERE case_deadline.case_id = s.case_id AND raised_at IS NULL
) AS d ON true
ORDER BY overdue DESC, d.next_due_at ASC NULLS LAST, s.updated_at DESC, s.case_id
LIMIT $2"""

# The opening event has no acting agency of its own: the reporting agency of what opened it.
_TIMELINE = """
SELECT version, event_type, recorded_at,
       coalesce(event ->> 'actor_agency', event #>> '{referral,reporting_agency}',
                event #>> '{return_request,reporting_agency}',
                event #>> '{sar_alert,reporting_agency}',
                event #>> '{business_report,reporting_agency}',
                event #>> '{document_request,reporting_agency}') AS actor,
       event ->> 'state' AS state, event #>> '{action,action}' AS action
FROM case_event WHERE case_id = $1 ORDER BY version"""

_DEADLINES = """
SELECT deadline_id, deadline ->> 'rule_id', due_at, deadline ->> 'owner',
       ARRAY(SELECT jsonb_array_elements_text(
           CASE jsonb_typeof(deadline -> 'escalate_to')
               WHEN 'array' THEN deadline -> 'escalate_to' ELSE '[]' END))
FROM case_deadline WHERE case_id = $1 AND raised_at IS NULL ORDER BY due_at, deadline_id"""


@dataclass(frozen=True, slots=True)
class Standing:
    """Where the acting agency stands on a case: what decides which actions it is offered
    (the cases service still decides, with every guard, when the action arrives)."""

    member: bool
    """The owner or an assigned agency."""
    handover_requested: bool
    """A handover to this agency waits for its answer."""


_CASE = _CASES.replace("ORDER BY", "WHERE s.case_id = $3 ORDER BY")

# Structure only (who is assigned, which handovers wait), never the sealed person fields.
_STANDING = """
SELECT owner = $2 OR coalesce(snapshot -> 'assigned' ? $2, false),
       EXISTS (SELECT 1 FROM jsonb_array_elements(
                   CASE jsonb_typeof(snapshot -> 'handovers')
                       WHEN 'array' THEN snapshot -> 'handovers' ELSE '[]' END) AS h
               WHERE h ->> 'to_agency' = $2 AND h ->> 'status' = 'requested')
FROM case_state WHERE case_id = $1"""


class CaseReader:
    """Reads for one agency at a time, over a pool connected as `casebridge_caseworkers`."""

    def __init__(self, db: Database, *, clock: Clock | None = None) -> None:
        self._db = db
        self._clock = clock or SystemClock()

    @asynccontextmanager
    async def _acting_as(self, agency: str) -> AsyncIterator[Any]:
        if not agency:
            raise ValueError("an acting agency is required")
        async with self._db.pool.acquire() as conn, conn.transaction(readonly=True):
            await conn.execute("SELECT set_config($1, $2, true)", AGENCY_SETTING, agency)
            yield conn

    async def cases(self, agency: str, *, limit: int = 100) -> list[CaseSummary]:
        """The agency's cases, those with an overdue deadline first, then by the next deadline,
        then the most recently updated: what needs acting on comes first."""
        async with self._acting_as(agency) as conn:
            rows = await conn.fetch(_CASES, self._clock.now(), limit)
        return [CaseSummary(*row) for row in rows]

    async def case(self, agency: str, case_id: str) -> CaseSummary | None:
        """One case as the list shows it; None when there is none the agency may see."""
        async with self._acting_as(agency) as conn:
            row = await conn.fetchrow(_CASE, self._clock.now(), 1, case_id)
        return None if row is None else CaseSummary(*row)

    async def standing(self, agency: str, case_id: str) -> Standing | None:
        """None when there is no case the agency may see."""
        async with self._acting_as(agency) as conn:
            row = await conn.fetchrow(_STANDING, case_id, agency)
        return None if row is None else Standing(member=row[0], handover_requested=row[1])

    async def timeline(self, agency: str, case_id: str) -> list[TimelineEntry]:
        """The case's history without payloads; empty for a case the agency may not see."""
        async with self._acting_as(agency) as conn:
            rows = await conn.fetch(_TIMELINE, case_id)
        return [TimelineEntry(*row) for row in rows]

    async def pending_deadlines(self, agency: str, case_id: str) -> list[PendingDeadline]:
        """Deadlines not yet raised, soonest first; empty for a case the agency may not see."""
        async with self._acting_as(agency) as conn:
            rows = await conn.fetch(_DEADLINES, case_id)
        return [PendingDeadline(r[0], r[1], r[2], r[3], tuple(r[4])) for r in rows]
