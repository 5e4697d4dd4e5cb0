"""Verifies the stored audit log (PostgreSQL, read-only, or a JSONL export) against signed
heads: reads it, checks what the leaves cannot, and has `verify_entries` judge the leaves.

Trusts only the Ed25519 public key. Tree heads come from wherever the caller got them (the
signer's `tree-heads.jsonl`, the Kafka topic, the `audit_tree_head` table): only their
signatures make them evidence, and they are screened first (`tree_head.screen_tree_heads`):
a head not signed by the key (anyone who owns the table can insert one) or dated out of order
is ignored and listed in the report (`rejected_heads`, and a line of its detail), never a
reason to fail, nor the head the log is checked against. The latest accepted head (largest
size) is the one checked; a validly signed head larger than the log is the evidence of a lost
tail. Every record below its size is read in seq order, re-encoded as a leaf in the format
its `leaf_version` names (`canonical.encode_leaf`) and folded into the root, which must equal
the signed root (`verify_entries.verify_log` does the judging). Two things beyond the leaves
are checked, because the leaf holds only a digest:

* each record's value must still hash to its `payload_digest`: this catches a changed payload
  whose leaf fields were left alone. Values are stored sealed per person (services/audit/
  sealed.py), so this needs the key-encryption key (`kek`); without it the leaves, heads and
  absent values are still checked, the sealed values are not (and the report says so). A
  sealed value that does not open (altered, moved from another row, or naming a key that does
  not exist) is a failure; one whose person's key was erased is counted as erased, not a
  failure: erasure is what sealing is for, and the leaf still covers the record;
* when the root does not match, each record's stored `leaf_hash` is compared with the
  recomputed one. The column is not evidence by itself, but it is passed to `verify_log` as
  `leaf_hashes`, which trusts it exactly as far as a signed root matches it, and a record
  that contradicts its own stored hash is named when signed evidence only narrows a
  divergence down to an interval (it is what a careless tamperer leaves behind).

Given the signer's exported `leaf-hashes.bin` instead, the first divergent record is named
exactly even when rows and stored leaf hashes were rewritten together.

Reading a million rows and hashing them is CPU-bound Python, so the database check splits
the seq range over worker processes (each reads its own range on its own connection, fetches
the data keys of each batch of rows in one query, and loads the KEK itself, so the KEK never
crosses a pipe); only if that fast pass finds anything wrong is the log read again,
sequentially, for diagnosis.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import itertools
import operator
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Final, cast

import asyncpg
import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from services.audit.canonical import (
    LEAF_FIELDS,
    LEAF_FIELDS_V2,
    AuditEntry,
    attributes_from_json,
    canonical_attributes,
    encode_leaf,
    original_digest,
)
from services.audit.merkle import HASH_SIZE, MerkleTree, leaf_hash
from services.audit.queries import (
    LEAF_COLUMN_NAMES,
    LEAF_COLUMNS,
    LEAF_WIDTH,
    all_tree_heads,
    entry_from_row,
    rfc3339,
)
from services.audit.sealed import BatchKeys, batch_keys, open_value
from services.audit.tree_head import (
    HEAD_CONFLICTING_ROOT,
    RejectedHead,
    SignedTreeHead,
    load_public_key,
    screen_tree_heads,
    sth_from_json,
)
from services.audit.verify_entries import (
    BAD_SIGNATURE,
    DUPLICATE_SEQ,
    VerificationReport,
    verify_log,
)
from services.privacy.keys import KeyEncryptionKey
from services.privacy.sealing import SealBrokenError
from services.privacy.vault import PersonVault
from services.runtime.logging import get_logger
from services.runtime.progress import Progress

log = get_logger("casebridge.audit.verify")

__all__ = [
    "CONFLICTING_HEADS",
    "NO_TREE_HEAD",
    "PAYLOAD_MISMATCH",
    "SEALED_VALUE_BROKEN",
    "UNREADABLE_EXPORT",
    "KekLoader",
    "entry_from_record",
    "load_public_key_file",
    "read_leaf_hashes_file",
    "read_tree_heads_file",
    "verified_rows_sql",
    "verify_against_latest",
    "verify_database",
    "verify_export",
]

PAYLOAD_MISMATCH: Final = "payload_mismatch"
"""A record's value (opened, or absent) no longer hashes to the payload digest in its leaf."""
SEALED_VALUE_BROKEN: Final = "sealed_value_broken"
"""A record's sealed value does not open: altered, moved from another row, or naming a data
key that does not exist or does not open."""
NO_TREE_HEAD: Final = "no_tree_head"
"""No tree head to check against."""
CONFLICTING_HEADS: Final = "conflicting_tree_heads"
"""Two validly signed heads of one size with different roots: the key signed two histories."""
UNREADABLE_EXPORT: Final = "unreadable_export"
"""An export line is not a record (its position is reported as the divergent seq)."""

