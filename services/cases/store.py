"""The cases service's tables, over one asyncpg connection inside the caller's transaction.

`case_event` is the log (the truth); `case_state` is a snapshot of the fold of that log, kept
for fast loads and checked by `casebridge cases rebuild`; `case_outbox` holds what must be
published, written in the same transaction as the change (transactional outbox), and deleted
once the broker has it.

No personal data is stored in the clear. The person and the person key inside an opening event
and a snapshot are sealed with the case's data key (services/privacy: subject
`case_subject(case_id)`), each blob bound to its table and case; everything else stays plain
JSON, so a case still folds from its log once the key is destroyed (the person then reads as
erased: an empty `PersonRef` in the opening event, None in the snapshot). Outbox values of a
case that holds personal data are sealed whole. `data_key_id` names the key a row was sealed
with (NULL: nothing sealed). `case_state.person_key` stays a plain column, the pseudonym
duplicates are found by; erasure clears it with the rest of the person.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson
from pydantic import ConfigDict, TypeAdapter

from schemas.cases import CaseKind, CaseOpened, TransitionRecorded
from services.cases.domain import (
    CASE_ADAPTER,
    DUPLICATE_KINDS,
    Case,
    CaseEvent,
    Deadline,
    recipients,
)
from services.privacy.sealing import FieldPath, seal, seal_fields, unseal, unseal_fields
from services.privacy.vault import DataKey, PersonVault, case_subject
from services.runtime.kafka import Outgoing

_EVENT_ADAPTER: TypeAdapter[CaseOpened | TransitionRecorded] = TypeAdapter(
    CaseOpened | TransitionRecorded, config=ConfigDict(hide_input_in_errors=True)
)
_EVENT_PERSON: tuple[FieldPath, ...] = (
    ("referral", "person"),
    ("return_request", "person"),
    ("document_request", "person"),
)
_EVENT_PSEUDONYM: tuple[FieldPath, ...] = (("person_key",),)
_STATE_PERSONAL: tuple[FieldPath, ...] = (("person",), ("person_key",))


class StaleWriteError(Exception):
    """The case changed under us (another writer): the batch is retried from the log."""


async def claim_messages(conn: Any, ids: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
    """The (source, id) pairs seen for the first time, claimed in one round trip; a message
    redelivered (or repeated within `ids`) has had, or is about to have, its effect."""
    if not ids:
        return set()
    rows = await conn.fetch(
        "INSERT INTO case_message_seen (source, event_id)"
        " SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING"
        " RETURNING source, event_id",
        [i[0] for i in ids],
        [i[1] for i in ids],
    )
    return {(r[0], r[1]) for r in rows}


async def claim_message(conn: Any, source: str, event_id: str) -> bool:
    """True the first time a message is seen; a redelivered message has had its effect."""
    return bool(await claim_messages(conn, [(source, event_id)]))


def _context(table: str, case_id: str, *more: object) -> bytes:
    """What a sealed blob is bound to: a blob copied to another row does not open."""
    return "|".join((table, case_id, *map(str, more))).encode()


def holds_personal_data(case: Case) -> bool:
    return case.person is not None or case.person_key is not None


async def case_key(conn: Any, vault: PersonVault, case_id: str) -> DataKey:
    """The case's live data key, created on first use (cached by the vault)."""
    subject = case_subject(case_id)
    return (await vault.keys_for(conn, [subject]))[subject]


def _sealed_event(event: CaseEvent, key: DataKey | None) -> tuple[str, int | None]:
    """The event's JSON with its personal fields sealed, and the key id (None: nothing)."""
    personal = isinstance(event, CaseOpened) and (
        event.referral is not None
        or event.return_request is not None
        or event.document_request is not None
        or event.person_key is not None
    )
    if key is None or not personal:
        return event.model_dump_json(), None
    doc = seal_fields(
        event.model_dump(mode="json"),
        (*_EVENT_PERSON, *_EVENT_PSEUDONYM),
        key.key,
        context=_context("case_event", event.case_id, event.version),
    )
    return orjson.dumps(doc).decode(), key.key_id


