"""The tree head signer: follows the audit log, signs tree heads, exports them, and refuses to
sign when the places it exported to no longer agree with what it signed.

It keeps the whole Merkle tree in memory (loaded from the stored leaf hashes at start, then
extended as the log grows; it polls `audit_log` for `seq >= size`, which is cheap on the
(seq, ...) primary key). Every `every_records` new records, or after `every_seconds` when at
least one record arrived, it signs a tree head with the Ed25519 key from configuration
(never stored in the database) and writes it to three places:

1. `<export_dir>/tree-heads.jsonl`, appended and fsynced first: outside PostgreSQL, so a
   database owner who rewrites the log cannot rewrite the heads a verifier trusts;
2. the `audit_tree_head` table, which the API serves;
3. the Kafka topic `casebridge.audit.tree-heads` (retried until it succeeds), kept forever
   (services/access/plan.py), which only the signer's principal may write.

It also appends every leaf hash to `<export_dir>/leaf-hashes.bin` (32 bytes per record, in
seq order). A verifier trusts that file only as far as a signed root matches it, and then it
names the exact first divergent record even when an attacker rewrote rows *and* their stored
leaf hashes consistently, where signed heads alone narrow it down to one signing interval.

The signer refuses to sign (`SigningRefusedError`, or `LogIntegrityError` for the log itself)
a log that contradicts what it signed before, or when its places disagree with each other:

* at start it reads every head in every place (file, table, topic): each must be signed by
  its key, cover no more records than the log holds, match the tree's root at its size, be
  the only head of its size, and be dated no earlier than a smaller head; the leaf file
  must be a prefix of the stored hashes, and records not yet covered by a head, like every
  new record, must hash to their stored leaf hash (signing over tampered rows would launder
  them). A head missing from a place (a crash between two exports) is exported there again;
* before each signature it reads what each place gained since it last looked (new lines,
  new rows of a larger size, new Kafka records) and checks them the same way. A head of an
  older size slipped into the table later is caught at the next start, and by the API and
  the verifier at once (they screen every head they read: services/audit/tree_head.py).

A refusal is for a human: someone wrote heads with the signer's credentials or key, or
edited its file or the table. The heads are evidence; keep them. To resume after the
investigation, remove what the signer did not sign (the table's rows as the owner; a Kafka
record with `kafka-delete-records.sh` up to just past its offset, after which the signer
publishes again every head of its own the topic no longer holds).

`SignerHealth` says whether the signer is doing its job, for the service's health check: the
composition root (services/bootstrap.py) watches the signer's task with `watch_signer` and
stops the audit consumer when it ends, so that records wait, intact, in Kafka rather than
pile up unsigned in PostgreSQL.

Run one signer per log: a second one's heads are heads this one did not sign.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Final, Protocol

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, TopicAuthorizationFailedError
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from schemas.topics import AUDIT_TREE_HEADS
from services.audit.canonical import entry_leaf_hash
from services.audit.config import AuditSettings
from services.audit.merkle import HASH_SIZE, MerkleTree
from services.audit.queries import (
    LEAF_COLUMNS,
    LEAF_WIDTH,
    LogIntegrityError,
    all_tree_heads,
    entry_from_row,
    fetch_leaf_hashes,
)
from services.audit.tree_head import (
    SignedTreeHead,
    sign_tree_head,
    sth_from_json,
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
from services.runtime.metrics import AUDIT_VERIFICATION_FAILURES, signer_state
from services.runtime.settings import Settings

__all__ = [
    "KafkaTreeHeads",
    "SignerHealth",
    "SigningRefusedError",
    "TreeHeadSigner",
    "TreeHeadTopic",
    "run_signer",
    "signer_connections",
    "watch_signer",
]

log = get_logger("casebridge.audit.signer")

POLL_BATCH = 5000
FILE, TABLE, TOPIC = "file", "table", "kafka"
"""The places heads are exported to, as named in refusals and logs."""
_TRANSIENT: Final = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, KafkaError)
"""Failures a later round may not meet (a database or broker outage): retried, not fatal."""


class SigningRefusedError(RuntimeError):
    """The places the signer exported heads to disagree with what it signed: signing on
    would bless a history someone else wrote."""

    def __init__(self, place: str, detail: str) -> None:
        super().__init__(f"the signer refuses to sign: {place}: {detail}")
        self.place = place
        self.detail = detail


class TreeHeadTopic(Protocol):
    """The Kafka topic as the signer uses it: publish a head, read back what was added."""

    async def publish(self, head: SignedTreeHead) -> None: ...

    async def read_new(self) -> list[SignedTreeHead]: ...


# --- the places ---------------------------------------------------------------------------------


class _HeadFile:
    """`tree-heads.jsonl`: one head per line, appended and fsynced."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._read = 0  # bytes already checked

    def read_new(self) -> list[SignedTreeHead]:
        """Heads in the lines added since the last read (the whole file at first).

        A partial last line is the signer's own torn write (a crash mid-append): it is cut
        off at the first read, as nothing else appends here. Any other line that is not a
        head means someone edited the file.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch()
        data = self.path.read_bytes()
        if len(data) < self._read:
            raise SigningRefusedError(FILE, f"{self.path} shrank since it was last read")
        if self._read == 0 and data and not data.endswith(b"\n"):
            data = data[: data.rfind(b"\n") + 1]
            with self.path.open("r+b") as fh:
                fh.truncate(len(data))
            log.warning("torn last line of the tree heads file dropped", file=str(self.path))
        fresh, self._read = data[self._read :], len(data)
        heads = []
        for line in fresh.splitlines():
            if not line.strip():
                continue
            try:
                heads.append(sth_from_json(line))
            except ValueError as exc:
                raise SigningRefusedError(FILE, f"a line is not a tree head: {exc}") from None
        return heads

    def write(self, heads: Iterable[SignedTreeHead]) -> None:
        data = b"".join(sth_to_json(h) + b"\n" for h in heads)
        if not data:
            return
        with self.path.open("ab") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        self._read += len(data)


class _HeadTable:
    """`audit_tree_head`: the API's copy."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._above = -1  # rows of a size above this are new

    async def read_new(self) -> list[SignedTreeHead]:
        """Every row at first; then the rows of a size larger than any seen before."""
        heads = [h for h in await all_tree_heads(self._pool) if h.tree_size > self._above]
        if heads:
            self._above = max(self._above, *(h.tree_size for h in heads))
        return heads

    async def write(self, head: SignedTreeHead) -> None:
        await self._pool.execute(
            "INSERT INTO audit_tree_head (tree_size, root_hash, timestamp_ms, signature, key_id)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tree_size) DO NOTHING",
            head.tree_size,
            head.root_hash,
            head.timestamp,
            head.signature,
            head.key_id,
        )


