"""The auditors' read side of the audit log: plain async query functions over asyncpg.

Every function takes an asyncpg pool or connection (`Queryable`) and returns plain values, so
the HTTP API, the CLI and the benchmark share one implementation. Lists are ordered by `seq`
and paged by keyset (`seq > last`) with an opaque cursor, which stays O(page) deep into the
log where OFFSET would not.

Proofs need subtree hashes of the Merkle tree. Reading them from PostgreSQL per request would
mean reading up to n leaf hashes, so `LeafHashCache` keeps the tree (64 bytes per leaf) in
memory and catches up with the log on demand. The stored `leaf_hash` column is used as is:
a proof built from a tampered column simply fails to verify against the signed root, which
is the auditor's check, not ours.

Tree heads are read from `audit_tree_head`, which the database owner can write to, so they are
screened against the public key before use (`screened_tree_heads`): a head that is not signed
by the key, covers more records than the log holds, or goes back in time never becomes the
latest head a proof is built against, and is listed with the reason instead.

Payloads are stored sealed per person (services/audit/sealed.py). A reader given the person
vault gets them opened, with the keys of a whole page fetched in one query; a record whose
person's key was erased comes back marked `erased`, without payload: its metadata, digest and
proofs are unaffected. A sealed value that does not open (altered, or moved from another row)
is a `LogIntegrityError`, a data key that does not open a `KeyUnavailableError`; neither is
ever a payload.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final, Protocol

import asyncpg
import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from services.audit.canonical import LEAF_FIELDS, AuditEntry, attributes_from_json, original_digest
from services.audit.merkle import MerkleTree
from services.audit.sealed import batch_keys, open_value
from services.audit.tree_head import ScreenedHeads, SignedTreeHead, screen_tree_heads
from services.privacy.keys import KeyUnavailableError
from services.privacy.sealing import SealBrokenError
from services.privacy.vault import PersonVault

__all__ = [
    "LEAF_COLUMNS",
    "LEAF_COLUMN_NAMES",
    "LEAF_WIDTH",
    "MAX_SEQ",
    "AuditRow",
    "ConsistencyProof",
    "EventFilter",
    "InclusionProof",
    "LeafHashCache",
    "LogIntegrityError",
    "NotCoveredError",
    "NotFoundError",
    "Page",
    "all_tree_heads",
    "case_exists",
    "consistency_proof",
    "decode_cursor",
    "encode_cursor",
    "entry_from_row",
    "export_case",
    "export_log",
    "fetch_leaf_hashes",
    "find_events",
    "get_event",
    "inclusion_proof",
    "log_size",
    "rfc3339",
    "screened_tree_heads",
    "tree_head_page",
]


class Queryable(Protocol):
    """What the functions need of an asyncpg pool or connection (either will do)."""

    async def fetch(self, query: str, *args: Any) -> list[Any]: ...
    async def fetchrow(self, query: str, *args: Any) -> Any: ...
    async def fetchval(self, query: str, *args: Any) -> Any: ...


MAX_SEQ: Final = 2**63 - 1
EXPORT_BATCH = 2000
LEAF_BATCH = 50_000  # small enough that the planner never JIT-compiles the query

LEAF_COLUMN_NAMES: Final = (
    "seq",
    "event_id",
    "event_source",
    "event_type",
    "subject",
    "kafka_topic",
    "kafka_partition",
    "kafka_offset",
    "recorded_at",
    "outcome",
    "reason_code",
    "payload_digest",
    "agency",
    "attributes",
    "original_bytes",
    "leaf_version",
)
"""The columns an `AuditEntry` is made of, in its field order (see `entry_from_row`;
`original_bytes` enters the leaf as its digest)."""
LEAF_COLUMNS: Final = ", ".join(LEAF_COLUMN_NAMES)
LEAF_WIDTH: Final = len(LEAF_COLUMN_NAMES)
"""Columns selected after `LEAF_COLUMNS` start at this index."""
_EVENT_COLUMNS = (
    "seq, recorded_at, event_id, event_source, event_type, subject, agency, outcome,"
    " reason_code, kafka_topic, kafka_partition, kafka_offset, attributes, payload_digest,"
    " leaf_hash, leaf_version, original_bytes"
)
_EVENT_WIDTH = 17
_PAYLOAD_COLUMNS = ", sealed_value, data_key_id"
_HEAD_COLUMNS = "tree_size, root_hash, timestamp_ms, signature, key_id"


class NotFoundError(LookupError):
    """The record, case or tree head asked for does not exist."""


class NotCoveredError(ValueError):
    """A proof was asked for sizes or a record the log (or its signed heads) do not cover."""


class LogIntegrityError(RuntimeError):
    """The stored log is not a gapless sequence from 0: it was tampered with or is corrupt."""

    def __init__(self, seq: int, detail: str) -> None:
        super().__init__(f"audit log broken at seq {seq}: {detail}")
        self.seq = seq
        self.detail = detail


# --- rows ----------------------------------------------------------------------------------


def rfc3339(value: datetime) -> str:
    """The leaf format's spelling of an instant: UTC, six fractional digits, ``Z``."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def entry_from_row(row: Sequence[Any]) -> AuditEntry:
    """An `AuditEntry` from a row selected with `LEAF_COLUMNS` first (in that order): in the
    leaf format the row names, so v1 rows leave out what v1 leaves never covered."""
    values = dict(zip(LEAF_FIELDS, row[:12], strict=True))
    version = row[15]
    if version == 1:
        return AuditEntry(**values)
    return AuditEntry(
        **values,
        agency=row[12],
        attributes=attributes_from_json(row[13]),
        original_digest=original_digest(None if row[14] is None else bytes(row[14])),
        leaf_version=version,
    )


