"""`casebridge`: the few commands a person runs (see README)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from services.runtime.settings import get_settings


def _run(args: argparse.Namespace) -> int:
    from services.bootstrap import SERVICES, build_app

    services = tuple(s for s in args.services.split(",") if s) or SERVICES
    app = build_app(*services)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency, but optional at runtime
        pass
    asyncio.run(app.run())
    return 0


def _migrate(_: argparse.Namespace) -> int:
    from services.runtime.migrations import upgrade

    upgrade(get_settings().migration_database_url)
    return 0


def _topics(_: argparse.Namespace) -> int:
    from services.bootstrap import load_routing_policy, topic_plan
    from services.runtime.kafka import ensure_topics

    settings = get_settings()
    plan = topic_plan(load_routing_policy(settings), topic_prefix=settings.topic_prefix)
    asyncio.run(ensure_topics(settings.kafka_bootstrap, plan))
    for name, partitions, _config in plan:
        print(f"{name}\t{partitions} partitions")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from services.demo.run import main as demo_main

    return demo_main(keep_running=args.keep_running)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="casebridge", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run services in this process (all by default)")
    p.add_argument("--services", default="", help="comma-separated: intake,router,audit")
    p.set_defaults(func=_run)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=_migrate)
    sub.add_parser("topics", help="create the topics the pipeline needs").set_defaults(func=_topics)
    p = sub.add_parser("demo", help="run the demo scenario against a running stack")
    p.add_argument("--keep-running", action="store_true", help="keep services running after")
    p.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
