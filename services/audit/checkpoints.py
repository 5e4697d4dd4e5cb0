"""The tree head signer: follows the audit log, signs tree heads, exports them.

It keeps the whole Merkle tree in memory (loaded from the stored leaf hashes at start, then
extended as the log grows; it polls `audit_log` for `seq >= size`, which is cheap on the
(seq, ...) primary key). Every `every_records` new records, or after `every_seconds` when at
least one record arrived, it signs a tree head with the Ed25519 key from configuration
(never stored in the database) and writes it to three places:

1. `<export_dir>/tree-heads.jsonl`, appended and fsynced first: outside PostgreSQL, so a
   database owner who rewrites the log cannot rewrite the heads a verifier trusts;
2. the `audit_tree_head` table, which the API serves;
3. the Kafka topic `casebridge.audit.tree-heads` (retried until it succeeds).

It also appends every leaf hash to `<export_dir>/leaf-hashes.bin` (32 bytes per record, in
seq order). A verifier trusts that file only as far as a signed root matches it, and then it
names the exact first divergent record even when an attacker rewrote rows *and* their stored
leaf hashes consistently, where signed heads alone narrow it down to one signing interval.

The signer refuses to sign a log that contradicts what it signed before: at start every head
it can verify (file and table) must match the tree's root at that size, the leaf file must be
a prefix of the stored hashes, and records not yet covered by a head, like every new record,
must hash to their stored leaf hash. Signing over tampered rows would launder them.

Run one signer per log: two would both sign (harmlessly, the heads agree), but each keeps
its own files.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaProducer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from schemas.topics import AUDIT_TREE_HEADS
from services.audit.canonical import entry_leaf_hash
from services.audit.config import AuditSettings
from services.audit.logcheck import read_tree_heads_file
from services.audit.merkle import HASH_SIZE, MerkleTree
from services.audit.queries import (
    LEAF_COLUMNS,
    LogIntegrityError,
    all_tree_heads,
    entry_from_row,
    fetch_leaf_hashes,
)
from services.audit.tree_head import (
    SignedTreeHead,
    sign_tree_head,
    sth_to_json,
    verify_tree_head,
)
from services.runtime.credentials import (
    KafkaClientConfig,
    database_url,
    kafka_client,
    service_principal,
    service_role,
)
from services.runtime.database import Database
from services.runtime.logging import get_logger
from services.runtime.settings import Settings

__all__ = [
    "KafkaTreeHeadPublisher",
    "TreeHeadSigner",
    "run_signer",
]

log = get_logger("casebridge.audit.signer")

Publish = Callable[[SignedTreeHead], Awaitable[None]]
POLL_BATCH = 5000


class TreeHeadSigner:
    """Follows one audit log and signs its tree heads (see the module docstring)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        private_key: Ed25519PrivateKey,
        *,
        every_records: int = 1000,
        every_seconds: float = 10.0,
        export_dir: Path | None = None,
        publish: Publish | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._pool = pool
        self._key = private_key
        self._public = private_key.public_key()
        self._every_records = every_records
        self._every_seconds = every_seconds
        self._heads_path = None if export_dir is None else export_dir / "tree-heads.jsonl"
        self._leaves_path = None if export_dir is None else export_dir / "leaf-hashes.bin"
        self._publish = publish
        self._clock = clock
        self._tree = MerkleTree()
        self._leaves_written = 0
        self._last: SignedTreeHead | None = None
        self._last_at = 0.0
        self._unpublished: list[SignedTreeHead] = []
        self._started = False

    @property
    def tree_size(self) -> int:
        return len(self._tree)

    @property
    def last_signed(self) -> SignedTreeHead | None:
        return self._last

    @property
    def unpublished(self) -> int:
        return len(self._unpublished)

    # --- start: load and cross-check -------------------------------------------------------

    async def start(self) -> None:
        """Load the tree and refuse (LogIntegrityError) if it contradicts earlier heads."""
        hashes = await fetch_leaf_hashes(self._pool)
        self._tree = MerkleTree.from_leaf_hashes(hashes)
        size = len(hashes)
        heads = await all_tree_heads(self._pool)
        if self._heads_path is not None:
            heads += read_tree_heads_file(self._heads_path)
        covered = 0
        for head in heads:
            if not verify_tree_head(self._public, head):
                log.warning("tree head not signed by this key; ignored", tree_size=head.tree_size)
                continue
            if head.tree_size > size:
                raise LogIntegrityError(
                    size, f"a signed head covers {head.tree_size} records, the log has {size}"
                )
            if self._tree.root(head.tree_size) != head.root_hash:
                raise LogIntegrityError(
                    head.tree_size, f"stored leaves contradict the head of size {head.tree_size}"
                )
            covered = max(covered, head.tree_size)
            if self._last is None or (head.tree_size, head.timestamp) > (
                self._last.tree_size,
                self._last.timestamp,
            ):
                self._last = head
        await self._check_content(covered, size, hashes)
        self._check_leaf_file(hashes)
        self._last_at = self._clock()
        self._started = True
        if self._last is not None:
            # It may never have reached Kafka (a crash between the file and the publish).
            self._unpublished.append(self._last)
        log.info("signer started", tree_size=size, signed=covered)

    async def _check_content(self, start: int, end: int, stored: list[bytes]) -> None:
        """Records `start..end-1` must hash to their stored leaf hashes."""
        position = start
        while position < end:
            rows = await self._pool.fetch(
                f"SELECT {LEAF_COLUMNS} FROM audit_log"  # noqa: S608
                " WHERE seq >= $1 AND seq < $2 ORDER BY seq",
                position,
                min(end, position + POLL_BATCH),
            )
            for row in rows:
                self._check_row(row, stored[row[0]])
            position += POLL_BATCH

    @staticmethod
    def _check_row(row: asyncpg.Record, stored: bytes) -> bytes:
        seq = row[0]
        try:
            computed = entry_leaf_hash(entry_from_row(row))
        except (TypeError, ValueError) as exc:
            raise LogIntegrityError(seq, f"record cannot be encoded as a leaf: {exc}") from exc
        if computed != stored:
            raise LogIntegrityError(seq, "record does not hash to its stored leaf hash")
        return computed

    def _check_leaf_file(self, hashes: list[bytes]) -> None:
        if self._leaves_path is None:
            return
        self._leaves_path.parent.mkdir(parents=True, exist_ok=True)
        if not self._leaves_path.exists():
            self._leaves_path.touch()
        data = self._leaves_path.read_bytes()
        count = len(data) // HASH_SIZE
        if count > len(hashes):
            raise LogIntegrityError(
                len(hashes), f"the leaf file has {count} leaves, the log {len(hashes)}"
            )
        if data[: count * HASH_SIZE] != b"".join(hashes[:count]):
            first = next(
                i for i in range(count) if data[i * HASH_SIZE : (i + 1) * HASH_SIZE] != hashes[i]
            )
            raise LogIntegrityError(first, "stored leaf hash differs from the exported one")
        if len(data) != count * HASH_SIZE:  # our own torn write: drop the partial hash
            with self._leaves_path.open("r+b") as fh:
                fh.truncate(count * HASH_SIZE)
        self._leaves_written = count
        self._write_leaves(hashes[count:])

    def _write_leaves(self, hashes: Iterable[bytes]) -> None:
        if self._leaves_path is None:
            return
        data = b"".join(hashes)
        if not data:
            return
        with self._leaves_path.open("ab") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        self._leaves_written += len(data) // HASH_SIZE

    # --- follow and sign -------------------------------------------------------------------

    async def poll(self) -> int:
        """Append the records stored since the last poll; returns how many."""
        if not self._started:
            raise RuntimeError("signer not started")
        added = 0
        while True:
            size = len(self._tree)
            rows = await self._pool.fetch(
                f"SELECT {LEAF_COLUMNS}, leaf_hash FROM audit_log"  # noqa: S608
                " WHERE seq >= $1 ORDER BY seq LIMIT $2",
                size,
                POLL_BATCH,
            )
            fresh: list[bytes] = []
            for row in rows:
                expected = size + len(fresh)
                if row[0] != expected:
                    what = "repeated" if row[0] < expected else "missing"
                    raise LogIntegrityError(min(row[0], expected), f"seq {what}")
                fresh.append(self._check_row(row, bytes(row[12])))
            self._tree.extend(fresh)
            self._write_leaves(fresh)
            added += len(fresh)
            if len(rows) < POLL_BATCH:
                return added

    def due(self) -> bool:
        """Whether a head is due: N records since the last, or T seconds and any record."""
        signed = -1 if self._last is None else self._last.tree_size
        grown = len(self._tree) - signed
        if self._last is None:
            return True
        if grown <= 0:
            return False
        return grown >= self._every_records or self._clock() - self._last_at >= self._every_seconds

    async def sign(self) -> SignedTreeHead:
        """Sign the current tree, export the head (file, table, Kafka) and return it."""
        size = len(self._tree)
        timestamp = int(self._clock() * 1000)
        if self._last is not None:
            timestamp = max(timestamp, self._last.timestamp)
        head = sign_tree_head(self._key, size, self._tree.root(), timestamp)
        if self._heads_path is not None:
            self._heads_path.parent.mkdir(parents=True, exist_ok=True)
            with self._heads_path.open("ab") as fh:
                fh.write(sth_to_json(head) + b"\n")
                fh.flush()
                os.fsync(fh.fileno())
        await self._pool.execute(
            "INSERT INTO audit_tree_head (tree_size, root_hash, timestamp_ms, signature, key_id)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tree_size) DO NOTHING",
            head.tree_size,
            head.root_hash,
            head.timestamp,
            head.signature,
            head.key_id,
        )
        self._last = head
        self._last_at = self._clock()
        self._unpublished.append(head)
        await self.flush()
        log.info("tree head signed", tree_size=size, key_id=head.key_id[:16])
        return head

    async def flush(self) -> None:
        """Publish the heads Kafka has not acknowledged yet, oldest first."""
        if self._publish is None:
            self._unpublished.clear()
            return
        while self._unpublished:
            try:
                await self._publish(self._unpublished[0])
            except Exception as exc:
                log.warning(
                    "tree head not published yet; will retry",
                    pending=len(self._unpublished),
                    error=type(exc).__name__,
                )
                return
            self._unpublished.pop(0)

    async def step(self) -> SignedTreeHead | None:
        """One round: catch up, sign if due, retry publishing."""
        await self.poll()
        if self.due():
            return await self.sign()
        await self.flush()
        return None

    async def run(self, stop: asyncio.Event, *, poll_interval: float = 0.5) -> None:
        """Until `stop` is set. LogIntegrityError ends the loop (and should end the process):
        a signer must not keep signing a log it found tampered with. Database outages are
        retried."""
        if not self._started:
            await self.start()
        while not stop.is_set():
            try:
                await self.step()
            except LogIntegrityError:
                raise
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("signer round failed; retrying", error=type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), poll_interval)
        await self.poll()  # a clean shutdown leaves no stored record unsigned
        if len(self._tree) > (-1 if self._last is None else self._last.tree_size):
            await self.sign()