def _opened_event(
    case_id: str, version: int, text: str, key_id: int | None, keys: dict[int, bytes | None]
) -> CaseEvent:
    if key_id is None:
        return _EVENT_ADAPTER.validate_json(text)
    key, context = keys.get(key_id), _context("case_event", case_id, version)
    doc = unseal_fields(orjson.loads(text), _EVENT_PERSON, key, context=context, erased={})
    doc = unseal_fields(doc, _EVENT_PSEUDONYM, key, context=context)
    return _EVENT_ADAPTER.validate_json(orjson.dumps(doc))


def sealed_snapshot(case: Case, key: DataKey | None) -> tuple[str, int | None]:
    """The snapshot's JSON with the person and the person key sealed, and the key id."""
    if key is None or not holds_personal_data(case):
        return CASE_ADAPTER.dump_json(case).decode(), None
    doc = seal_fields(
        CASE_ADAPTER.dump_python(case, mode="json"),
        _STATE_PERSONAL,
        key.key,
        context=_context("case_state", case.case_id),
    )
    return orjson.dumps(doc).decode(), key.key_id


def _opened_snapshot(
    case_id: str, text: str, key_id: int | None, keys: dict[int, bytes | None]
) -> Case:
    if key_id is None:
        return CASE_ADAPTER.validate_json(text)
    doc = unseal_fields(
        orjson.loads(text),
        _STATE_PERSONAL,
        keys.get(key_id),
        context=_context("case_state", case_id),
    )
    return CASE_ADAPTER.validate_json(orjson.dumps(doc))


async def load_cases(conn: Any, vault: PersonVault, case_ids: Iterable[str]) -> dict[str, Case]:
    """The current state of each case that exists, row-locked until the transaction ends.
    Rows are locked in case id order, so two writers of overlapping batches cannot deadlock."""
    rows = await conn.fetch(
        "SELECT case_id, snapshot, data_key_id FROM case_state"
        " WHERE case_id = ANY($1::text[]) ORDER BY case_id FOR UPDATE",
        sorted(set(case_ids)),
    )
    keys = await _keys_of(conn, vault, rows, column=2)
    return {r[0]: _opened_snapshot(r[0], r[1], r[2], keys) for r in rows}


async def load_case(conn: Any, vault: PersonVault, case_id: str) -> Case | None:
    """The current state, row-locked until the transaction ends."""
    return (await load_cases(conn, vault, [case_id])).get(case_id)


def agencies_involved(case: Case) -> list[str]:
    """`case_state.agencies`: the only agencies whose caseworkers row-level security lets read
    the case (migration 0015), so it must move with every snapshot."""
    return sorted(recipients(case) | {case.owner})


@dataclasses.dataclass
class CaseChange:
    """What a transaction did to one case: `stored_version` is the version its row had when
    loaded (None: a new case), `events` every event appended since, `after` the state now."""

    stored_version: int | None
    after: Case
    events: list[CaseEvent]


async def save_cases(
    conn: Any, vault: PersonVault, changes: Sequence[CaseChange]
) -> dict[str, DataKey]:
    """Append every change's events and move each snapshot on, in a few statements whatever
    the number of cases; refuse (StaleWriteError) if any row's version moved meanwhile.

    Returns the data key each case's personal data was sealed with (absent for a case that
    holds none: a SAR incident, or a person erased), for sealing what is published about it."""
    if not changes:
        return {}
    personal = [c.after.case_id for c in changes if holds_personal_data(c.after)]
    by_subject = await vault.keys_for(conn, map(case_subject, personal)) if personal else {}
    keys = {case_id: by_subject[case_subject(case_id)] for case_id in personal}
    events = [(e, keys.get(c.after.case_id)) for c in changes for e in c.events]
    sealed = [_sealed_event(e, key) for e, key in events]
    if events:
        await conn.execute(
            "INSERT INTO case_event (case_id, version, event_type, event, data_key_id)"
            " SELECT c, v, t, e::jsonb, k"
            " FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::bigint[])"
            " AS r(c, v, t, e, k)",
            [e.case_id for e, _ in events],
            [e.version for e, _ in events],
            [type(e).__name__ for e, _ in events],
            [text for text, _ in sealed],
            [key_id for _, key_id in sealed],
        )
    new = [c for c in changes if c.stored_version is None]
    moved = [c for c in changes if c.stored_version is not None]
    if new:
        await conn.execute(
            _INSERT_SNAPSHOTS,
            *_state_arrays(new, keys),
            [None] * len(new),
        )
    if moved:
        updated = await conn.fetch(
            _UPDATE_SNAPSHOTS,
            *_state_arrays(moved, keys),
            [c.stored_version for c in moved],
        )
        if len(updated) != len(moved):
            stale = {c.after.case_id for c in moved} - {r[0] for r in updated}
            raise StaleWriteError(", ".join(sorted(stale)))
    return keys


