"""Audit log at scale: `python -m benchmarks.audit_scale [--events 1000000]`.

Loads N synthetic audit records straight into a fresh, migrated database (COPY, with correct
gapless seqs and leaf hashes, about 20,000 cases, several event types, agencies and outcomes,
times spread over ten months so the monthly partitions are used), signs tree heads over them
with a throwaway key, then measures what the issue's targets are about:

* case history: the full history of a random case through `queries.find_events`;
* inclusion proof: record + latest signed head + audit path for a random seq on the whole
  tree, checked locally (the in-memory tree's one-off load is reported separately);
* full verification: every record read from PostgreSQL in seq order, leaves recomputed,
  sealed values opened with the deployment's key-encryption key and checked against their
  digests, root compared with the signed head (`verify_stored.verify_database`), beside its
  baseline in the same run: the same rows read by as many processes, each over its own
  connection, with only SHA-256 of their bytes (binary COPY of verification's own query).
  That is the floor any verifier of this log on this machine stands on: the ratio says what
  verification adds to it.

Values are sealed as the audit service seals them (services/audit/sealed.py): one data key per
case, created through the person vault as the writer's role, bound to each record's seq.

Each step connects as the role that does it in production: the records are written as the
audit consumer's role (casebridge_audit), the heads as the signer's (casebridge_signer), and
every query, proof and verification runs as the auditors' read-only role (casebridge_auditor);
the superuser only creates and drops the database, the owner migrates and ANALYZEs it. The
passwords are set-up's files, `<run dir>/secrets/postgres/<role>.password` (CASEBRIDGE_RUN_DIR,
default .run: `infra/stack.sh up` writes them).

Prints target, measured and ratio (measured / target; below 1 meets the target). The
database is dropped afterwards unless --keep. Synthetic data only: no real names or cases.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import itertools
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from multiprocessing import get_context

import asyncpg
import orjson
from sqlalchemy.engine import make_url

from services.audit.canonical import AuditEntry, canonical_attributes, entry_leaf_hash
from services.audit.merkle import MerkleTree, verify_inclusion
from services.audit.queries import (
    EventFilter,
    LeafHashCache,
    find_events,
    get_event,
    inclusion_proof,
    screened_tree_heads,
)
from services.audit.sealed import seal_value
from services.audit.store import COLUMNS
from services.audit.tree_head import generate_keypair, sign_tree_head, verify_tree_head
from services.audit.verify_stored import verified_rows_sql, verify_database
from services.privacy.keys import ensure_deployment_keys, load_kek
from services.privacy.vault import DataKey, PersonVault, case_subject
from services.runtime.credentials import (
    AUDITOR_ROLE,
    OWNER_ROLE,
    database_password,
    database_url,
    service_role,
)
from services.runtime.database import asyncpg_dsn
from services.runtime.migrations import upgrade
from services.runtime.settings import Settings

SUPERUSER = "postgres"
"""The role that may CREATE DATABASE (the owner role may not): set-up's superuser."""
OWNER = OWNER_ROLE
WRITER = service_role("audit")
SIGNER = service_role("signer")
AGENCIES = (
    "id-national-referral",
    "id-police-aht",
    "id-immigration",
    "id-labour-inspectorate",
    "id-child-protection",
    "id-shelter-ngo",
    "id-rcc-jakarta",
    "au-jrcc",
    "id-return-programme",
    "mm-return-reception",
    "th-police-aht",
    "th-child-protection",
)
EVENT_TYPES = (
    "org.casebridge.referral.submitted.v1",
    "org.casebridge.referral.updated.v1",
    "org.casebridge.return.requested.v1",
    "org.casebridge.sar.alert.v1",
    "org.casebridge.sar.sitrep.v1",
    "org.casebridge.case.accepted.v1",
    "org.casebridge.case.closed.v1",
)
START = datetime(2026, 1, 1, tzinfo=UTC)
SPAN = timedelta(days=300)
TARGET_CASE_P99_MS = 50.0
TARGET_PROOF_MS = 10.0
TARGET_VERIFY_S = 3.0