class KafkaTreeHeads:
    """The topic `<prefix>casebridge.audit.tree-heads` (one partition, total order).

    Publishes idempotently with acks=all, so an acknowledged head is not lost, and reads the
    topic back (no consumer group: nothing is committed, the signer keeps its position).
    """

    def __init__(
        self, client: KafkaClientConfig, *, topic_prefix: str = "", read_timeout_s: float = 30
    ) -> None:
        self.topic = topic_prefix + AUDIT_TREE_HEADS.name
        self._client = client
        self._partition = TopicPartition(self.topic, 0)
        self._timeout = read_timeout_s
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def publish(self, head: SignedTreeHead) -> None:
        if self._producer is None:
            producer = AIOKafkaProducer(
                **self._client.aiokafka(),
                acks="all",
                enable_idempotence=True,
                request_timeout_ms=10_000,
                client_id=self._client.username,
            )
            await producer.start()
            self._producer = producer
        await self._producer.send_and_wait(
            self.topic,
            sth_to_json(head),
            key=b"audit-log",
            headers=[("content-type", b"application/json")],
        )

    async def read_new(self) -> list[SignedTreeHead]:
        """The heads published since the last read (every head the topic holds at first),
        up to its end as of now."""
        try:
            return await self._read_new()
        except TopicAuthorizationFailedError:
            raise SigningRefusedError(
                TOPIC,
                f"the signer may not read {self.topic} to check it (grant it Read:"
                " `casebridge agencies sync`)",
            ) from None

    async def _read_new(self) -> list[SignedTreeHead]:
        consumer = await self._started_consumer()
        tp = self._partition
        start = await consumer.position(tp)
        try:
            end = (await consumer.end_offsets([tp]))[tp]
            deadline = asyncio.get_running_loop().time() + self._timeout
            heads: list[SignedTreeHead] = []
            while await consumer.position(tp) < end:
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError(f"{self.topic} not read to its end in {self._timeout} s")
                batch = await consumer.getmany(tp, timeout_ms=500, max_records=5000)
                for record in batch.get(tp, ()):
                    try:
                        heads.append(sth_from_json(record.value or b""))
                    except ValueError:
                        raise SigningRefusedError(
                            TOPIC, f"the record at offset {record.offset} is not a tree head"
                        ) from None
        except BaseException:
            consumer.seek(tp, start)  # the next read starts over: nothing read is skipped
            raise
        return heads

    async def _started_consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                **self._client.aiokafka(),
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                client_id=self._client.username,
            )
            await consumer.start()
            consumer.assign([self._partition])
            await consumer.seek_to_beginning(self._partition)
            self._consumer = consumer
        return self._consumer

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None