_SNAPSHOT_ROWS = """
    SELECT case_id, kind, state, version, owner, person_key, snapshot::jsonb AS snapshot,
           updated_at, ARRAY(SELECT jsonb_array_elements_text(agencies::jsonb)) AS agencies,
           data_key_id, stored
    FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[], $6::text[],
                $7::text[], $8::timestamptz[], $9::text[], $10::bigint[], $11::int[])
         AS r(case_id, kind, state, version, owner, person_key, snapshot, updated_at,
              agencies, data_key_id, stored)"""
"""A snapshot row per element of the arrays. `agencies` travels as a JSON array (unnest would
flatten an array of arrays); `stored` is the version the row must still have."""
_INSERT_SNAPSHOTS = (  # Module constants only: no injection.
    "INSERT INTO case_state (case_id, kind, state, version, owner, person_key, snapshot,"  # noqa: S608
    " updated_at, agencies, data_key_id)"
    " SELECT case_id, kind, state, version, owner, person_key, snapshot, updated_at, agencies,"
    " data_key_id FROM (" + _SNAPSHOT_ROWS + ") AS r"
)
_UPDATE_SNAPSHOTS = (
    "UPDATE case_state AS s SET kind = r.kind, state = r.state, version = r.version,"  # noqa: S608
    " owner = r.owner, person_key = r.person_key, snapshot = r.snapshot,"
    " updated_at = r.updated_at, agencies = r.agencies, data_key_id = r.data_key_id"
    " FROM (" + _SNAPSHOT_ROWS + ") AS r"
    " WHERE s.case_id = r.case_id AND s.version = r.stored RETURNING s.case_id"
)


def _state_arrays(changes: Sequence[CaseChange], keys: Mapping[str, DataKey]) -> list[list[Any]]:
    snapshots = [sealed_snapshot(c.after, keys.get(c.after.case_id)) for c in changes]
    cases = [c.after for c in changes]
    return [
        [c.case_id for c in cases],
        [c.kind.value for c in cases],
        [c.state.value for c in cases],
        [c.version for c in cases],
        [c.owner for c in cases],
        [c.person_key for c in cases],
        [text for text, _ in snapshots],
        [c.updated_at for c in cases],
        [orjson.dumps(agencies_involved(c)).decode() for c in cases],
        [key_id for _, key_id in snapshots],
    ]


async def save_case(
    conn: Any,
    vault: PersonVault,
    before: Case | None,
    after: Case,
    events: Sequence[CaseEvent],
) -> DataKey | None:
    """`save_cases` for one case."""
    stored = None if before is None else before.version
    keys = await save_cases(conn, vault, [CaseChange(stored, after, list(events))])
    return keys.get(after.case_id)


async def cases_with_person_key(conn: Any, person_key: str, *, other_than: str) -> list[str]:
    """Other cases of the kinds that can be duplicates (`DUPLICATE_KINDS`) with this key."""
    rows = await conn.fetch(
        "SELECT case_id FROM case_state WHERE person_key = $1 AND case_id <> $2"
        " AND kind = ANY($3::text[]) ORDER BY case_id",
        person_key,
        other_than,
        sorted(k.value for k in DUPLICATE_KINDS),
    )
    return [r[0] for r in rows]