@dataclass
class Generator:
    """Deterministic synthetic records; a case's events cluster in time, as real cases do."""

    events: int
    cases: int
    rng: random.Random
    offsets: dict[tuple[str, int], int]
    keys: dict[str, DataKey]
    """Each case's data key, by subject."""

    def case_id(self, index: int) -> str:
        return f"CB-2026-{index:06d}"

    def case_at(self, fraction: float) -> str:
        centre = fraction + self.rng.gauss(0.0, 0.02)
        index = min(self.cases - 1, max(0, int(centre * self.cases)))
        return self.case_id(index)

    def row(self, seq: int) -> tuple[tuple[object, ...], bytes]:
        rng = self.rng
        fraction = seq / self.events
        # Records arrive in batches sharing one recorded_at, as the audit consumer writes them.
        recorded_at = START + SPAN * ((seq // 50) * 50 / self.events)
        case_id = self.case_at(fraction)
        agency = rng.choice(AGENCIES)
        event_type = rng.choice(EVENT_TYPES)
        roll = rng.random()
        reason: str | None = None
        if roll < 0.35:
            outcome, topic = "received", "casebridge.inbound." + event_type.split(".")[2]
        elif roll < 0.55:
            outcome, topic = "routed", "casebridge.routing.decisions"
        elif roll < 0.80:
            outcome, topic = "delivered", f"casebridge.inbox.{agency}"
        elif roll < 0.97:
            outcome, topic = "published", f"casebridge.updates.{agency}"
        elif roll < 0.995:
            outcome, topic, reason = "rejected", "casebridge.deadletter", "INVALID_PAYLOAD"
        else:
            outcome, topic = "query", "casebridge.audit.queries"
        partition = rng.randrange(6)
        key = (topic, partition)
        offset = self.offsets.get(key, 0)
        self.offsets[key] = offset + 1
        event_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        source = f"urn:casebridge:agency:{agency}"
        document = {
            "case_id": case_id,
            "reporting_agency": agency,
            "reported_at": recorded_at.isoformat(),
            "summary": "Synthetic record for the audit benchmark; no real person or case.",
            "indicators": rng.sample(["deception", "debt", "documents", "isolation", "threats"], 2),
            "person": {
                "ref": f"P-{rng.randrange(10**8):08d}",
                "age_band": rng.choice(["<18", "18-25", "26-40", ">40"]),
            },
            "notes": "x" * rng.randrange(80, 320),
        }
        raw = orjson.dumps(document)
        if outcome == "rejected" and rng.random() < 0.5:
            raw = b"\xff\xfenot json " + raw[:40]
        data_key = self.keys[case_subject(case_id)]
        digest = hashlib.sha256(raw).digest()
        headers = {
            "ce_id": event_id,
            "ce_source": source,
            "ce_type": event_type,
            "ce_subject": case_id,
            "content-type": "application/json",
        }
        attributes = orjson.dumps(headers).decode()
        entry = AuditEntry(
            seq=seq,
            event_id=event_id,
            event_source=source,
            event_type=event_type,
            subject=case_id,
            kafka_topic=topic,
            kafka_partition=partition,
            kafka_offset=offset,
            recorded_at=recorded_at,
            outcome=outcome,
            reason_code=reason,
            payload_digest=digest,
            agency=agency,
            attributes=canonical_attributes(headers),
            leaf_version=2,
        )
        leaf = entry_leaf_hash(entry)
        return (
            seq,
            recorded_at,
            event_id,
            source,
            event_type,
            case_id,
            agency,
            outcome,
            reason,
            topic,
            partition,
            offset,
            attributes,
            seal_value(data_key.key, raw, seq),
            data_key.key_id,
            digest,
            leaf,
            None,  # original_bytes: every text above is exact
            2,  # leaf_version: the format new records are logged in
        ), leaf


@dataclass(frozen=True)
class Roles:
    """One database, as each role the benchmark connects as (URLs with passwords)."""

    owner: str
    writer: str
    signer: str
    auditor: str


def default_admin_url(settings: Settings) -> str:
    """The superuser on the configured server's `postgres` database, with its password."""
    url = make_url(database_url(settings, SUPERUSER)).set(database="postgres")
    return url.render_as_string(hide_password=False)


def role_url(settings: Settings, admin_url: str, role: str, database: str) -> str:
    """`database` on the admin URL's server, as `role` with its password from the run dir."""
    url = make_url(admin_url).set(
        drivername="postgresql+asyncpg",
        username=role,
        password=database_password(settings, role),
        database=database,
    )
    return url.render_as_string(hide_password=False)


async def create_database(settings: Settings, admin_url: str) -> tuple[str, Roles]:
    """A fresh database owned by the owner role and migrated by it, as tests/support/stack.py
    makes them; returns its name and the URLs of the roles the benchmark uses on it."""
    name = f"cb_bench_{uuid.uuid4().hex[:10]}"
    roles = Roles(
        *(role_url(settings, admin_url, r, name) for r in (OWNER, WRITER, SIGNER, AUDITOR_ROLE))
    )
    conn = await asyncpg.connect(asyncpg_dsn(admin_url))
    try:
        await conn.execute(f'CREATE DATABASE "{name}" OWNER {OWNER}')
    finally:
        await conn.close()
    await asyncio.to_thread(upgrade, roles.owner)
    return name, roles


async def drop_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(admin_url))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def load(roles: Roles, vault: PersonVault, events: int, cases: int, seed: int) -> list[bytes]:
    """COPY the synthetic log in chunks as the audit consumer's role (INSERT on the log, the
    sequence counter, the cases' data keys), then ANALYZE as the owner (only the owner may);
    returns the leaf hashes in seq order."""
    gen = Generator(events, cases, random.Random(seed), {}, {})
    leaves: list[bytes] = []
    conn = await asyncpg.connect(asyncpg_dsn(roles.writer))
    try:
        gen.keys = await vault.keys_for(conn, [case_subject(gen.case_id(i)) for i in range(cases)])
        chunk = 50_000
        for lo in range(0, events, chunk):
            rows = []
            for seq in range(lo, min(events, lo + chunk)):
                row, leaf = gen.row(seq)
                rows.append(row)
                leaves.append(leaf)
            await conn.copy_records_to_table("audit_log", columns=COLUMNS, records=rows)
            print(f"\r  loaded {len(leaves):>9,} / {events:,}", end="", file=sys.stderr)
        print(file=sys.stderr)
        await conn.execute("UPDATE audit_head SET next_seq = $1 WHERE id = 1", events)
    finally:
        await conn.close()
    conn = await asyncpg.connect(asyncpg_dsn(roles.owner))
    try:
        await conn.execute("ANALYZE audit_log")
    finally:
        await conn.close()
    return leaves


async def _read_and_hash(dsn: str, lo: int, hi: int) -> int:
    """Stream seq lo..hi-1 as verification selects them, binary COPY, and SHA-256 the bytes."""
    digest = hashlib.sha256()
    received = 0

    async def sink(chunk: bytes) -> None:
        nonlocal received
        received += len(chunk)
        digest.update(chunk)

    conn = await asyncpg.connect(dsn, server_settings={"enable_sort": "off", "jit": "off"})
    try:
        await conn.copy_from_query(
            verified_rows_sql(open_values=True), lo, hi, output=sink, format="binary"
        )
    finally:
        await conn.close()
    return received


def _read_and_hash_process(dsn: str, lo: int, hi: int) -> int:
    return asyncio.run(_read_and_hash(dsn, lo, hi))


async def read_and_hash(dsn: str, size: int, workers: int) -> int:
    """The baseline: the bytes of every row verification reads, read and hashed by `workers`
    processes as verification splits the work (returns how many bytes)."""
    bounds = [size * i // workers for i in range(workers + 1)]
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        parts = await asyncio.gather(
            *(
                loop.run_in_executor(pool, _read_and_hash_process, dsn, a, b)
                for a, b in itertools.pairwise(bounds)
            )
        )
    return sum(parts)


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def run(args: argparse.Namespace) -> int:
    settings = Settings()
    admin_url = args.admin_url or default_admin_url(settings)
    print(f"creating a fresh database for {args.events:,} events ...", file=sys.stderr)
    name, roles = await create_database(settings, admin_url)
    try:
        ensure_deployment_keys(settings.secrets_dir)  # as set-up does: a fresh run dir has none
        kek = partial(load_kek, secrets_dir=settings.secrets_dir)
        t0 = time.perf_counter()
        leaves = await load(roles, PersonVault(kek()), args.events, args.cases, args.seed)
        load_s = time.perf_counter() - t0
        private, public = generate_keypair()
        tree = MerkleTree.from_leaf_hashes(leaves)
        conn = await asyncpg.connect(asyncpg_dsn(roles.signer))
        try:
            now_ms = int(time.time() * 1000)
            sizes = [*range(args.sth_every, args.events, args.sth_every), args.events]
            await conn.executemany(
                "INSERT INTO audit_tree_head (tree_size, root_hash, timestamp_ms, signature,"
                " key_id) VALUES ($1, $2, $3, $4, $5)",
                [
                    (h.tree_size, h.root_hash, h.timestamp, h.signature, h.key_id)
                    for h in (sign_tree_head(private, s, tree.root(s), now_ms + s) for s in sizes)
                ],
            )
        finally:
            await conn.close()
        print(f"  loaded in {load_s:.1f} s; {len(sizes)} tree heads signed", file=sys.stderr)

        pool = await asyncpg.create_pool(asyncpg_dsn(roles.auditor), min_size=2, max_size=4)
        assert pool is not None
        try:
            rng = random.Random(args.seed + 1)
            case_ms: list[float] = []
            sizes_seen: list[int] = []
            for _ in range(args.queries):
                case_id = f"CB-2026-{rng.randrange(args.cases):06d}"
                t = time.perf_counter()
                page = await find_events(pool, EventFilter(case_id=case_id), limit=1000)
                case_ms.append((time.perf_counter() - t) * 1000)
                sizes_seen.append(len(page.items))

            cache = LeafHashCache()
            t = time.perf_counter()
            await cache.tree(pool, args.events)
            warm_s = time.perf_counter() - t
            proof_ms: list[float] = []
            # As the API does it: every request screens the table's heads (signatures
            # remembered), so a head no key signed never backs a proof.
            signed = functools.lru_cache(maxsize=1 << 16)(
                functools.partial(verify_tree_head, public)
            )
            for _ in range(args.proofs):
                seq = rng.randrange(args.events)
                t = time.perf_counter()
                row = await get_event(pool, seq)
                heads = await screened_tree_heads(pool, public, signed=signed)
                proof = await inclusion_proof(pool, cache, seq, heads=heads)
                assert row is not None
                assert proof.tree_head is not None
                ok = verify_tree_head(public, proof.tree_head) and verify_inclusion(
                    entry_leaf_hash(row.entry()),
                    seq,
                    proof.tree_size,
                    proof.path,
                    proof.tree_head.root_hash,
                )
                proof_ms.append((time.perf_counter() - t) * 1000)
                assert ok, f"inclusion proof for seq {seq} does not verify"
        finally:
            await pool.close()

        workers = args.workers or max(1, min(8, os.cpu_count() or 1))
        t = time.perf_counter()
        read_bytes = await read_and_hash(asyncpg_dsn(roles.auditor), args.events, workers)
        baseline_s = time.perf_counter() - t
        t = time.perf_counter()
        report = await verify_database(roles.auditor, public, workers=workers, kek=kek)
        verify_s = time.perf_counter() - t
        assert report.ok, report.detail
        assert report.payloads_checked == args.events, report.detail

        case_p50, case_p99 = percentile(case_ms, 50), percentile(case_ms, 99)
        proof_p50, proof_p99 = percentile(proof_ms, 50), percentile(proof_ms, 99)
        mean_events = statistics.mean(sizes_seen)
        print()
        print(
            f"audit log benchmark: {args.events:,} events, {args.cases:,} cases,"
            f" {len(sizes)} signed tree heads (database {name})"
        )
        print(f"{'measure':<44}{'target':>12}{'measured':>12}{'ratio':>8}  verdict")
        lines = [
            (
                f"case history p50 ({mean_events:.0f} events/case)",
                TARGET_CASE_P99_MS,
                case_p50,
                "ms",
            ),
            ("case history p99", TARGET_CASE_P99_MS, case_p99, "ms"),
            ("inclusion proof p50 (record+head+path+check)", TARGET_PROOF_MS, proof_p50, "ms"),
            ("inclusion proof p99", TARGET_PROOF_MS, proof_p99, "ms"),
            (f"full verification of {args.events:,} records", TARGET_VERIFY_S, verify_s, "s"),
        ]
        met = True
        for label, target, measured, unit in lines:
            ratio = measured / target
            verdict = "meets" if ratio < 1 or (unit == "s" and ratio <= 1) else "MISSES"
            if label.startswith(("case history p99", "inclusion proof p99", "full")):
                met = met and verdict == "meets"
            print(
                f"{label:<44}{target:>10.1f}{unit:<2}{measured:>10.2f}{unit:<2}{ratio:>8.3f}"
                f"  {verdict}"
            )
        print(
            f"baseline: the same rows ({read_bytes / 1e6:,.0f} MB) read and SHA-256 hashed by"
            f" {workers} processes: {baseline_s:.2f} s; verification / baseline:"
            f" {verify_s / baseline_s:.2f}"
        )
        print(
            f"(one-off load of the in-memory Merkle tree for proofs: {warm_s:.2f} s;"
            f" synthetic load: {load_s:.1f} s)"
        )
        return 0 if met else 1
    finally:
        if args.keep:
            # No URL: it would carry a password. The roles' passwords are set-up's files.
            print(
                f"kept database {name} (read it as {AUDITOR_ROLE};"
                f" passwords in {settings.secrets_dir / 'postgres'})",
                file=sys.stderr,
            )
        else:
            await drop_database(admin_url, name)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.audit_scale",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--cases", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=500, help="random case-history queries")
    parser.add_argument("--proofs", type=int, default=500, help="random inclusion proofs")
    parser.add_argument("--sth-every", type=int, default=10_000, help="sign a head every N")
    parser.add_argument("--workers", type=int, default=None, help="verification processes")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument(
        "--admin-url",
        default=None,
        help="a role that may create databases on the server (default: the configured"
        " server's superuser, with the password set-up wrote in the run dir); the other roles"
        " connect to the same server with their own passwords from the run dir",
    )
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args(argv)
    if args.events < 1 or args.cases < 1:
        parser.error("--events and --cases must be positive")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
