"""The cases service's use cases: apply one message to its case, raise due escalations, and
relay the outbox. Thin over the pure domain (`services.cases.domain`): this module only loads,
stores and publishes.

The case events of a batch are handled in one transaction (`CaseTransaction`): their messages
are claimed together (so a redelivery has no second effect), every case they name is loaded
and row-locked in one query, `decide` runs on each in order against the state in memory, and
the events, the new snapshots, the deadlines and every record to publish are written together
at the end. Publishing happens after commit, from the outbox, in order, so a crash between the
two only delays publication.

An erasure request (`casebridge.erasures`) is carried out the same way, in one transaction:
the data key of each case concerned is destroyed, `personal_data_erased` is recorded on each,
and every other case linked to one as a possible duplicate or the same person loses the link,
each with its case updates to the agencies involved.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import ConsumerRecord
from structlog.contextvars import bound_contextvars

from schemas.business import ForcedLabourReported
from schemas.cases import (
    SYSTEM_AGENCY,
    CaseAction,
    CaseOpened,
    PersonalDataErased,
    PossibleDuplicateFlagged,
    ScreeningReferralOpened,
    action_type,
)
from schemas.documents import DocumentRequested
from schemas.envelope import decode_kafka_record
from schemas.errors import EventRejected, RejectionCode
from schemas.privacy import ErasureRequested
from schemas.referral import VictimReferralSubmitted
from schemas.registry import validate_payload
from schemas.returns import ReturnRequested
from schemas.sar import SarAlertReceived
from schemas.topics import ERASURES
from schemas.vocab import AgencyKind
from services.cases import records, store
from services.cases.domain import (
    DUPLICATE_KINDS,
    AgencyInfo,
    Case,
    CaseContext,
    Clock,
    Decision,
    case_updates,
    decide,
    due_escalations,
    duplicate_flags,
    link_actions,
)
from services.cases.domain.lifecycle.erasure import unlink_actions
from services.cases.erasure import parse_erasure_request
from services.cases.transaction import CaseTransaction
from services.privacy.vault import PersonVault, case_subject
from services.routing.facts import facts_from
from services.routing.policy import RoutingPolicy, route
from services.runtime.database import Database
from services.runtime.dead_letter import dead_letter
from services.runtime.kafka import Outgoing, Publisher, fits, record_ids
from services.runtime.logging import get_logger
from services.runtime.metrics import CASES, OUTBOX_BACKLOG, case_outcomes, escalated

log = get_logger("casebridge.cases")
SERVICE = "cases"
_OPENINGS = (
    VictimReferralSubmitted,
    ReturnRequested,
    SarAlertReceived,
    ForcedLabourReported,
    DocumentRequested,
)
_ACTED = (*_OPENINGS, CaseAction)
"""What acts on a case; other valid events are not the cases service's."""


@dataclass(frozen=True)
class _Admitted:
    """A record of the batch that acts on a case, decoded: its type, source, id, message."""

    type: str
    source: str
    id: str
    message: (
        VictimReferralSubmitted
        | ReturnRequested
        | SarAlertReceived
        | ForcedLabourReported
        | DocumentRequested
        | CaseAction
    )


_ERASURES_SEEN = "casebridge.erasures"
"""`case_message_seen.source` of erasure requests, claimed by request id."""