class KafkaTreeHeadPublisher:
    """Publishes heads to `<prefix>casebridge.audit.tree-heads` (one partition, total order),
    idempotent and acks=all, so an acknowledged head is not lost."""

    def __init__(self, client: KafkaClientConfig, *, topic_prefix: str = "") -> None:
        self.topic = topic_prefix + AUDIT_TREE_HEADS.name
        self._producer = AIOKafkaProducer(
            **client.aiokafka(),
            acks="all",
            enable_idempotence=True,
            request_timeout_ms=10_000,
            client_id=client.username,
        )
        self._started = False

    async def __call__(self, head: SignedTreeHead) -> None:
        if not self._started:
            await self._producer.start()
            self._started = True
        await self._producer.send_and_wait(
            self.topic,
            sth_to_json(head),
            key=b"audit-log",
            headers=[("content-type", b"application/json")],
        )

    async def close(self) -> None:
        if self._started:
            await self._producer.stop()
            self._started = False


def signer_connections(settings: Settings) -> tuple[Database, KafkaTreeHeadPublisher]:
    """The signer's database pool and tree-head publisher, as the signer's own identities."""
    db = Database(database_url(settings, service_role("signer")), max_size=2)
    client = kafka_client(settings, service_principal("signer"))
    return db, KafkaTreeHeadPublisher(client, topic_prefix=settings.topic_prefix)


async def run_signer(
    settings: Settings, audit: AuditSettings, stop: asyncio.Event | None = None
) -> None:
    """The signer as a long-running task (`casebridge audit sign`), until `stop` is set.

    It connects as its own Kafka principal and database role: the only ones that may write
    tree heads."""
    db, publisher = signer_connections(settings)
    await db.start()
    try:
        signer = TreeHeadSigner(
            db.pool,
            audit.private_key(),
            every_records=audit.sth_every_records,
            every_seconds=audit.sth_every_seconds,
            export_dir=audit.export_dir,
            publish=publisher,
        )
        await signer.run(stop or asyncio.Event(), poll_interval=audit.poll_interval_s)
    finally:
        await publisher.close()
        await db.close()
