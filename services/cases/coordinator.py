"""The cases service's use cases: apply one message to its case, raise due escalations, and
relay the outbox. Thin over the pure domain (`services.cases.domain`): this module only loads,
stores and publishes.

Each message is handled in its own transaction: the message is claimed (so a redelivery has
no second effect), the case row is locked, `decide` runs, and the events, the new snapshot, the
deadlines and every record to publish are written together. Publishing happens after commit,
from the outbox, in order, so a crash between the two only delays publication.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from aiokafka import ConsumerRecord

from schemas.cases import (
    CaseAction,
    CaseOpened,
    PossibleDuplicateFlagged,
    ScreeningReferralOpened,
)
from schemas.referral import VictimReferralSubmitted
from schemas.registry import validate_payload
from schemas.returns import ReturnRequested
from schemas.sar import SarAlertReceived
from schemas.vocab import AgencyKind
from services.cases import records, store
from services.cases.domain import (
    AgencyInfo,
    Case,
    CaseContext,
    Clock,
    Decision,
    case_updates,
    deadlines_for,
    decide,
    due_escalations,
    duplicate_flags,
)
from services.routing.facts import facts_from
from services.routing.policy import RoutingPolicy, route
from services.runtime.database import Database
from services.runtime.kafka import Outgoing, Publisher, header_map
from services.runtime.logging import get_logger

log = get_logger("casebridge.cases")
_OPENINGS = (VictimReferralSubmitted, ReturnRequested, SarAlertReceived)


class CaseCoordinator:
    def __init__(
        self,
        *,
        publisher: Publisher,
        db: Database,
        ctx: CaseContext,
        routing: RoutingPolicy,
        clock: Clock,
    ) -> None:
        self._publisher = publisher
        self._db = db
        self._ctx = ctx
        self._routing = routing
        self._clock = clock
        self._relaying = asyncio.Lock()

    async def process(self, batch: Sequence[ConsumerRecord[Any, Any]]) -> None:
        for record in batch:
            await self._handle(record)
        await self.relay()

    async def _handle(self, record: ConsumerRecord[Any, Any]) -> None:
        headers = header_map(record)
        event_type = headers.get("ce_type", b"").decode()
        source = headers.get("ce_source", b"").decode()
        # Who acts is settled before a record gets here: intake admits to the validated topic
        # only events whose `reporting_agency` is the agency whose own inbound topic (writable
        # by that agency alone) carried them. The payload's agency is therefore the actor.
        message_id = headers.get("ce_id", b"").decode()
        message = validate_payload(event_type, orjson.loads(record.value))
        if not isinstance(
            message, VictimReferralSubmitted | ReturnRequested | SarAlertReceived | CaseAction
        ):
            return
        routed_to: tuple[str, ...] = ()
        if isinstance(message, _OPENINGS):
            facts = facts_from(event_type, message)
            routed_to = tuple(d.agency for d in route(self._routing, facts).deliveries)
        async with self._db.pool.acquire() as conn, conn.transaction():
            if not await store.claim_message(conn, source, message_id):
                return
            now = self._clock.now()
            before = await store.load_case(conn, message.case_id)
            decision = decide(before, message, now=now, ctx=self._ctx, routed_to=routed_to)
            out = await self._record(conn, before, decision, causation=message_id)
            if decision.accepted and decision.case is not None and before is None:
                out += await self._flag_duplicates(conn, decision.case, causation=message_id)
            await store.add_to_outbox(conn, out)

    async def _record(
        self, conn: Any, before: Case | None, decision: Decision, *, causation: str
    ) -> list[Outgoing]:
        """Store an accepted decision (or nothing for a rejection); return what to publish."""
        if decision.rejection is not None:
            log.info(
                "transition rejected",
                case_id=decision.rejection.case_id,
                reason=str(decision.rejection.reason),
                event_id=causation,
            )
            return [records.rejection_record(decision.rejection, causation=causation)]
        after = decision.case
        assert after is not None
        await store.save_case(conn, before, after, decision.events)
        await store.replace_deadlines(conn, after.case_id, deadlines_for(after, self._ctx))
        out = [records.case_event_record(e, causation=causation) for e in decision.events]
        last = decision.events[-1]
        change = last.action_type if not isinstance(last, CaseOpened) else "case_opened"
        out += records.update_records(
            case_updates(before, after, change=change, occurred_at=last.occurred_at, ctx=self._ctx),
            causation=causation,
        )
        for follow_up in decision.follow_ups:
            out += records.follow_up_records(
                follow_up,
                recipients=self._follow_up_recipients(follow_up),
                causation=causation,
            )
        return out

    async def _flag_duplicates(self, conn: Any, case: Case, *, causation: str) -> list[Outgoing]:
        """Possible duplicates (same pseudonymous person key) are flagged on both cases for a
        human to review; cases are never merged."""
        if case.person_key is None:
            return []
        others = await store.cases_with_person_key(conn, case.person_key, other_than=case.case_id)
        out: list[Outgoing] = []
        for flag in duplicate_flags(case.case_id, others):
            before = await store.load_case(conn, flag.case_id)
            decision = decide(before, flag, now=self._clock.now(), ctx=self._ctx)
            out += await self._record(
                conn, before, decision, causation=f"{causation}:{flag.case_id}"
            )
        return out

    def _follow_up_recipients(
        self, follow_up: ScreeningReferralOpened | PossibleDuplicateFlagged
    ) -> list[str]:
        if isinstance(follow_up, PossibleDuplicateFlagged):
            return [follow_up.owner]
        kinds = {AgencyKind.shelter_ngo, AgencyKind.social_welfare}
        if follow_up.children_reported:
            kinds.add(AgencyKind.child_protection)
        return sorted(
            a.agency_id
            for a in self._ctx.agencies.values()
            if a.kind in kinds and a.country == follow_up.country
        )

    async def tick(self) -> int:
        """Raise the escalations that are due now; return how many were raised."""
        now = self._clock.now()
        async with self._db.pool.acquire() as conn, conn.transaction():
            escalations = due_escalations(await store.due_deadlines(conn, now), now)
            if escalations:
                await store.add_to_outbox(
                    conn, [r for e in escalations for r in records.escalation_records(e)]
                )
                await store.mark_raised(conn, [e.deadline_id for e in escalations], now)
        if escalations:
            log.info("escalations raised", count=len(escalations))
            await self.relay()
        return len(escalations)

    async def relay(self) -> None:
        """Publish the outbox in order; rows are marked only once the broker has them."""
        async with self._relaying:
            await self._relay()

    async def _relay(self) -> None:
        while True:
            async with self._db.pool.acquire() as conn:
                pending = await store.pending_outbox(conn)
            if not pending:
                return
            await self._publisher.publish_all([r for _, r in pending])
            async with self._db.pool.acquire() as conn:
                await store.mark_published(conn, [i for i, _ in pending])


def directory_of(routing: RoutingPolicy) -> Mapping[str, AgencyInfo]:
    """The agency directory the domain consults, from the routing policy's agency list."""
    return {
        a.id: AgencyInfo(agency_id=a.id, kind=a.kind, country=a.country, fallback=a.fallback)
        for a in routing.agencies
    }