class CaseCoordinator:
    def __init__(
        self,
        *,
        publisher: Publisher,
        db: Database,
        vault: PersonVault,
        ctx: CaseContext,
        routing: RoutingPolicy,
        clock: Clock,
        erasures_topic: str = ERASURES.name,
    ) -> None:
        self._publisher = publisher
        self._db = db
        self._vault = vault
        self._erasures_topic = erasures_topic
        self._ctx = ctx
        self._routing = routing
        self._clock = clock
        self._relaying = asyncio.Lock()

    async def process(self, batch: Sequence[ConsumerRecord[Any, Any]]) -> None:
        """A batch in order: the case events between two erasure requests in one transaction
        (one commit, one WAL flush, per run of events, not per event), each erasure request
        in its own (it first publishes what its case's key must still open)."""
        events: list[ConsumerRecord[Any, Any]] = []
        for record in batch:
            if record.topic == self._erasures_topic:
                await self._apply(events)
                events = []
                await self._erasure(record)
            else:
                events.append(record)
        await self._apply(events)
        await self.relay()

    async def _apply(self, records: Sequence[ConsumerRecord[Any, Any]]) -> None:
        """Handle `records` in order in one transaction. If any fails, none has an effect,
        and the batch runner retries, then isolates the one that fails alone."""
        if not records:
            return
        changed: list[str] = []
        try:
            async with self._db.pool.acquire() as conn, conn.transaction():
                tx = CaseTransaction(conn, self._vault, self._ctx)
                admitted = [self._admit(r) for r in records]
                acts = [a for a in admitted if isinstance(a, _Admitted)]
                fresh = await store.claim_messages(conn, [(a.source, a.id) for a in acts])
                await tx.lock(a.message.case_id for a in acts if (a.source, a.id) in fresh)
                for a in admitted:
                    if isinstance(a, Outgoing):
                        tx.publish([a])  # a dead letter, in its place
                    elif a is not None and (a.source, a.id) in fresh:
                        fresh.discard((a.source, a.id))  # a repeat in this batch: no effect
                        await self._handle(tx, a)
                changed = tx.changed
                await tx.write()
            case_outcomes(tx.transitions, tx.rejections)
        except BaseException:
            # Data keys made in a transaction that did not commit do not exist: they must
            # not stay in the vault's cache, or later values would be sealed under them.
            for case_id in changed:
                self._vault.forget(case_subject(case_id))
            raise

    async def quarantine(self, record: ConsumerRecord[Any, Any], error: EventRejected) -> None:
        """Dead-letter a record the batch runner set aside (it kept failing), and send it."""
        await self._dead_letter_now(record, error)
        await self.relay()

    def _admit(self, record: ConsumerRecord[Any, Any]) -> _Admitted | Outgoing | None:
        """The decoded message of a record that acts on a case, the dead letter of one that
        does not decode, or None (a valid event that is not ours, or a letter too large)."""
        # Intake validated this event; one that does not decode here was written by a newer
        # (or broken) intake: an unknown type during a rolling upgrade. It is dead-lettered
        # rather than retried, which would stall the partition.
        try:
            envelope, data = decode_kafka_record(record.headers or (), record.value)
            message = validate_payload(envelope.type, data)
        except EventRejected as error:
            return self._letter(record, error)
        if not isinstance(message, _ACTED):
            return None
        return _Admitted(envelope.type, envelope.source, envelope.id, message)

    async def _handle(self, tx: CaseTransaction, event: _Admitted) -> None:
        """One validated, newly claimed event, in the transaction `tx`."""
        # Who acts is settled before a record gets here: intake admits to the validated topic
        # only events whose `reporting_agency` is the agency whose own inbound topic (writable
        # by that agency alone) carried them. The payload's agency is therefore the actor.
        message = event.message
        routed_to: tuple[str, ...] = ()
        if isinstance(message, _OPENINGS):
            facts = facts_from(event.type, message)
            chosen = route(self._routing, facts, self._ctx.data_sharing.sharing_agreements)
            routed_to = tuple(d.agency for d in chosen.deliveries)
        before = await tx.case(message.case_id)
        now = self._clock.now()
        decision = decide(before, message, now=now, ctx=self._ctx, routed_to=routed_to)
        self._record(tx, before, decision, causation=event.id, causation_source=event.source)
        if decision.accepted and decision.case is not None:
            if before is None:
                await self._flag_duplicates(
                    tx, decision.case, causation=event.id, causation_source=event.source
                )
            await self._follow_links(
                tx, before, decision.case, message, causation=event.id, source=event.source
            )

    def _record(
        self,
        tx: CaseTransaction,
        before: Case | None,
        decision: Decision,
        *,
        causation: str,
        causation_source: str,
    ) -> None:
        """Record an accepted decision and what to publish about it, or the rejection to send.
        `causation_source` is the source of the message `causation` names (ids answering it
        are derived from both)."""
        if decision.rejection is not None:
            log.info(
                "transition rejected",
                case_id=decision.rejection.case_id,
                reason=str(decision.rejection.reason),
                event_id=causation,
            )
            tx.rejections.append(str(decision.rejection.reason))
            tx.publish(
                [
                    records.rejection_record(
                        decision.rejection, causation=causation, causation_source=causation_source
                    )
                ]
            )
            return
        after = decision.case
        assert after is not None
        tx.record(before, after, decision.events)
        tx.publish(records.case_event_record(e, causation=causation) for e in decision.events)
        last = decision.events[-1]
        change = last.action_type if not isinstance(last, CaseOpened) else "case_opened"
        tx.transitions.append((str(after.kind), change))
        tx.publish(
            records.update_records(
                case_updates(
                    before, after, change=change, occurred_at=last.occurred_at, ctx=self._ctx
                ),
                causation=causation,
            )
        )
        for follow_up in decision.follow_ups:
            tx.publish(
                records.follow_up_records(
                    follow_up,
                    recipients=self._follow_up_recipients(follow_up),
                    causation=causation,
                    causation_source=causation_source,
                )
            )

    async def _flag_duplicates(
        self, tx: CaseTransaction, case: Case, *, causation: str, causation_source: str
    ) -> None:
        """Possible duplicates (same pseudonymous person key) are flagged on both cases for a
        human to review; cases are never merged."""
        if case.person_key is None or case.kind not in DUPLICATE_KINDS:
            return
        others = await tx.cases_with_person_key(case.person_key, other_than=case.case_id)
        await tx.lock(others)
        for flag in duplicate_flags(case.case_id, others):
            before = await tx.case(flag.case_id)
            decision = decide(before, flag, now=self._clock.now(), ctx=self._ctx)
            self._record(
                tx,
                before,
                decision,
                causation=f"{causation}:{flag.case_id}",
                causation_source=causation_source,
            )

    async def _follow_links(
        self,
        tx: CaseTransaction,
        before: Case | None,
        after: Case,
        message: object,
        *,
        causation: str,
        source: str,
    ) -> None:
        """Decide what the change asks of linked cases (`link_actions`), in this transaction.
        An agency's link that is refused is sent back to it; CaseBridge's own is logged."""
        for action in link_actions(before, after, message):
            other = await tx.case(action.case_id)
            derived = f"{causation}:{action.case_id}"
            if action.reporting_agency == SYSTEM_AGENCY:
                self._internal(tx, other, action, derived, causation_source=source)
                continue
            decision = decide(other, action, now=self._clock.now(), ctx=self._ctx)
            self._record(tx, other, decision, causation=derived, causation_source=source)

    async def _erasure(self, record: ConsumerRecord[Any, Any]) -> None:
        """Carry out one erasure request in one transaction, or dead-letter it with why."""
        try:
            request = parse_erasure_request(record.headers or (), record.value)
        except EventRejected as error:
            await self._dead_letter_now(record, error)
            return
        # What is still in the outbox goes out first, while its case's key can open it.
        await self.relay()
        async with self._db.pool.acquire() as conn, conn.transaction():
            if not await store.claim_message(conn, _ERASURES_SEEN, request.request_id):
                return  # redelivered: it has had its effect
            tx = CaseTransaction(conn, self._vault, self._ctx)
            targets = await store.cases_to_erase(
                conn, case_id=request.case_id, person_key=request.person_key
            )
            if not targets:
                named = "case_id" if request.case_id is not None else "person_key"
                unmatched = EventRejected(
                    RejectionCode.NO_MATCHING_CASE,
                    f"no referral or return case matches the request's {named}",
                )
                tx.publish(filter(None, [self._letter(record, unmatched)]))
                await tx.write()
                return
            await tx.lock(targets)  # opened while their keys live
            for case_id in targets:
                await self._erase_case(tx, case_id, request)
            linked_ids = await store.cases_linked_to(conn, targets)
            await tx.lock(linked_ids)
            for other in linked_ids:
                linked = await tx.case(other)
                causation = f"{request.request_id}:{other}"
                for action in unlink_actions(linked, targets) if linked else ():
                    linked = self._internal(tx, linked, action, causation)
            await tx.write()
        case_outcomes(tx.transitions, tx.rejections)

    async def _erase_case(
        self, tx: CaseTransaction, case_id: str, request: ErasureRequested
    ) -> None:
        before = await tx.case(case_id)
        erased = await self._vault.erase(
            tx.conn,
            case_subject(case_id),
            reason=request.reason,
            requested_by=request.requested_by,
        )
        log.info(
            "data key erased",
            case_id=case_id,
            request_id=request.request_id,
            key_id=erased.key_id if erased else None,  # None: it had been erased before
        )
        action = PersonalDataErased(
            case_id=case_id,
            reporting_agency=SYSTEM_AGENCY,
            request_id=request.request_id,
            reason=request.reason,
        )
        self._internal(tx, before, action, request.request_id)

    def _internal(
        self,
        tx: CaseTransaction,
        before: Case | None,
        action: CaseAction,
        causation: str,
        *,
        causation_source: str = _ERASURES_SEEN,
    ) -> Case | None:
        """Decide and record an action CaseBridge takes itself; return the case after it. A
        refusal means there was nothing to do (e.g. erased before): it is logged, never sent
        to an agency."""
        decision = decide(before, action, now=self._clock.now(), ctx=self._ctx)
        if decision.rejection is not None:
            log.info(
                "internal action not needed",
                case_id=action.case_id,
                action=action_type(action),
                reason=str(decision.rejection.reason),
            )
            return before
        self._record(tx, before, decision, causation=causation, causation_source=causation_source)
        return decision.case

    async def _dead_letter_now(
        self, record: ConsumerRecord[Any, Any], error: EventRejected
    ) -> None:
        """A dead letter in a transaction of its own."""
        letter = self._letter(record, error)
        if letter is not None:
            async with self._db.pool.acquire() as conn:
                await store.add_to_outbox(conn, [letter])

    def _letter(self, record: ConsumerRecord[Any, Any], error: EventRejected) -> Outgoing | None:
        """The dead letter to publish for `record`; None if it is too large to (logged)."""
        with bound_contextvars(**record_ids(record)):
            log.warning("record dead-lettered", reason=str(error.code))
        letter = dead_letter(record, error, rejected_by=SERVICE)
        if not fits(letter):
            # Queued, it would block the outbox behind it for good. The record stays at its
            # origin (and in the audit log).
            with bound_contextvars(**record_ids(record)):
                log.error("dead letter too large to publish; not sent", reason=str(error.code))
            return None
        return letter

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
        for e in escalations:
            escalated(e.rule_id, notices=len({e.owner, *e.escalate_to}))
        if escalations:
            log.info("escalations raised", count=len(escalations))
            await self.relay()
        return len(escalations)

    async def sample_outbox(self) -> None:
        """Set the outbox backlog gauge (what is written but not yet published)."""
        async with self._db.pool.acquire() as conn:
            OUTBOX_BACKLOG.labels(CASES).set(await store.outbox_backlog(conn))

    async def relay(self) -> None:
        """Publish the outbox in order; rows are deleted only once the broker has them."""
        async with self._relaying:
            while await self._relay_some():
                pass

    async def _relay_some(self) -> bool:
        """Publish the oldest outbox rows and delete them; False when there were none.

        Under the outbox lock, for the whole transaction: with several instances of the
        service, one relays at a time, so no two publish the same rows and each case's
        records leave in the order they were written."""
        async with self._db.pool.acquire() as conn, conn.transaction():
            await store.lock_outbox(conn)
            pending = await store.pending_outbox(conn, self._vault)
            if not pending:
                return False
            readable = [r for _, r in pending if r is not None]
            if len(readable) < len(pending):
                # Sealed under a key erased before they went out: unreadable, by design.
                log.warning(
                    "outbox records of an erased person dropped unpublished",
                    count=len(pending) - len(readable),
                )
            await self._publisher.publish_all(readable)
            await store.delete_published(conn, [i for i, _ in pending])
        return True


def directory_of(routing: RoutingPolicy) -> Mapping[str, AgencyInfo]:
    """The agency directory the domain consults, from the routing policy's agency list."""
    return {
        a.id: AgencyInfo(agency_id=a.id, kind=a.kind, country=a.country, fallback=a.fallback)
        for a in routing.agencies
    }
