"""`casebridge statistics ...`: the regional statistics feed (services/statistics/release.py).

release   read the cases (read-only, as the auditor role), make a release under k-anonymity
          (k = 11) against the last one, write it as CSV and/or publish it on
          `casebridge.statistics.regional`
run       the scheduled job: a release (published) every N days, until interrupted
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from pathlib import Path

from services.runtime.settings import Settings, get_settings
from services.statistics import feed
from services.statistics.release import K_ANONYMITY


async def release_once(settings: Settings, *, csv_path: Path | None, publish: bool) -> str:
    """One release; returns a line saying what was released."""
    done = await feed.release_now(settings, csv_path=csv_path, publish=publish)
    return (
        f"release {done.record.release_id}: {done.cases} cases, {len(done.release.cells)} cells "
        f"published (k = {done.release.k}), {len(done.release.withheld)} withheld"
        + (
            f" -> {', '.join(done.written_to)}"
            if done.written_to
            else " (dry run: nothing written)"
        )
    )


def _release(args: argparse.Namespace) -> int:
    print(asyncio.run(release_once(get_settings(), csv_path=args.csv, publish=args.publish)))
    return 0


def _run(args: argparse.Namespace) -> int:
    async def loop() -> None:
        settings = get_settings()
        while True:
            print(await release_once(settings, csv_path=args.csv, publish=True), flush=True)
            await asyncio.sleep(args.every_days * 86400)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(loop())
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`casebridge statistics` and its subcommands, on the main parser's subparsers."""
    p = sub.add_parser(
        "statistics", help=f"regional statistics under k-anonymity (k = {K_ANONYMITY})"
    )
    statistics_sub = p.add_subparsers(dest="statistics_command", required=True)
    p = statistics_sub.add_parser("release", help="make a release: CSV and/or publish it")
    p.add_argument("--csv", type=Path, help="write the release to this CSV file")
    p.add_argument(
        "--publish", action="store_true", help="publish it on casebridge.statistics.regional"
    )
    p.set_defaults(func=_release)
    p = statistics_sub.add_parser("run", help="publish a release every N days (a loop)")
    p.add_argument("--every-days", type=float, default=30.0, help="days between releases")
    p.add_argument("--csv", type=Path, help="also write each release to this CSV file")
    p.set_defaults(func=_run)