@dataclass(frozen=True, slots=True)
class AuditRow:
    """One audit record as auditors see it; the payload only when it was asked for."""

    seq: int
    recorded_at: datetime
    event_id: str
    event_source: str
    event_type: str
    subject: str | None
    agency: str | None
    outcome: str
    reason_code: str | None
    kafka_topic: str
    kafka_partition: int
    kafka_offset: int
    attributes_json: str
    payload_digest: bytes
    leaf_hash: bytes
    leaf_version: int = 1
    """The leaf format the record was logged in: 2 covers `agency`, `attributes` and
    `original_bytes` too."""
    original_bytes: bytes | None = None
    """The exact key and headers (services/audit/records.py `encode_original`) when the text
    fields could not hold them exactly; None when they do."""
    with_payload: bool = False
    raw_value: bytes | None = None
    """The value as received, opened from its seal (None: no value, or erased)."""
    erased: bool = False
    """The person's data key was erased: the value is gone for good, by design."""

    @classmethod
    def from_record(cls, record: asyncpg.Record) -> AuditRow:
        """The metadata of a row selected with `_EVENT_COLUMNS` first (payload not opened)."""
        return cls(*tuple(record)[:_EVENT_WIDTH])

    def entry(self) -> AuditEntry:
        """The leaf entry, recomputed from the fields (never from the stored leaf hash)."""
        v2 = self.leaf_version == 2
        return AuditEntry(
            seq=self.seq,
            event_id=self.event_id,
            event_source=self.event_source,
            event_type=self.event_type,
            subject=self.subject,
            kafka_topic=self.kafka_topic,
            kafka_partition=self.kafka_partition,
            kafka_offset=self.kafka_offset,
            recorded_at=self.recorded_at,
            outcome=self.outcome,
            reason_code=self.reason_code,
            payload_digest=self.payload_digest,
            agency=self.agency if v2 else None,
            attributes=attributes_from_json(self.attributes_json) if v2 else None,
            original_digest=original_digest(self.original_bytes) if v2 else None,
            leaf_version=self.leaf_version,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the export line and the API item).

        Digests are lowercase hex as in the leaf format. With the payload: `raw_value` is the
        exact bytes (base64), which is what `payload_digest` hashes, `payload` the same bytes
        parsed as JSON for convenience (null when they are not JSON), and `erased` whether the
        person's data key was destroyed (both are then null).
        """
        try:
            attributes = orjson.loads(self.attributes_json)
        except orjson.JSONDecodeError:
            attributes = None
        out: dict[str, Any] = {
            "seq": self.seq,
            "recorded_at": rfc3339(self.recorded_at),
            "event_id": self.event_id,
            "event_source": self.event_source,
            "event_type": self.event_type,
            "subject": self.subject,
            "agency": self.agency,
            "outcome": self.outcome,
            "reason_code": self.reason_code,
            "kafka_topic": self.kafka_topic,
            "kafka_partition": self.kafka_partition,
            "kafka_offset": self.kafka_offset,
            "attributes": attributes,
            "payload_digest": self.payload_digest.hex(),
            "leaf_hash": self.leaf_hash.hex(),
            "leaf_version": self.leaf_version,
            "original_bytes": (
                None
                if self.original_bytes is None
                else base64.b64encode(self.original_bytes).decode("ascii")
            ),
        }
        if self.with_payload:
            raw = self.raw_value
            payload: Any = None
            if raw is not None:
                try:
                    payload = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    payload = None
            out["payload"] = payload
            out["raw_value"] = None if raw is None else base64.b64encode(raw).decode("ascii")
            out["erased"] = self.erased
        return out

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())


# --- cursors -------------------------------------------------------------------------------

_CURSOR = re.compile(r"[A-Za-z0-9_-]{1,40}")


def encode_cursor(kind: str, position: int) -> str:
    """Opaque page cursor: url-safe base64 of ``<kind>:<position>`` (unpadded).

    The kind keeps a cursor of one list from being replayed against another.
    """
    return base64.urlsafe_b64encode(f"{kind}:{position}".encode()).decode().rstrip("=")


def decode_cursor(kind: str, cursor: str) -> int:
    """The position in a cursor of `kind`; ValueError for anything else."""
    if not _CURSOR.fullmatch(cursor):
        raise ValueError("malformed cursor")
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, ValueError) as exc:
        raise ValueError("malformed cursor") from exc
    prefix, _, number = text.partition(":")
    if prefix != kind or not number.isdigit() or len(number) > 19:
        raise ValueError("malformed cursor")
    position = int(number)
    if position > MAX_SEQ:
        raise ValueError("malformed cursor")
    return position


# --- events --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventFilter:
    """What to select: every given field must match. Time bounds are [since, until), seq
    bounds [from_seq, to_seq]."""

    case_id: str | None = None
    agency: str | None = None
    event_type: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    from_seq: int | None = None
    to_seq: int | None = None


@dataclass(frozen=True, slots=True)
class Page:
    items: list[AuditRow]
    next_cursor: str | None


EVENTS_CURSOR = "e"
HEADS_CURSOR = "h"


def _where(f: EventFilter, after: int | None) -> tuple[str, list[Any]]:
    """Only the given predicates, as parameters: the planner sees plain column comparisons
    and can use the (column, seq) indexes and partition pruning."""
    clauses: list[str] = []
    args: list[Any] = []

    def add(sql: str, value: Any) -> None:
        args.append(value)
        clauses.append(sql.format(f"${len(args)}"))

    if f.case_id is not None:
        add("subject = {}", f.case_id)
    if f.agency is not None:
        add("agency = {}", f.agency)
    if f.event_type is not None:
        add("event_type = {}", f.event_type)
    if f.outcome is not None:
        add("outcome = {}", f.outcome)
    if f.since is not None:
        add("recorded_at >= {}", f.since)
    if f.until is not None:
        add("recorded_at < {}", f.until)
    if f.from_seq is not None:
        add("seq >= {}", f.from_seq)
    if f.to_seq is not None:
        add("seq <= {}", f.to_seq)
    if after is not None:
        add("seq > {}", after)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


async def find_events(
    db: Queryable,
    f: EventFilter,
    *,
    after: int | None = None,
    limit: int = 100,
    vault: PersonVault | None = None,
) -> Page:
    """One page of matching records in seq order, from just after seq `after`; with their
    payloads, opened, when given the `vault`."""
    if not 1 <= limit <= 10_000:
        raise ValueError("limit must be in 1..10000")
    where, args = _where(f, after)
    columns = _EVENT_COLUMNS + (_PAYLOAD_COLUMNS if vault is not None else "")
    args.append(limit + 1)
    rows = await db.fetch(
        f"SELECT {columns} FROM audit_log{where} ORDER BY seq LIMIT ${len(args)}",  # noqa: S608
        *args,
    )
    items = await _rows(db, rows[:limit], vault)
    more = len(rows) > limit
    return Page(items, encode_cursor(EVENTS_CURSOR, items[-1].seq) if more else None)


async def get_event(
    db: Queryable, seq: int, *, vault: PersonVault | None = None
) -> AuditRow | None:
    columns = _EVENT_COLUMNS + (_PAYLOAD_COLUMNS if vault is not None else "")
    row = await db.fetchrow(
        f"SELECT {columns} FROM audit_log WHERE seq = $1 ORDER BY recorded_at LIMIT 1",  # noqa: S608
        seq,
    )
    return None if row is None else (await _rows(db, [row], vault))[0]


async def _rows(
    db: Queryable, records: Sequence[asyncpg.Record], vault: PersonVault | None
) -> list[AuditRow]:
    """Rows from records; with a vault, their sealed values opened with one key query."""
    rows = [AuditRow.from_record(r) for r in records]
    if vault is None:
        return rows
    sealed_at, key_at = _EVENT_WIDTH, _EVENT_WIDTH + 1
    keys = await batch_keys(db, vault, {r[key_at] for r in records if r[key_at] is not None})
    opened: list[AuditRow] = []
    for row, record in zip(rows, records, strict=True):
        sealed, key_id = record[sealed_at], record[key_at]
        if sealed is None and key_id is None:
            opened.append(replace(row, with_payload=True))
        elif key_id in keys.erased:
            opened.append(replace(row, with_payload=True, erased=True))
        elif key_id in keys.unopenable:
            raise KeyUnavailableError(f"the data key of seq {row.seq} does not open")
        elif sealed is None or key_id not in keys.live:
            raise LogIntegrityError(row.seq, "its sealed value names no data key")
        else:
            try:
                raw = open_value(keys.live[key_id], sealed, row.seq)
            except SealBrokenError:
                raise LogIntegrityError(row.seq, "its sealed value does not open") from None
            opened.append(replace(row, with_payload=True, raw_value=raw))
    return opened


async def case_exists(db: Queryable, case_id: str) -> bool:
    found: bool = await db.fetchval(
        "SELECT EXISTS (SELECT 1 FROM audit_log WHERE subject = $1)", case_id
    )
    return found


async def _export(
    db: Queryable, f: EventFilter, *, vault: PersonVault | None, batch: int
) -> AsyncIterator[bytes]:
    after: int | None = None
    while True:
        page = await find_events(db, f, after=after, limit=batch, vault=vault)
        for row in page.items:
            yield row.to_json() + b"\n"
        if page.next_cursor is None:
            return
        after = page.items[-1].seq


def export_case(
    db: Queryable,
    case_id: str,
    *,
    vault: PersonVault | None = None,
    batch: int = EXPORT_BATCH,
) -> AsyncIterator[bytes]:
    """A case's full history as JSON Lines, in seq order, fetched in keyset batches (a slow
    reader holds no connection or transaction between batches); payloads with a `vault`."""
    return _export(db, EventFilter(case_id=case_id), vault=vault, batch=batch)


def export_log(
    db: Queryable,
    *,
    vault: PersonVault | None = None,
    from_seq: int = 0,
    to_seq: int | None = None,
    batch: int = EXPORT_BATCH,
) -> AsyncIterator[bytes]:
    """The whole log (or a seq range) as JSON Lines, the input `casebridge audit verify
    --export` recomputes the tree from; payloads (erased ones marked) with a `vault`."""
    f = EventFilter(from_seq=from_seq, to_seq=to_seq)
    return _export(db, f, vault=vault, batch=batch)


# --- tree heads ------------------------------------------------------------------------------


def _head(row: asyncpg.Record) -> SignedTreeHead:
    return SignedTreeHead(
        tree_size=row["tree_size"],
        root_hash=bytes(row["root_hash"]),
        timestamp=row["timestamp_ms"],
        signature=bytes(row["signature"]),
        key_id=row["key_id"],
    )


def tree_head_page(
    heads: ScreenedHeads, *, after: int | None = None, limit: int = 100
) -> tuple[list[SignedTreeHead], str | None]:
    """One page of the accepted tree heads, oldest first, and the next page's cursor."""
    rest = [h for h in heads.accepted if after is None or h.tree_size > after]
    page = rest[:limit]
    more = len(rest) > limit
    return page, encode_cursor(HEADS_CURSOR, page[-1].tree_size) if more else None


