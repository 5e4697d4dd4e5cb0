"""What one cases transaction reads and writes, kept in memory and written at its end.

Applying a batch message by message to the database cost about nine round trips per event.
Here the cases a batch touches are loaded (and row-locked) in one query, decisions are made
against their state in memory, in order, and at the end the events, snapshots, deadlines and
records to publish of every case are written in a handful of statements. The store
(`services.cases.store`) keeps the SQL; this keeps the bookkeeping.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from services.cases import store
from services.cases.domain import Case, CaseContext, CaseEvent, deadlines_for
from services.privacy.vault import PersonVault
from services.runtime.kafka import Outgoing


class CaseTransaction:
    """The working set of one database transaction (`conn` is inside it)."""

    def __init__(self, conn: Any, vault: PersonVault, ctx: CaseContext) -> None:
        self.conn = conn
        self._vault = vault
        self._ctx = ctx
        self._state: dict[str, Case | None] = {}
        """Each case loaded so far as it stands now (None: it does not exist yet)."""
        self._changes: dict[str, store.CaseChange] = {}
        self._outbox: list[Outgoing] = []
        self.transitions: list[tuple[str, str]] = []
        """(case kind, action) of each change decided here, counted once it commits."""
        self.rejections: list[str] = []
        """The reason of each action refused here, counted once it commits."""

    async def lock(self, case_ids: Iterable[str]) -> None:
        """Load and row-lock, in one query, every case named that is not loaded yet."""
        missing = sorted(set(case_ids) - self._state.keys())
        if missing:
            found = await store.load_cases(self.conn, self._vault, missing)
            for case_id in missing:
                self._state[case_id] = found.get(case_id)

    async def case(self, case_id: str) -> Case | None:
        await self.lock([case_id])
        return self._state[case_id]

    def record(self, before: Case | None, after: Case, events: Sequence[CaseEvent]) -> None:
        """`after` is the case now, `events` what got it there from `before`."""
        change = self._changes.get(after.case_id)
        if change is None:
            stored = None if before is None else before.version
            self._changes[after.case_id] = store.CaseChange(stored, after, list(events))
        else:
            change.after = after
            change.events.extend(events)
        self._state[after.case_id] = after

    def publish(self, records: Iterable[Outgoing]) -> None:
        """Queue records for the outbox, in order."""
        self._outbox.extend(records)

    async def cases_with_person_key(self, person_key: str, *, other_than: str) -> list[str]:
        """Cases naming the same pseudonymous person, those opened in this transaction too."""
        stored = await store.cases_with_person_key(self.conn, person_key, other_than=other_than)
        here = {i for i, c in self._state.items() if c is not None and c.person_key == person_key}
        gone = {i for i, c in self._state.items() if c is None or c.person_key != person_key}
        return sorted((set(stored) - gone | here) - {other_than})

    @property
    def changed(self) -> list[str]:
        """Ids of the cases changed so far (their data keys may be new)."""
        return list(self._changes)

    async def write(self) -> None:
        """Write everything recorded: events and snapshots, each changed case's pending
        deadlines, then the outbox (sealed per case where the case holds personal data)."""
        changes = list(self._changes.values())
        keys = await store.save_cases(self.conn, self._vault, changes)
        await store.replace_deadlines(
            self.conn, {c.after.case_id: deadlines_for(c.after, self._ctx) for c in changes}
        )
        await store.add_to_outbox(self.conn, self._outbox, keys)
        self._changes.clear()
        self._outbox.clear()