# --- the signer ---------------------------------------------------------------------------------


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
        topic: TreeHeadTopic | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._pool = pool
        self._key = private_key
        self._public = private_key.public_key()
        self._every_records = every_records
        self._every_seconds = every_seconds
        self._file = None if export_dir is None else _HeadFile(export_dir / "tree-heads.jsonl")
        self._leaves_path = None if export_dir is None else export_dir / "leaf-hashes.bin"
        self._table = _HeadTable(pool)
        self._topic = topic
        self._clock = clock
        self._tree = MerkleTree()
        self._leaves_written = 0
        self._heads: dict[int, SignedTreeHead] = {}  # every head known, by size
        self._sizes: list[int] = []  # their sizes, sorted
        self._found: dict[str, set[int]] = {FILE: set(), TABLE: set(), TOPIC: set()}
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
        """Load the tree and check it and every place against each other; refuse
        (LogIntegrityError, SigningRefusedError) on any contradiction."""
        hashes = await fetch_leaf_hashes(self._pool)
        self._tree = MerkleTree.from_leaf_hashes(hashes)
        size = len(hashes)
        await self._check_places()
        covered = 0 if self._last is None else self._last.tree_size
        await self._check_content(covered, size, hashes)
        self._check_leaf_file(hashes)
        await self._export_missing()
        self._last_at = self._clock()
        self._started = True
        self._report()
        log.info("signer started", tree_size=size, signed=covered, heads=len(self._heads))

    async def _check_places(self) -> int:
        """Read what each place gained since the last look and check it against the tree and
        every head known; returns how many heads were new to the signer."""
        known = len(self._heads)
        # Each place's heads are taken in as soon as it is read: a place that fails to read
        # (an outage, retried) must not make those already read be read past and forgotten.
        if self._file is not None:
            self._take(FILE, self._file.read_new())
        self._take(TABLE, await self._table.read_new())
        if self._topic is not None:
            self._take(TOPIC, await self._topic.read_new())
        return len(self._heads) - known

    def _take(self, place: str, heads: list[SignedTreeHead]) -> None:
        for head in heads:
            self._admit(place, head)
            self._found[place].add(head.tree_size)

    def _admit(self, place: str, head: SignedTreeHead) -> None:
        """Add one head found in `place` to the known ones, or refuse."""
        size = head.tree_size
        known = self._heads.get(size)
        if known is not None:
            if known != head:
                raise SigningRefusedError(
                    place, f"another head of size {size} than the one signed (or found first)"
                )
            return
        if not verify_tree_head(self._public, head):
            raise SigningRefusedError(place, f"the head of size {size} is not signed by its key")
        if size > len(self._tree):
            raise LogIntegrityError(
                len(self._tree),
                f"a signed head covers {size} records, the log has {len(self._tree)}",
            )
        if self._tree.root(size) != head.root_hash:
            raise LogIntegrityError(size, f"stored leaves contradict the head of size {size}")
        at = bisect.bisect_left(self._sizes, size)
        before = self._heads[self._sizes[at - 1]] if at else None
        after = self._heads[self._sizes[at]] if at < len(self._sizes) else None
        if (before is not None and before.timestamp > head.timestamp) or (
            after is not None and head.timestamp > after.timestamp
        ):
            raise SigningRefusedError(
                place, f"the head of size {size} is dated out of order with its neighbours"
            )
        self._sizes.insert(at, size)
        self._heads[size] = head
        if self._last is None or size > self._last.tree_size:
            self._last = head

    async def _export_missing(self) -> None:
        """Write each known head to the places that lack it (oldest first)."""
        ordered = [self._heads[s] for s in self._sizes]
        if self._file is not None:
            missing = [h for h in ordered if h.tree_size not in self._found[FILE]]
            self._file.write(missing)
            self._found[FILE].update(h.tree_size for h in missing)
            if missing:
                log.warning("tree heads missing from the file exported again", count=len(missing))
        missing = [h for h in ordered if h.tree_size not in self._found[TABLE]]
        for head in missing:
            await self._table.write(head)
            self._found[TABLE].add(head.tree_size)
        if missing:
            log.warning("tree heads missing from the table exported again", count=len(missing))
        if self._topic is not None:
            queued = {h.tree_size for h in self._unpublished}
            missing = [h for h in ordered if h.tree_size not in self._found[TOPIC] | queued]
            self._unpublished += missing
            if missing:
                log.warning("tree heads missing from Kafka exported again", count=len(missing))

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
                fresh.append(self._check_row(row, bytes(row[LEAF_WIDTH])))
            self._tree.extend(fresh)
            self._write_leaves(fresh)
            added += len(fresh)
            self._report()
            if len(rows) < POLL_BATCH:
                return added

    def _report(self) -> None:
        """The tree's size and the latest head, for the metrics (`signer_state`)."""
        last = self._last
        signer_state(
            tree_size=len(self._tree),
            signed_size=None if last is None else last.tree_size,
            signed_at_ms=None if last is None else last.timestamp,
        )

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
        """Check the places, sign the current tree, export the head (file, table, Kafka) and
        return it."""
        if await self._check_places():  # heads signed elsewhere: every place gets them
            await self._export_missing()
        size = len(self._tree)
        known = self._heads.get(size)
        if known is not None:  # signed before (found in a place): that one stays the head
            return known
        timestamp = int(self._clock() * 1000)
        if self._last is not None:
            timestamp = max(timestamp, self._last.timestamp)
        head = sign_tree_head(self._key, size, self._tree.root(), timestamp)
        if self._file is not None:
            self._file.write([head])
            self._found[FILE].add(size)
        await self._table.write(head)
        self._found[TABLE].add(size)
        self._admit("self", head)
        self._last_at = self._clock()
        if self._topic is not None:
            self._unpublished.append(head)
        self._report()
        await self.flush()
        log.info("tree head signed", tree_size=size, key_id=head.key_id[:16])
        return head

    async def flush(self) -> None:
        """Publish the heads Kafka has not acknowledged yet, oldest first."""
        if self._topic is None:
            self._unpublished.clear()
            return
        while self._unpublished:
            head = self._unpublished[0]
            try:
                await self._topic.publish(head)
            except Exception as exc:
                log.warning(
                    "tree head not published yet; will retry",
                    pending=len(self._unpublished),
                    error=type(exc).__name__,
                )
                return
            self._found[TOPIC].add(head.tree_size)
            self._unpublished.pop(0)

    async def step(self) -> SignedTreeHead | None:
        """One round: catch up, sign if due, retry publishing."""
        await self.poll()
        if self.due():
            return await self.sign()
        await self.flush()
        return None

    async def run(self, stop: asyncio.Event, *, poll_interval: float = 0.5) -> None:
        """Until `stop` is set. A refusal (LogIntegrityError, SigningRefusedError) ends the
        loop, logged at error level: a signer must not keep signing a log or heads it found
        tampered with. Database and broker outages are retried."""
        try:
            while not self._started and not stop.is_set():
                try:
                    await self.start()
                except _TRANSIENT as exc:
                    log.warning("signer start failed; retrying", error=type(exc).__name__)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), poll_interval)
            while not stop.is_set():
                try:
                    await self.step()
                except _TRANSIENT as exc:
                    log.warning("signer round failed; retrying", error=type(exc).__name__)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), poll_interval)
            if self._started:
                await self.poll()  # a clean shutdown leaves no stored record unsigned
                if len(self._tree) > (-1 if self._last is None else self._last.tree_size):
                    await self.sign()
        except (LogIntegrityError, SigningRefusedError) as exc:
            failed = exc.place if isinstance(exc, SigningRefusedError) else "log"
            AUDIT_VERIFICATION_FAILURES.labels(failed).inc()
            log.error("the signer refuses to sign", problem=str(exc))
            raise