async def cases_to_erase(
    conn: Any, *, case_id: str | None = None, person_key: str | None = None
) -> list[str]:
    """The cases holding a person an erasure request names, in lock order (SAR incidents and
    business reports hold no one's personal data)."""
    if (case_id is None) == (person_key is None):
        raise ValueError("name a case id or a person key")
    rows = await conn.fetch(
        "SELECT case_id FROM case_state WHERE (case_id = $1 OR person_key = $2)"
        " AND kind <> ALL($3::text[]) ORDER BY case_id",
        case_id,
        person_key,
        [CaseKind.sar.value, CaseKind.business_report.value],
    )
    return [r[0] for r in rows]


async def cases_linked_to(conn: Any, case_ids: Sequence[str]) -> list[str]:
    """Other cases naming any of `case_ids` as a possible duplicate or the same person. The
    links are plain JSON in the snapshot; erasures are rare enough for a scan."""
    rows = await conn.fetch(
        "SELECT case_id FROM case_state WHERE NOT (case_id = ANY($1::text[]))"
        " AND (snapshot -> 'possible_duplicate_of' ?| $1::text[]"
        " OR snapshot -> 'same_person_as' ?| $1::text[]) ORDER BY case_id",
        list(case_ids),
    )
    return [r[0] for r in rows]


def _deadline_json(d: Deadline) -> str:
    return orjson.dumps(dataclasses.asdict(d)).decode()


def _deadline_of(text: str) -> Deadline:
    data = orjson.loads(text)
    data["due_at"] = dt.datetime.fromisoformat(data["due_at"])
    data["escalate_to"] = tuple(data["escalate_to"])
    return Deadline(**data)


async def replace_deadlines(conn: Any, pending: Mapping[str, Sequence[Deadline]]) -> None:
    """Each case's pending deadlines become exactly `pending[case_id]`; raised ones are kept,
    and a deadline whose id survives the change keeps its row (so it is never raised twice).
    Two statements, whatever the number of cases."""
    if not pending:
        return
    kept = [d for deadlines in pending.values() for d in deadlines]
    await conn.execute(
        "DELETE FROM case_deadline WHERE case_id = ANY($1::text[]) AND raised_at IS NULL"
        " AND NOT (deadline_id = ANY($2::text[]))",
        list(pending),
        [d.deadline_id for d in kept],
    )
    if kept:
        await conn.execute(
            "INSERT INTO case_deadline (deadline_id, case_id, due_at, deadline)"
            " SELECT d, c, t, j::jsonb"
            " FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[]) AS r(d, c, t, j)"
            " ON CONFLICT (deadline_id) DO NOTHING",
            [d.deadline_id for d in kept],
            [d.case_id for d in kept],
            [d.due_at for d in kept],
            [_deadline_json(d) for d in kept],
        )


async def due_deadlines(conn: Any, now: dt.datetime) -> list[Deadline]:
    rows = await conn.fetch(
        "SELECT deadline FROM case_deadline WHERE raised_at IS NULL AND due_at <= $1"
        " ORDER BY due_at FOR UPDATE SKIP LOCKED",
        now,
    )
    return [_deadline_of(r[0]) for r in rows]


async def mark_raised(conn: Any, deadline_ids: Sequence[str], now: dt.datetime) -> None:
    await conn.execute(
        "UPDATE case_deadline SET raised_at = $2 WHERE deadline_id = ANY($1::text[])",
        list(deadline_ids),
        now,
    )


