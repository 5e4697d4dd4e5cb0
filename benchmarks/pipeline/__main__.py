"""`python -m benchmarks.pipeline`: the command (the package docstring says what it measures)."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import asyncpg
from confluent_kafka import KafkaException

from benchmarks.pipeline.clients import machine_load
from benchmarks.pipeline.config import BENCH_PRINCIPAL, PIPELINE, TARGET_EVENTS_PER_S
from benchmarks.pipeline.cpu import stack_probes
from benchmarks.pipeline.deployment import (
    create_database,
    drop_database,
    run_access_plan,
    tear_down_broker,
    with_database,
)
from benchmarks.pipeline.events import KINDS, make_events
from benchmarks.pipeline.passthrough import PassthroughResult, passthrough
from benchmarks.pipeline.report import (
    BASELINE_PARTS,
    costs_line,
    ms_line,
    print_profile,
    print_samples,
)
from benchmarks.pipeline.system import pipeline
from schemas.errors import EventRejected
from services.access.broker import sync
from services.bootstrap import load_routing_policy
from services.runtime.credentials import (
    OWNER_ROLE,
    database_url,
)
from services.runtime.migrations import upgrade
from services.runtime.settings import Settings


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    defaults = Settings()
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.pipeline",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Batch and linger settings come from CASEBRIDGE_BATCH_MAX_RECORDS,"
        " CASEBRIDGE_BATCH_TIMEOUT_MS and CASEBRIDGE_PRODUCER_LINGER_MS, for the services and"
        " the baseline alike.",
    )
    p.add_argument("--events", type=int, default=20_000, help="events per measurement")
    p.add_argument("--warmup", type=int, default=500, help="events before the measured run")
    p.add_argument(
        "--bootstrap", default=defaults.kafka_bootstrap, help="Kafka bootstrap (SASL_SSL)"
    )
    p.add_argument(
        "--database-url",
        default=defaults.database_url,
        help="the server (host, port) the run's fresh database is created on, without a role"
        " (each process connects as its own role with its password from the run dir)",
    )
    p.add_argument(
        "--reuse-database",
        action="store_true",
        help="use the database of --database-url as it is (migrated to head) instead",
    )
    p.add_argument(
        "--layout",
        choices=("split", "single"),
        default="split",
        help="split: one OS process per service (default); single: all in one process",
    )
    p.add_argument(
        "--rate", type=float, default=0.0, help="publish at this many events/s (0: full speed)"
    )
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for (b)")
    p.add_argument("--skip-baseline", action="store_true", help="run (b) only (no ratio)")
    p.add_argument(
        "--profile",
        choices=("py-spy", "cprofile", "pyinstrument"),
        help="profile each service process: py-spy samples on-CPU stacks in the measured"
        " window only (least distortion); cprofile counts CPU time over the process's life;"
        " pyinstrument samples wall time. Output is kept with the logs",
    )
    p.add_argument(
        "--run-dir",
        "--stack-run-dir",
        type=Path,
        default=defaults.run_dir,
        help="run dir of infra/stack.sh (default $CASEBRIDGE_RUN_DIR, else .run): its secrets"
        " (Kafka client files, database passwords) and the broker's and PostgreSQL's pids",
    )
    p.add_argument("--seed", type=int, default=1, help="seed of the synthetic event mix")
    p.add_argument("--keep", action="store_true", help="keep the database, topics and logs")
    args = p.parse_args(argv)
    if args.events < 1 or args.warmup < 1:
        p.error("--events and --warmup must be at least 1")
    if args.profile == "pyinstrument" and importlib.util.find_spec("pyinstrument") is None:
        p.error("--profile pyinstrument needs pyinstrument installed in this environment")
    return args


async def run(args: argparse.Namespace) -> int:
    run_id = uuid.uuid4().hex[:8]
    prefix = f"bench{run_id}."
    settings = Settings().model_copy(
        update={
            "kafka_bootstrap": args.bootstrap,
            "database_url": args.database_url,
            "run_dir": args.run_dir.resolve(),
            "topic_prefix": prefix,
            "group_prefix": f"bench-{run_id}",
        }
    )
    policy = load_routing_policy(settings)
    try:
        events = make_events(
            args.warmup + args.events, run=run_id.upper(), policy=policy, seed=args.seed
        )
    except EventRejected as error:
        print(f"the benchmark's own events are invalid ({error.code}); fix the generator")
        return 1
    except ValueError as error:
        print(f"the benchmark's own events are invalid: {error}")
        return 1
    plan = run_access_plan(settings, policy)
    synced = False
    database: str | None = None
    log_dir = Path(tempfile.mkdtemp(prefix=f"cb-bench-{run_id}-"))
    keep_logs = args.keep or args.profile is not None
    code = 1
    try:
        if not args.reuse_database:
            database = await create_database(settings)
            settings = with_database(settings, database)
        else:
            await asyncio.to_thread(upgrade, database_url(settings, OWNER_ROLE))
        # Topics, SCRAM credentials and ACLs of the run, as the super user (set-up only).
        synced = True  # from here on, clean-up removes whatever sync got to create
        report = await asyncio.to_thread(sync, settings, plan)
        warmup, measured = events[: args.warmup], events[args.warmup :]
        groups: list[tuple[str, ...]] = (
            [(s,) for s in PIPELINE] if args.layout == "split" else [PIPELINE]
        )
        sizes = sorted(len(e.value) for e in measured)
        rows = sum(e.audit_rows for e in measured)
        print(
            f"CaseBridge pipeline benchmark: {args.events:,} events"
            f" (+{args.warmup:,} warm-up), {os.cpu_count()} cores, Kafka {args.bootstrap}"
            f" (SASL_SSL, SCRAM-SHA-512, ACLs), database"
            f" {'fresh ' + database if database else 'reused'} (scram-sha-256, a role per service)"
        )
        print(
            f"  set-up: {len(plan.topics)} topics under {prefix}, {len(plan.principals)}"
            f" principals ({len(report.credentials_created)} new credentials), {report.grants}"
            f" ACLs; events published by {len({e.agency for e in events})} agencies, each with"
            " its own credentials to its own inbound topic"
        )
        print(
            f"  events: value {sizes[0]}-{sizes[-1]} bytes (median {sizes[len(sizes) // 2]}),"
            f" 7 CloudEvents headers; mix "
            + ", ".join(f"{k} {sum(1 for e in measured if e.kind == k)}" for k, _ in KINDS)
            + f"; {rows:,} audit rows expected"
        )
        print(
            f"  settings: batch_max_records={settings.batch_max_records}"
            f" batch_timeout_ms={settings.batch_timeout_ms}"
            f" producer_linger_ms={settings.producer_linger_ms};"
            f" services: {' | '.join('+'.join(g) for g in groups)}"
            f" ({len(groups)} process{'es' if len(groups) > 1 else ''})"
        )

        probes = stack_probes(settings.run_dir)
        idle = await machine_load()
        if idle > 25.0:
            print(
                f"  WARNING: the machine was {idle:.0f}% busy (% of one core) before the run:"
                " other work competes for the cores (its share shows as 'rest' below)"
            )
        base_result: PassthroughResult | None = None
        if not args.skip_baseline:
            base_result = await passthrough(
                settings, measured, timeout_s=args.timeout, probes=probes
            )
            print(
                f"(a) raw aiokafka passthrough as {BENCH_PRINCIPAL} over the same SASL_SSL"
                f" (getmany + idempotent acks=all producer, commit per batch):"
                f" {base_result.messages:,} messages in"
                f" {base_result.seconds:.2f} s = {base_result.rate:,.0f} messages/s"
            )
            print(f"    CPU, % of one core: {base_result.cpu.describe()}")
            print(
                "    CPU per message: "
                + costs_line(base_result.cpu.per_event_us(base_result.messages, BASELINE_PARTS))
            )

        result = await pipeline(
            settings,
            warmup,
            measured,
            groups=groups,
            log_dir=log_dir,
            rate=args.rate,
            timeout_s=args.timeout,
            profile=args.profile,
            probes=probes,
        )
        pace = f"at {args.rate:,.0f} events/s" if args.rate > 0 else "at full speed"
        print(
            f"(b) pipeline intake -> router -> audit: {result.events:,} events published"
            f" {pace} in {result.publish_s:.2f} s; all {result.rows:,} audit rows"
            f" {result.seconds:.2f} s after the first publish = {result.rate:,.0f} events/s"
        )
        print(
            f"    latency publish -> last audit row of the event: {ms_line(result.latency_last_ms)}"
        )
        routed = ms_line(result.latency_routed_ms)
        print(f"    latency publish -> routing-decision audit row:  {routed}")
        print(
            "    last event done, s after the first publish: "
            + ", ".join(f"{k} {v:.2f}" for k, v in result.stages.items())
            + " (intake: start of its last transaction; router: its last decision's ce_time)"
        )
        print(f"    CPU, % of one core: {result.cpu.describe()}")
        parts = [*("+".join(g) for g in groups), "kafka", "postgres"]
        costs = result.cpu.per_event_us(result.events, parts)
        total = sum(costs.values())
        cores = os.cpu_count() or 1
        print(
            "    CPU per event: "
            + costs_line(costs)
            + (
                f"; total {total:,.0f} us, so at most {cores * 1e6 / total:,.0f} events/s"
                f" on {cores} otherwise idle cores"
                if total > 0
                else ""
            )
        )
        print(f"    ready to run but waiting for a CPU: {result.cpu.describe_waits()}")
        for problem in result.problems:
            print(f"    PROBLEM: {problem}")
        if base_result is not None:
            print(f"ratio b/a: {result.rate / base_result.rate:.3f}")
        if args.rate > 0:
            print(f"target >= {TARGET_EVENTS_PER_S:,} events/s: not checked (paced run)")
        else:
            met = result.rate >= TARGET_EVENTS_PER_S and not result.problems
            print(
                f"target >= {TARGET_EVENTS_PER_S:,} events/s: {'MET' if met else 'NOT MET'}"
                f" ({result.rate:,.0f} events/s)"
            )
        for group in groups:
            name = "+".join(group)
            if args.profile == "cprofile":
                print_profile(name, log_dir / f"{name}.prof", len(warmup) + len(measured))
            elif args.profile == "py-spy":
                print_samples(name, log_dir / f"{name}.py-spy.txt")
        code = 0 if not result.problems else 1
        return code
    finally:
        if args.keep:
            print(
                f"kept: topics {prefix}* and their ACLs, database {database or '(reused)'},"
                f" logs {log_dir}"
            )
        else:
            if synced:
                try:
                    failed = await asyncio.to_thread(tear_down_broker, settings, plan)
                except (KafkaException, OSError, ValueError) as error:
                    failed = [str(error)]
                for line in failed:
                    print(f"clean-up of {prefix}* incomplete: {line}")
            if database is not None:
                try:
                    await drop_database(settings, database)
                except (asyncpg.PostgresError, OSError) as error:
                    print(f"clean-up: could not drop database {database}: {error}")
        if keep_logs or code != 0:
            if not args.keep:
                print(f"service logs{' and profiles' if args.profile else ''}: {log_dir}")
        else:
            shutil.rmtree(log_dir, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # A producer's first sends to just-created topics can meet NotLeaderForPartition while the
    # broker takes up leadership; aiokafka retries them (idempotently), so only errors show.
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    try:
        import uvloop

        runner: Callable[[Any], int] = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency
        runner = asyncio.run
    return runner(run(args))


if __name__ == "__main__":
    sys.exit(main())