async def all_tree_heads(db: Queryable) -> list[SignedTreeHead]:
    """Every row of `audit_tree_head`, unchecked: what anyone who can write the table put
    there (use `screened_tree_heads` for heads to rely on)."""
    rows = await db.fetch(
        f"SELECT {_HEAD_COLUMNS} FROM audit_tree_head ORDER BY tree_size"  # noqa: S608
    )
    return [_head(r) for r in rows]


async def log_size(db: Queryable) -> int:
    """How many records the log holds: one past its largest seq (holes are the verifier's
    business, not this count's)."""
    size: int | None = await db.fetchval("SELECT max(seq) + 1 FROM audit_log")
    return size or 0


async def screened_tree_heads(
    db: Queryable,
    public_key: Ed25519PublicKey,
    *,
    signed: Callable[[SignedTreeHead], bool] | None = None,
) -> ScreenedHeads:
    """The table's heads screened against the key and the log's size (see the module
    docstring); `signed` as in `screen_tree_heads`.

    The heads are read before the log's size: the signer stores a head only after the
    records it covers, so a head signed in between still fits the size read after it.
    """
    heads = await all_tree_heads(db)
    size = await log_size(db)
    return screen_tree_heads(heads, public_key, log_size=size, signed=signed)


# --- leaves and proofs ---------------------------------------------------------------------