_ZERO = bytes(HASH_SIZE)
_EMPTY_DIGEST = hashlib.sha256(b"").digest()
_FETCH = 20_000
_PARALLEL_FROM = 50_000

KekLoader = Callable[[], KeyEncryptionKey]
"""How a verifying process gets the key-encryption key, e.g.
`functools.partial(load_kek, secrets_dir=...)`. Each worker process calls it itself, so it
must pickle; the KEK is then never sent between processes."""


def read_tree_heads_file(path: Path) -> list[SignedTreeHead]:
    """Every parseable head in a tree-heads JSONL file (unparseable lines are skipped and
    logged: a torn last line after a crash must not hide the heads before it)."""
    heads: list[SignedTreeHead] = []
    if not path.exists():
        return heads
    for number, line in enumerate(path.read_bytes().splitlines(), 1):
        if not line.strip():
            continue
        try:
            heads.append(sth_from_json(line))
        except ValueError as exc:
            log.warning("unreadable tree head line", file=str(path), line=number, error=str(exc))
    return heads


def read_leaf_hashes_file(path: Path) -> list[bytes]:
    """The leaf hashes in a leaf-hashes file (a torn trailing partial hash is ignored)."""
    data = path.read_bytes()
    usable = len(data) - len(data) % HASH_SIZE
    return [data[i : i + HASH_SIZE] for i in range(0, usable, HASH_SIZE)]


def load_public_key_file(path: Path | str) -> Ed25519PublicKey:
    """The verifier's only trust anchor: a PEM (or base64 raw) Ed25519 public key file."""
    return load_public_key(Path(path).read_text())


def _as_public_key(key: Ed25519PublicKey | Path | str | bytes) -> Ed25519PublicKey:
    if isinstance(key, Ed25519PublicKey):
        return key
    if isinstance(key, Path):
        return load_public_key_file(key)
    return load_public_key(key)


def _report(
    problem: str | None,
    size: int,
    detail: str,
    *,
    checked: int = 0,
    first: int | None = None,
) -> VerificationReport:
    return VerificationReport(
        ok=problem is None,
        problem=problem,
        checked=checked,
        tree_size=size,
        first_divergent_seq=first,
        intact_prefix=size if problem is None else (first or 0),
        divergent_before=None if first is None else first + 1,
        detail=detail,
    )


@dataclass(frozen=True, slots=True)
class _Heads:
    latest: SignedTreeHead | None
    verified: list[SignedTreeHead]
    rejected: tuple[RejectedHead, ...]
    refusal: VerificationReport | None


def _select_heads(heads: Iterable[SignedTreeHead], key: Ed25519PublicKey) -> _Heads:
    """The latest accepted head (largest size, then newest), the accepted ones as evidence,
    and the ones set aside.

    Ignoring a head the key did not sign cannot hide a truncated tail: such a head is no
    evidence of anything (anyone can write one), while the signer's real heads, wherever the
    caller got them (its file, Kafka), still are. Two validly signed heads of one size with
    different roots do fail: the key signed two histories, so no head can be trusted to say
    which log is the real one.
    """
    every = list(heads)
    if not every:
        return _Heads(None, [], (), _report(NO_TREE_HEAD, 0, "no tree head to verify against"))
    screened = screen_tree_heads(every, key)
    rejected = screened.rejected
    conflict = next((r for r in rejected if r.reason == HEAD_CONFLICTING_ROOT), None)
    latest = screened.latest
    if conflict is not None:
        size = max(h.tree_size for h in screened.verified())
        refusal = _report(CONFLICTING_HEADS, size, conflict.detail)
        return _Heads(latest, list(screened.accepted), rejected, _with_rejected(refusal, rejected))
    if latest is None:
        size = max(h.tree_size for h in every)
        refusal = _report(BAD_SIGNATURE, size, "no tree head is validly signed by this key")
        return _Heads(None, [], rejected, _with_rejected(refusal, rejected))
    return _Heads(latest, list(screened.accepted), rejected, None)