def signer_connections(settings: Settings) -> tuple[Database, KafkaTreeHeads]:
    """The signer's database pool and tree-heads topic, as the signer's own identities."""
    db = Database(database_url(settings, service_role("signer")), max_size=2)
    client = kafka_client(settings, service_principal("signer"))
    return db, KafkaTreeHeads(client, topic_prefix=settings.topic_prefix)


async def run_signer(
    settings: Settings, audit: AuditSettings, stop: asyncio.Event | None = None
) -> None:
    """The signer as a long-running task (`casebridge audit sign`), until `stop` is set.

    It connects as its own Kafka principal and database role: the only ones that may write
    tree heads."""
    db, topic = signer_connections(settings)
    await db.start()
    try:
        signer = TreeHeadSigner(
            db.pool,
            audit.private_key(),
            every_records=audit.sth_every_records,
            every_seconds=audit.sth_every_seconds,
            export_dir=audit.export_dir,
            topic=topic,
        )
        await signer.run(stop or asyncio.Event(), poll_interval=audit.poll_interval_s)
    finally:
        await topic.close()
        await db.close()


# --- health -------------------------------------------------------------------------------------


class SignerHealth:
    """Whether the audit service's signer is doing its job, for a health endpoint to report.

    Healthy while the signer runs, or when none was configured (then `signing` is False and
    the service says so at start). Once the signer refused to sign or its task ended in any
    way other than a requested stop, it is unhealthy for good, with `problem` saying why:
    the cause (tampering, foreign heads, a bug) needs a person, not a retry.
    """

    def __init__(self) -> None:
        self.signing = False
        self.problem: str | None = None

    @property
    def healthy(self) -> bool:
        return self.problem is None

    def fail(self, problem: str) -> None:
        """Record the first problem and say it at error level, at once."""
        if self.problem is None:
            self.problem = problem
        self.signing = False
        log.error("the tree head signer stopped: the audit service is unhealthy", problem=problem)


def watch_signer(
    task: asyncio.Task[None],
    health: SignerHealth,
    *,
    stopping: asyncio.Event,
    on_failure: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Turn `health` unhealthy the moment `task` (the signer) ends unasked, and then run
    `on_failure` (the composition root stops the audit consumer with it)."""
    health.signing = True
    pending: set[asyncio.Task[None]] = set()

    def ended(done: asyncio.Task[None]) -> None:
        if done.cancelled():
            problem = "the signer task was cancelled"
        elif (exc := done.exception()) is not None:
            problem = f"{type(exc).__name__}: {exc}"
        elif not stopping.is_set():
            problem = "the signer task ended without being asked to stop"
        else:
            health.signing = False
            return
        health.fail(problem)
        if on_failure is not None:
            follow_up = asyncio.ensure_future(on_failure())
            pending.add(follow_up)  # a reference, so it is not collected before it runs
            follow_up.add_done_callback(pending.discard)

    task.add_done_callback(ended)