async def fetch_leaf_hashes(
    db: Queryable, start: int = 0, end: int | None = None, *, batch: int = LEAF_BATCH
) -> list[bytes]:
    """Stored leaf hashes of seq `start` .. `end - 1` (or to the end of the log), in order.

    Raises `LogIntegrityError` at the first seq that is missing or repeated: a proof over a
    log with holes would be a proof over some other log.
    """
    hashes: list[bytes] = []
    expected = start
    while end is None or expected < end:
        stop = expected + batch if end is None else min(end, expected + batch)
        rows = await db.fetch(
            "SELECT seq, leaf_hash FROM audit_log WHERE seq >= $1 AND seq < $2 ORDER BY seq",
            expected,
            stop,
        )
        for seq, leaf in rows:
            if seq != expected:
                what = "repeated" if seq < expected else "missing"
                raise LogIntegrityError(expected if seq > expected else seq, f"seq {what}")
            hashes.append(bytes(leaf))
            expected += 1
        if expected < stop:  # the log ends here (or has a hole that a later row would show)
            if end is not None:
                raise LogIntegrityError(expected, "seq missing")
            # `>=`: a row at `expected` committed since the read above means the log grew (the
            # writer commits in seq order), not that it has a hole; the prefix read stands.
            later = await db.fetchval("SELECT min(seq) FROM audit_log WHERE seq >= $1", expected)
            if later is not None and later != expected:
                raise LogIntegrityError(expected, "seq missing")
            break
    return hashes