def _with_rejected(
    report: VerificationReport, rejected: tuple[RejectedHead, ...]
) -> VerificationReport:
    """The report with the heads that were set aside listed (and summed up in its detail)."""
    if not rejected:
        return report
    shown = ", ".join(f"size {r.head.tree_size} ({r.reason})" for r in rejected[:5])
    more = f" and {len(rejected) - 5} more" if len(rejected) > 5 else ""
    note = f"ignored {len(rejected)} tree head(s) that cannot be trusted: {shown}{more}"
    return replace(report, rejected_heads=rejected, detail=f"{report.detail}; {note}")


@dataclass(slots=True)
class _Evidence:
    """What the reading pass saw besides the leaves (positions are the order rows came in)."""

    recomputed: bytearray
    stored: bytearray
    rows: int = 0
    misordered: int | None = None
    payload_bad: int | None = None
    seal_bad: int | None = None
    payloads_checked: int = 0
    erased: int = 0
    unchecked: int = 0
    """Sealed values not opened: no key-encryption key, or an export without payloads."""
    unchecked_why: str = "no key-encryption key"
    under_unopenable_keys: int = 0
    """Values whose data key does not open: the wrong KEK if it is all of them."""

    def absorb(self, part: _Evidence) -> None:
        """Add the payload findings of another range."""
        self.payload_bad = _min(self.payload_bad, part.payload_bad)
        self.seal_bad = _min(self.seal_bad, part.seal_bad)
        self.payloads_checked += part.payloads_checked
        self.erased += part.erased
        self.unchecked += part.unchecked
        self.under_unopenable_keys += part.under_unopenable_keys

    def check_value(
        self, seq: int, digest: bytes, key_id: int | None, sealed: Any, keys: BatchKeys | None
    ) -> None:
        """Judge one stored value. `sealed` is the sealed bytes, or (read without keys)
        whether there are any; `keys` are the batch's data keys, None without a KEK."""
        if sealed is None or sealed is False:  # the record had no value
            if key_id is not None:
                self.seal_bad = _min(self.seal_bad, seq)
            elif digest != _EMPTY_DIGEST:
                self.payload_bad = _min(self.payload_bad, seq)
            else:
                self.payloads_checked += 1
            return
        if key_id is None:
            self.seal_bad = _min(self.seal_bad, seq)
        elif keys is None or sealed is True:
            self.unchecked += 1
        elif key_id in keys.erased:
            self.erased += 1
        elif key_id not in keys.live:
            self.seal_bad = _min(self.seal_bad, seq)
            self.under_unopenable_keys += key_id in keys.unopenable
        else:
            try:
                value = open_value(keys.live[key_id], sealed, seq)
            except SealBrokenError:
                self.seal_bad = _min(self.seal_bad, seq)
                return
            if hashlib.sha256(value).digest() != digest:
                self.payload_bad = _min(self.payload_bad, seq)
            else:
                self.payloads_checked += 1

    def payload_note(self) -> str:
        note = f"{self.payloads_checked} values match their digests"
        if self.erased:
            note += f", {self.erased} erased (their data keys destroyed)"
        if self.unchecked:
            note += f", {self.unchecked} sealed values not checked ({self.unchecked_why})"
        return note

    def first_self_contradiction(self, lo: int, hi: int) -> int | None:
        """First position in lo..hi-1 whose record differs from its own stored leaf hash."""
        r, s = self.recomputed, self.stored
        for i in range(lo, min(hi, self.rows)):
            a = i * HASH_SIZE
            if r[a : a + HASH_SIZE] != s[a : a + HASH_SIZE]:
                return i
        return None