async def add_to_outbox(
    conn: Any, records: Sequence[Outgoing], keys: Mapping[str, DataKey] | None = None
) -> None:
    """`keys`: the data key of each case (by id) whose records are sealed whole; a record is
    keyed by its case id, and bound to its topic so it cannot be moved to another agency's."""
    keys = keys or {}
    rows = []
    for r in records:
        case_id = r.key.decode() if r.key is not None else None
        key = keys.get(case_id) if case_id is not None else None
        value = r.value
        if key is not None and case_id is not None:
            value = seal(key.key, r.value, context=_context("case_outbox", case_id, r.topic))
        headers = orjson.dumps(r.headers).decode()
        rows.append((r.topic, r.key, headers, value, None if key is None else key.key_id))
    if not rows:
        return
    # One statement; ids follow the order of `records`, the order the relay publishes in.
    await conn.execute(
        "INSERT INTO case_outbox (topic, key, headers, value, data_key_id)"
        " SELECT t, k, h::jsonb, v, d"
        " FROM unnest($1::text[], $2::bytea[], $3::text[], $4::bytea[], $5::bigint[])"
        " WITH ORDINALITY AS r(t, k, h, v, d, n) ORDER BY n",
        *map(list, zip(*rows, strict=True)),
    )


async def outbox_backlog(conn: Any) -> int:
    """Rows written but not yet published (the relay deletes each once the broker has it)."""
    count: int = await conn.fetchval("SELECT count(*) FROM case_outbox")
    return count


_OUTBOX_LOCK = 0x63625F6F7574  # "cb_out": the advisory lock of the outbox's one relay


async def lock_outbox(conn: Any) -> None:
    """Wait for, then hold until the transaction ends, the right to relay the outbox."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _OUTBOX_LOCK)


async def pending_outbox(
    conn: Any, vault: PersonVault, limit: int = 1000
) -> list[tuple[int, Outgoing | None]]:
    """The oldest records to publish, opened; None for one whose case's key was erased before
    it went out (it can no longer be read, so it is never published)."""
    rows = await conn.fetch(
        "SELECT id, topic, key, headers, value, data_key_id FROM case_outbox ORDER BY id LIMIT $1",
        limit,
    )
    key_ids = {r[5] for r in rows if r[5] is not None}
    keys = await vault.keys_by_id(conn, key_ids) if key_ids else {}
    out: list[tuple[int, Outgoing | None]] = []
    for row_id, topic, key, headers, value, key_id in rows:
        if key_id is not None:
            data_key = keys.get(key_id)
            if data_key is None:
                out.append((row_id, None))
                continue
            value = unseal(data_key, value, context=_context("case_outbox", key.decode(), topic))
        out.append(
            (row_id, Outgoing(topic=topic, key=key, headers=orjson.loads(headers), value=value))
        )
    return out


async def delete_published(conn: Any, ids: Sequence[int]) -> None:
    """Published records leave the outbox: nothing lingers once the broker has it."""
    await conn.execute("DELETE FROM case_outbox WHERE id = ANY($1::bigint[])", list(ids))


async def case_logs(
    conn: Any, vault: PersonVault, case_ids: Sequence[str] | None = None
) -> dict[str, list[CaseEvent]]:
    """Every case's event log (or these cases'), in version order, opened: what a rebuild
    replays, what an export maps."""
    if case_ids is None:
        rows = await conn.fetch(
            "SELECT case_id, version, event, data_key_id FROM case_event ORDER BY case_id, version"
        )
    else:
        rows = await conn.fetch(
            "SELECT case_id, version, event, data_key_id FROM case_event"
            " WHERE case_id = ANY($1::text[]) ORDER BY case_id, version",
            list(case_ids),
        )
    keys = await _keys_of(conn, vault, rows, column=3)
    logs: dict[str, list[CaseEvent]] = {}
    for case_id, version, text, key_id in rows:
        logs.setdefault(case_id, []).append(_opened_event(case_id, version, text, key_id, keys))
    return logs


async def snapshots(conn: Any, vault: PersonVault) -> dict[str, Case]:
    rows = await conn.fetch("SELECT case_id, snapshot, data_key_id FROM case_state")
    keys = await _keys_of(conn, vault, rows, column=2)
    return {r[0]: _opened_snapshot(r[0], r[1], r[2], keys) for r in rows}


async def _keys_of(
    conn: Any, vault: PersonVault, rows: Sequence[Any], *, column: int
) -> dict[int, bytes | None]:
    """Every key the rows were sealed with, in one round trip."""
    key_ids = {r[column] for r in rows if r[column] is not None}
    return await vault.keys_by_id(conn, key_ids) if key_ids else {}