class LeafHashCache:
    """The log's Merkle tree in memory, extended from PostgreSQL when a proof needs more.

    Appends only: the log is append-only, so leaves once loaded never change. One lock makes
    concurrent requests wait for a single catch-up instead of each reading the same rows.
    """

    def __init__(self) -> None:
        self._tree = MerkleTree()
        self._lock = asyncio.Lock()

    @property
    def size(self) -> int:
        return len(self._tree)

    async def tree(self, db: Queryable, at_least: int = 0) -> MerkleTree:
        """The tree, caught up to the end of the log if it has fewer than `at_least` leaves."""
        if len(self._tree) >= at_least:
            return self._tree
        async with self._lock:
            if len(self._tree) < at_least:
                self._tree.extend(await fetch_leaf_hashes(db, len(self._tree)))
        return self._tree


@dataclass(frozen=True, slots=True)
class InclusionProof:
    """Audit path of leaf `seq` in the tree of the first `tree_size` leaves (leaf to root)."""

    seq: int
    tree_size: int
    leaf_hash: bytes
    path: list[bytes]
    tree_head: SignedTreeHead | None
    """The signed head of that size, if one exists (always when the size was not given)."""


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    first: int
    second: int
    path: list[bytes]
    first_head: SignedTreeHead | None
    second_head: SignedTreeHead | None


async def inclusion_proof(
    db: Queryable,
    cache: LeafHashCache,
    seq: int,
    tree_size: int | None = None,
    *,
    heads: ScreenedHeads,
) -> InclusionProof:
    """Proof for record `seq` against `tree_size`, or against the latest accepted head."""
    if tree_size is None:
        head = heads.latest
        if head is None:
            raise NotFoundError("no signed tree head yet")
        tree_size = head.tree_size
    else:
        head = heads.at(tree_size)
    if not 0 <= seq < tree_size:
        raise NotCoveredError(f"seq {seq} is not in the tree of size {tree_size}")
    tree = await cache.tree(db, tree_size)
    if tree_size > len(tree):
        raise NotCoveredError(f"tree size {tree_size} exceeds the log ({len(tree)} records)")
    return InclusionProof(
        seq, tree_size, tree.leaf_hash(seq), tree.inclusion_proof(seq, tree_size), head
    )


async def consistency_proof(
    db: Queryable,
    cache: LeafHashCache,
    first: int,
    second: int | None = None,
    *,
    heads: ScreenedHeads,
) -> ConsistencyProof:
    """Proof that the tree of size `first` is a prefix of the one of size `second` (default:
    the latest accepted head)."""
    second_head: SignedTreeHead | None
    if second is None:
        second_head = heads.latest
        if second_head is None:
            raise NotFoundError("no signed tree head yet")
        second = second_head.tree_size
    else:
        second_head = heads.at(second)
    if not 0 <= first <= second:
        raise NotCoveredError(f"need 0 <= first <= second, got {first} and {second}")
    tree = await cache.tree(db, second)
    if second > len(tree):
        raise NotCoveredError(f"tree size {second} exceeds the log ({len(tree)} records)")
    return ConsistencyProof(
        first,
        second,
        tree.consistency_proof(first, second),
        heads.at(first),
        second_head,
    )
