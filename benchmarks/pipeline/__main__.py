"""`python -m benchmarks.pipeline`: the command (the package docstring says what it measures)."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.pipeline import report
from benchmarks.pipeline.clients import machine_load
from benchmarks.pipeline.config import PIPELINE, SYSTEM
from benchmarks.pipeline.cpu import stack_probes
from benchmarks.pipeline.deployment import (
    Runs,
)
from benchmarks.pipeline.events import make_events
from benchmarks.pipeline.passthrough import PassthroughResult, passthrough
from benchmarks.pipeline.system import Phase, PipelineResult, run_system
from schemas.errors import EventRejected
from services.privacy.keys import ensure_deployment_keys
from services.routing.policy import deployment_policy
from services.runtime.progress import add_progress_flag
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
        "--layout",
        choices=("split", "single"),
        default="split",
        help="split: one OS process per service (default); single: all in one process",
    )
    p.add_argument(
        "--paced-events",
        type=int,
        help="events of (c)'s paced phase, at half the burst's rate (default: --events / 2)",
    )
    p.add_argument(
        "--backlog",
        action="store_true",
        help="(c) only: publish --events first, then start the services on that backlog, and"
        " print each service's peak memory (the 400 MB check)",
    )
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait per phase")
    p.add_argument("--skip-baseline", action="store_true", help="no (a) (no ratios)")
    p.add_argument("--skip-pipeline", action="store_true", help="no (b)")
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
    add_progress_flag(p)
    args = p.parse_args(argv)
    if args.events < 1 or args.warmup < 1:
        p.error("--events and --warmup must be at least 1")
    if args.paced_events is None:
        args.paced_events = max(1, args.events // 2)
    if args.profile == "pyinstrument" and importlib.util.find_spec("pyinstrument") is None:
        p.error("--profile pyinstrument needs pyinstrument installed in this environment")
    return args


async def run(args: argparse.Namespace) -> int:
    run_id = uuid.uuid4().hex[:8]
    base = Settings().model_copy(
        update={
            "kafka_bootstrap": args.bootstrap,
            "database_url": args.database_url,
            "run_dir": args.run_dir.resolve(),
        }
    )
    policy = deployment_policy(base)
    # As `casebridge migrate` would on a fresh stack: the services read their keys from here.
    ensure_deployment_keys(base.secrets_dir)
    paced_n = 0 if args.backlog else args.paced_events
    try:
        events = make_events(
            args.warmup + args.events + paced_n, run=run_id.upper(), policy=policy, seed=args.seed
        )
    except EventRejected as error:
        print(f"the benchmark's own events are invalid ({error.code}); fix the generator")
        return 1
    except ValueError as error:
        print(f"the benchmark's own events are invalid: {error}")
        return 1
    warmup = events[: args.warmup]
    measured = events[args.warmup : args.warmup + args.events]
    paced = events[args.warmup + args.events :]
    log_dir = Path(tempfile.mkdtemp(prefix=f"cb-bench-{run_id}-"))
    split = args.layout == "split"
    runs = Runs(base, policy, run_id, keep=args.keep)
    report.header(args, events, measured, base)
    probes = stack_probes(base.run_dir)
    idle = await machine_load()
    if idle > 25.0:
        print(
            f"  WARNING: the machine was {idle:.0f}% busy (% of one core) before the run:"
            " other work competes for the cores (its share shows as 'rest' below)"
        )
    problems = False
    finished = False
    try:
        base_result: PassthroughResult | None = None
        if not args.skip_baseline and not args.backlog:
            async with runs.deployment("a") as settings:
                base_result = await passthrough(
                    settings,
                    measured,
                    timeout_s=args.timeout,
                    probes=probes,
                    progress=args.progress,
                )
            report.passthrough(base_result)
        pipeline_result: PipelineResult | None = None
        if not args.skip_pipeline and not args.backlog:
            groups = _groups(PIPELINE, split)
            async with runs.deployment("b") as settings:
                (pipeline_result,) = await run_system(
                    settings,
                    warmup,
                    [Phase("(b) intake -> router -> audit", measured)],
                    groups=groups,
                    log_dir=log_dir,
                    timeout_s=args.timeout,
                    profile=args.profile,
                    probes=probes,
                    progress=args.progress,
                )
            report.system(pipeline_result, groups, base_result)
            report.profiles(args.profile, groups, log_dir, len(warmup) + len(measured))
            problems |= bool(pipeline_result.problems)
        groups = _groups(SYSTEM, split)
        async with runs.deployment("c") as settings:
            if args.backlog:
                label = f"(c) the whole system, on a backlog of {len(measured):,} events"
                phases = [Phase(label, measured)]
            else:
                phases = [
                    Phase("(c) the whole system, burst", measured),
                    Phase("(c) the whole system, paced at half the burst's rate", paced, _half),
                ]
            results = await run_system(
                settings,
                warmup,
                phases,
                groups=groups,
                log_dir=log_dir,
                timeout_s=args.timeout,
                profile=args.profile,
                probes=probes,
                backlog=args.backlog,
                progress=args.progress,
            )
        for result in results:
            report.system(result, groups, base_result)
            problems |= bool(result.problems)
        report.profiles(args.profile, groups, log_dir, len(warmup) + len(measured))
        report.summary(base_result, pipeline_result, results, backlog=args.backlog)
        finished = True
        return 1 if problems else 0
    finally:
        await runs.clean_up()
        if args.keep or args.profile is not None or problems or not finished:
            print(f"service logs{' and profiles' if args.profile else ''}: {log_dir}")
        else:
            shutil.rmtree(log_dir, ignore_errors=True)


def _half(before: Sequence[PipelineResult]) -> float:
    """Half the rate the burst reached: latency measured below saturation."""
    return before[0].rate / 2 if before and before[0].rate > 0 else 0.0


def _groups(services: tuple[str, ...], split: bool) -> list[tuple[str, ...]]:
    return [(s,) for s in services] if split else [services]


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