def _min(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _conclude(
    report: VerificationReport,
    evidence: _Evidence,
    *,
    exact_leaves: bool,
    unsigned: int,
) -> VerificationReport:
    """Fold the payload checks and the stored-leaf-hash comparison into `verify_log`'s report.

    `first_divergent_seq` becomes the smallest seq proven or shown wrong; the detail says by
    what evidence.
    """
    first = report.first_divergent_seq
    problem = report.problem
    notes: list[str] = [report.detail]
    if problem == DUPLICATE_SEQ and first is not None:
        first -= 1  # rows come in seq order: the repeated seq is the one before the break
        notes = [f"seq {first} appears more than once"]
    if not report.ok and first is None and report.divergent_before is not None:
        hint = evidence.first_self_contradiction(report.intact_prefix, report.divergent_before)
        if hint is not None:
            first = hint
            notes.append(f"seq {hint} no longer hashes to its stored leaf hash")
        elif not exact_leaves:
            notes.append("the exported leaf-hashes file would name the exact record")
    for code, seq, what in (
        (PAYLOAD_MISMATCH, evidence.payload_bad, "value no longer hashes to its digest"),
        (SEALED_VALUE_BROKEN, evidence.seal_bad, "sealed value does not open with its data key"),
    ):
        if seq is not None and (first is None or seq < first or report.ok):
            if first is None or seq < first:
                first = seq
                problem = code
            notes.append(f"seq {seq}: {what}")
    if evidence.under_unopenable_keys:
        notes.append(
            f"{evidence.under_unopenable_keys} values are under data keys that do not open with"
            " this key-encryption key (the wrong KEK, or wrapped keys altered)"
        )
    report = replace(report, payloads_checked=evidence.payloads_checked, erased=evidence.erased)
    if problem is None:
        tail = f"; {unsigned} newer records not yet covered by a signed head" if unsigned else ""
        return replace(report, detail=f"{report.detail}; {evidence.payload_note()}{tail}")
    intact = report.intact_prefix if first is None else min(report.intact_prefix, first)
    before = report.divergent_before if first is None else first + 1
    if report.divergent_before is not None and before is not None:
        before = min(before, report.divergent_before)
    return replace(
        report,
        ok=False,
        problem=problem,
        first_divergent_seq=first,
        intact_prefix=intact,
        divergent_before=before,
        detail="; ".join(notes),
    )


# --- the database ----------------------------------------------------------------------------


def verified_rows_sql(open_values: bool) -> str:
    """The rows of seq $1..$2-1 as verification reads them: leaf columns, then the data key
    id and the sealed value (or, when values are not to be opened, only whether there is one:
    a verifier without the KEK reads no ciphertext)."""
    value = "sealed_value" if open_values else "sealed_value IS NOT NULL"
    return (
        f"SELECT {LEAF_COLUMNS}, data_key_id, {value} FROM audit_log"  # noqa: S608
        " WHERE seq >= $1 AND seq < $2 ORDER BY seq, recorded_at"
    )


async def _connect(dsn: str) -> asyncpg.Connection:
    """A connection that cannot write, whatever role the URL names.

    Sorting is switched off for it: reading a seq range in order is then a merge of the
    partitions' (seq, recorded_at) primary key scans, which return rows already in order,
    instead of a sort of wide rows that the planner otherwise prefers and that costs more
    than the scan itself.
    """
    settings = {"default_transaction_read_only": "on", "enable_sort": "off", "jit": "off"}
    # SQLAlchemy's URL form, as in services.runtime.database (not imported: worker processes
    # start faster without SQLAlchemy).
    plain = dsn.replace("postgresql+asyncpg://", "postgresql://", 1)
    conn: asyncpg.Connection = await asyncpg.connect(plain, server_settings=settings)
    return conn


class _LeafRow(asyncpg.Record):  # type: ignore[misc]  # asyncpg ships no type hints
    """A row selected with `LEAF_COLUMNS` first, readable by `encode_leaf` as it is.

    `encode_leaf` only reads the entry's attributes, so the row itself can stand in for an
    `AuditEntry`: building one per row (and running its `__post_init__` checks) would cost
    a quarter of the verification time and decide nothing. The columns are typed by
    PostgreSQL, and a row whose encoding equals the signed leaf *is* the logged record
    (SHA-256), while any other row, valid or not, fails the root comparison. Tests pin the
    encoding of such rows to that of the equivalent `AuditEntry`. Two fields need work: the
    `attributes` column holds a JSON object (the leaf, its canonical pairs), and the leaf
    holds the digest of `original_bytes`.
    """


for _index, _name in enumerate(LEAF_COLUMN_NAMES):
    if _name not in ("attributes", "original_bytes"):
        setattr(_LeafRow, _name, property(operator.itemgetter(_index)))
_ATTRIBUTES = LEAF_COLUMN_NAMES.index("attributes")
_ORIGINAL = LEAF_COLUMN_NAMES.index("original_bytes")
_LeafRow.attributes = property(lambda row: attributes_from_json(row[_ATTRIBUTES]))
_LeafRow.original_digest = property(lambda row: original_digest(row[_ORIGINAL]))
_KEY, _VALUE = LEAF_WIDTH, LEAF_WIDTH + 1
"""Where `verified_rows_sql` puts the data key id and the sealed value, after the leaf columns."""


async def _read_chunk(
    dsn: str, lo: int, hi: int, kek: KekLoader | None, read: Callable[[int], None] | None = None
) -> _Evidence:
    """Recompute the leaf hashes of seq lo..hi-1 with `encode_leaf` and check the values
    (runs in a worker process); `read(rows)` is told of each batch checked."""
    evidence = _Evidence(bytearray(), bytearray())
    append_r = evidence.recomputed.extend
    sha256 = hashlib.sha256
    vault = PersonVault(kek()) if kek is not None else None
    conn = await _connect(dsn)
    try:
        statement = await conn.prepare(verified_rows_sql(vault is not None), record_class=_LeafRow)
        position = lo
        pending = asyncio.ensure_future(statement.fetch(lo, min(hi, lo + _FETCH)))
        while position < hi:
            rows = await pending
            position = min(hi, position + _FETCH)
            keys = None
            if vault is not None:  # one query for the batch's keys, before the next fetch
                keys = await batch_keys(conn, vault, {r[_KEY] for r in rows if r[_KEY] is not None})
            if position < hi:  # the database works on the next batch while we hash this one
                nxt = statement.fetch(position, min(hi, position + _FETCH))
                pending = asyncio.ensure_future(nxt)
            for row in rows:
                seq = row[0]
                if evidence.misordered is None and seq != lo + evidence.rows:
                    evidence.misordered = lo + evidence.rows
                try:
                    append_r(sha256(b"\x00" + encode_leaf(cast(AuditEntry, row))).digest())
                except (TypeError, ValueError, AttributeError, KeyError):
                    append_r(_ZERO)
                    if evidence.misordered is None:
                        evidence.misordered = seq
                evidence.check_value(seq, row[11], row[_KEY], row[_VALUE], keys)
                evidence.rows += 1
            if read is not None:
                read(len(rows))
    finally:
        await conn.close()
    return evidence


def _read_chunk_process(dsn: str, lo: int, hi: int, kek: KekLoader | None) -> _Evidence:
    return asyncio.run(_read_chunk(dsn, lo, hi, kek))


def _chunk_done(progress: Progress, rows: int, _: object) -> None:
    progress.advance(rows)


async def _fast_pass(
    dsn: str, size: int, kek: KekLoader | None, workers: int, progress: Progress | None = None
) -> _Evidence:
    """Every leaf recomputed and every value checked, in `workers` processes. With
    `progress`, in more, smaller chunks than workers, so that the count moves as each ends."""
    if size < _PARALLEL_FROM or workers <= 1:
        return await _read_chunk(dsn, 0, size, kek, None if progress is None else progress.advance)
    chunks = workers if progress is None else max(workers, min(workers * 8, size // _FETCH))
    bounds = [size * i // chunks for i in range(chunks + 1)]
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        futures = [
            loop.run_in_executor(pool, _read_chunk_process, dsn, a, b, kek)
            for a, b in itertools.pairwise(bounds)
        ]
        if progress is not None:
            for future, (a, b) in zip(futures, itertools.pairwise(bounds), strict=True):
                future.add_done_callback(partial(_chunk_done, progress, b - a))
        parts = await asyncio.gather(*futures)
    merged = _Evidence(bytearray(), bytearray())
    for a, part in zip(bounds, parts, strict=False):
        if merged.misordered is None:
            if part.misordered is not None:
                merged.misordered = part.misordered
            elif merged.rows != a:
                merged.misordered = merged.rows
        merged.recomputed += part.recomputed
        merged.rows += part.rows
        merged.absorb(part)
    return merged


async def _stored_leaf_hashes(conn: asyncpg.Connection, size: int) -> bytearray:
    """The `leaf_hash` column of seq 0..size-1, positionally (repeats and holes included)."""
    out = bytearray()
    step = _FETCH * 5
    for lo in range(0, size, step):
        rows = await conn.fetch(
            "SELECT leaf_hash FROM audit_log WHERE seq >= $1 AND seq < $2"
            " ORDER BY seq, recorded_at",
            lo,
            min(size, lo + step),
        )
        for (leaf,) in rows:
            out += leaf if len(leaf) == HASH_SIZE else _ZERO
    return out


def _fast_ok(evidence: _Evidence, size: int, heads: _Heads) -> bool:
    """The common case, decided without `verify_log`: leaves in order, root and every earlier
    signed root match, payloads intact. Anything else goes to the full diagnosis."""
    assert heads.latest is not None
    if evidence.misordered is not None or evidence.rows != size:
        return False
    if evidence.payload_bad is not None or evidence.seal_bad is not None:
        return False
    r = bytes(evidence.recomputed)
    tree = MerkleTree.from_leaf_hashes(r[i : i + HASH_SIZE] for i in range(0, len(r), HASH_SIZE))
    if tree.root(size) != heads.latest.root_hash:
        return False
    return all(tree.root(h.tree_size) == h.root_hash for h in heads.verified if h.tree_size <= size)


def _entries_from_db(
    conn: asyncpg.Connection, size: int, loop: asyncio.AbstractEventLoop
) -> Iterator[AuditEntry]:
    """Entries of seq 0..size-1 in order (repeats and holes included, so `verify_log` sees
    them), fetched on the event loop for a consumer running in another thread.

    The caller owns the connection: this generator may be closed on the loop's own thread
    (when `verify_log` stops early), where waiting for the loop would deadlock.
    """
    sql = (
        f"SELECT {LEAF_COLUMNS} FROM audit_log"  # noqa: S608
        " WHERE seq >= $1 AND seq < $2 ORDER BY seq, recorded_at"
    )
    for lo in range(0, size, _FETCH):
        rows = asyncio.run_coroutine_threadsafe(
            conn.fetch(sql, lo, min(size, lo + _FETCH)), loop
        ).result()
        for row in rows:
            try:
                entry = entry_from_row(row)
            except (TypeError, ValueError):
                return  # verify_log reports the missing entry as the break
            yield entry


async def verify_database(
    database_url: str,
    public_key: Ed25519PublicKey | Path | str | bytes,
    *,
    tree_heads: Iterable[SignedTreeHead] = (),
    use_table_heads: bool = True,
    leaf_hashes: Sequence[bytes] | None = None,
    kek: KekLoader | None = None,
    workers: int | None = None,
    progress: bool | None = False,
) -> VerificationReport:
    """Verify the log in PostgreSQL (read-only) against the latest of the given heads.

    `tree_heads`: heads from outside the database (file, Kafka); with `use_table_heads` the
    `audit_tree_head` table's are added. `leaf_hashes`: the signer's exported leaf hashes.
    `kek`: loads the key-encryption key, to open and check the sealed values (the connection's
    role must read `data_key`: the auditor's does). `workers`: processes for the fast pass
    (default: one per CPU). `progress`: records checked, on stderr (None: if it is a
    terminal; `services.runtime.progress`).
    """
    key = _as_public_key(public_key)
    conn = await _connect(database_url)
    try:
        heads_list = list(tree_heads)
        if use_table_heads:
            heads_list += await all_tree_heads(conn)
        heads = _select_heads(heads_list, key)
        if heads.refusal is not None:
            return heads.refusal
        assert heads.latest is not None
        size = heads.latest.tree_size
        unsigned: int = await conn.fetchval("SELECT count(*) FROM audit_log WHERE seq >= $1", size)
    finally:
        await conn.close()
    workers = workers or max(1, min(8, os.cpu_count() or 1))
    with Progress("verify", total=size, enabled=progress) as shown:
        evidence = await _fast_pass(
            database_url, size, kek, workers, shown if shown.enabled else None
        )
    if _fast_ok(evidence, size, heads):
        report = _conclude(
            _report(None, size, f"{size} records match the signed root", checked=size),
            evidence,
            exact_leaves=leaf_hashes is not None,
            unsigned=unsigned,
        )
        return _with_rejected(report, heads.rejected)
    conn = await _connect(database_url)
    try:
        evidence.stored = await _stored_leaf_hashes(conn, size)
        stored = [
            bytes(evidence.stored[i : i + HASH_SIZE])
            for i in range(0, len(evidence.stored), HASH_SIZE)
        ]
        report = await asyncio.to_thread(
            verify_log,
            _entries_from_db(conn, size, asyncio.get_running_loop()),
            heads.latest,
            key,
            earlier_sths=heads.verified,
            leaf_hashes=leaf_hashes if leaf_hashes is not None else stored,
        )
    finally:
        await conn.close()
    report = _conclude(report, evidence, exact_leaves=leaf_hashes is not None, unsigned=unsigned)
    return _with_rejected(report, heads.rejected)


async def verify_against_latest(
    database_url: str,
    public_key: Ed25519PublicKey | Path | str | bytes,
    *,
    tree_heads_file: Path | None = None,
    leaf_hashes_file: Path | None = None,
    kek: KekLoader | None = None,
) -> VerificationReport:
    """The README demo's last step: the stored log against the latest signed tree head.

    Heads come from the `audit_tree_head` table plus, if given, the signer's exported
    `tree-heads.jsonl` (which a database owner cannot rewrite); `leaf_hashes_file` (the
    signer's `leaf-hashes.bin`, ignored if missing) makes the divergent seq exact in every
    case. With `kek` the sealed values are opened and checked too.
    """
    heads = read_tree_heads_file(tree_heads_file) if tree_heads_file is not None else []
    leaves = None
    if leaf_hashes_file is not None:
        try:
            leaves = read_leaf_hashes_file(leaf_hashes_file)
        except FileNotFoundError:  # no signer has exported leaves yet: heads alone will do
            leaves = None
    return await verify_database(
        database_url, public_key, tree_heads=heads, leaf_hashes=leaves, kek=kek
    )


# --- an export ---------------------------------------------------------------------------------


def entry_from_record(record: Any) -> AuditEntry:
    """The leaf entry of a record as exported or served by the API (ValueError/TypeError if
    it is not one); the stored `leaf_hash` in it is ignored.

    `leaf_version` says which fields the leaf covers (exports made before there was a v2
    carry none: they are v1). For v1 the record's `agency`, `attributes` and
    `original_bytes` are not part of the entry: nothing signed covers them.
    """
    if not isinstance(record, dict):
        raise ValueError("line is not a JSON object")
    recorded_at = record.get("recorded_at")
    digest = record.get("payload_digest")
    version = record.get("leaf_version", 1)
    if not isinstance(recorded_at, str) or not recorded_at.endswith("Z"):
        raise ValueError("recorded_at must be an RFC 3339 UTC time ending in Z")
    if not isinstance(digest, str):
        raise ValueError("payload_digest must be hex")
    if type(version) is not int:
        raise ValueError("leaf_version must be an integer")
    names = LEAF_FIELDS_V2[:-1] if version == 2 else LEAF_FIELDS
    values: dict[str, Any] = {name: record.get(name) for name in names}
    values["recorded_at"] = datetime.fromisoformat(recorded_at[:-1]).replace(tzinfo=UTC)
    if rfc3339(values["recorded_at"]) != recorded_at:
        raise ValueError("recorded_at is not in the leaf format's spelling")
    values["payload_digest"] = bytes.fromhex(digest)
    if version == 2:
        attributes = values["attributes"]
        if not isinstance(attributes, dict):
            raise TypeError("attributes must be an object")
        values["attributes"] = canonical_attributes(attributes)
        original = record.get("original_bytes")
        if original is not None and not isinstance(original, str):
            raise TypeError("original_bytes must be base64 or null")
        values["original_digest"] = original_digest(
            None if original is None else base64.b64decode(original, validate=True)
        )
    return AuditEntry(**values, leaf_version=version)  # which checks every field's type


def _export_lines(path: Path) -> Iterator[bytes]:
    with path.open("rb") as fh:
        for line in fh:
            if line.strip():
                yield line


def _export_evidence(
    path: Path, size: int, progress: Progress | None = None
) -> tuple[_Evidence, int | None]:
    """First pass over an export: stored/recomputed leaf hashes, payload checks, and the
    position of the first line that is not a record."""
    evidence = _Evidence(bytearray(), bytearray(), unchecked_why="the export has no payloads")
    for position, line in enumerate(_export_lines(path)):
        if position >= size:
            break
        if progress is not None and position % 1000 == 0:
            progress.update(position)
        try:
            record = orjson.loads(line)
            entry = entry_from_record(record)
            stored = bytes.fromhex(record.get("leaf_hash") or "")
            raw_b64 = record.get("raw_value", False)
        except (orjson.JSONDecodeError, TypeError, ValueError):
            return evidence, position
        evidence.recomputed += leaf_hash(encode_leaf(entry))
        evidence.stored += stored if len(stored) == HASH_SIZE else _ZERO
        evidence.rows += 1
        if raw_b64 is False:  # the export carries no payloads
            evidence.unchecked += 1
        elif raw_b64 is None and record.get("erased") is True:
            evidence.erased += 1
        else:
            try:
                raw = b"" if raw_b64 is None else base64.b64decode(raw_b64, validate=True)
            except (binascii.Error, TypeError, ValueError):
                raw = None
            if raw is None or hashlib.sha256(raw).digest() != entry.payload_digest:
                evidence.payload_bad = _min(evidence.payload_bad, entry.seq)
            else:
                evidence.payloads_checked += 1
    return evidence, None


def _entries_from_export(path: Path) -> Iterator[AuditEntry]:
    for line in _export_lines(path):
        try:
            yield entry_from_record(orjson.loads(line))
        except (orjson.JSONDecodeError, TypeError, ValueError):
            return


def verify_export(
    path: Path,
    public_key: Ed25519PublicKey | Path | str | bytes,
    tree_heads: Iterable[SignedTreeHead],
    *,
    leaf_hashes: Sequence[bytes] | None = None,
    progress: bool | None = False,
) -> VerificationReport:
    """Verify a whole-log JSONL export (`casebridge audit export --all`) against the latest of
    `tree_heads`. Payloads are checked when the export carries them (`--payload`); records
    exported as erased are counted, not checked: the file alone cannot tell an erasure from a
    payload removed from it, so an export's erased count is worth comparing with the
    database's. `progress`: lines read, on stderr, as `verify_database`."""
    key = _as_public_key(public_key)
    heads = _select_heads(tree_heads, key)
    if heads.refusal is not None:
        return heads.refusal
    assert heads.latest is not None
    size = heads.latest.tree_size
    with Progress("verify", total=size, enabled=progress) as shown:
        evidence, unreadable = _export_evidence(path, size, shown if shown.enabled else None)
        shown.update(evidence.rows)
    stored = [
        bytes(evidence.stored[i : i + HASH_SIZE]) for i in range(0, len(evidence.stored), HASH_SIZE)
    ]
    report = verify_log(
        _entries_from_export(path),
        heads.latest,
        key,
        earlier_sths=heads.verified,
        leaf_hashes=leaf_hashes if leaf_hashes is not None else stored,
    )
    report = _conclude(report, evidence, exact_leaves=leaf_hashes is not None, unsigned=0)
    if unreadable is not None and (
        report.first_divergent_seq is None or unreadable <= report.first_divergent_seq
    ):
        report = replace(
            report,
            ok=False,
            problem=UNREADABLE_EXPORT,
            first_divergent_seq=unreadable,
            intact_prefix=min(report.intact_prefix, unreadable),
            detail=f"export line {unreadable + 1} is not a record; " + report.detail,
        )
    return _with_rejected(report, heads.rejected)
