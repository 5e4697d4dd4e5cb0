"""`casebridge`: the few commands a person runs (see README)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Sequence

from services.console import cli as console_cli
from services.htcds import cli as htcds_cli
from services.runtime.progress import add_progress_flag
from services.runtime.settings import get_settings
from services.statistics import cli as statistics_cli


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
    from services.privacy.keys import ensure_deployment_keys
    from services.runtime.credentials import OWNER_ROLE, database_url
    from services.runtime.migrations import upgrade

    settings = get_settings()
    for path in ensure_deployment_keys(settings.secrets_dir):
        print(f"created {path}")
    upgrade(database_url(settings, OWNER_ROLE))
    return 0


def _config(args: argparse.Namespace) -> int:
    from services.audit.config import AuditSettings
    from services.console.config import ConsoleSettings
    from services.runtime import configuration
    from services.runtime.settings import Settings

    classes = (Settings, AuditSettings, ConsoleSettings)
    if args.reference:
        print("\n".join(configuration.reference(classes)))
        return 0
    rows = [s for cls in classes for s in configuration.settings_of(cls())]
    print("\n".join(configuration.table(rows)))
    return 0


def _agencies(args: argparse.Namespace) -> int:
    from services.access import broker

    settings = get_settings()
    if args.agencies_command == "sync":
        plan = broker.deployment_plan(settings)
        report = broker.sync(settings, plan)
        print(
            f"{len(plan.topics)} topics ({len(report.topics_created)} new), "
            f"{len(plan.principals)} principals ({len(report.credentials_created)} new "
            f"credentials), {report.grants} ACLs; client files in {settings.secrets_dir / 'kafka'}"
        )
    elif args.agencies_command == "rotate":
        broker.rotate(settings, args.principal)
        print(f"new password for {args.principal}; its client file was rewritten")
    else:
        removed = broker.revoke(settings, args.principal)
        print(f"{args.principal}: {removed} ACLs and its credential removed")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from services.demo.run import main as demo_main

    return demo_main(keep_running=args.keep_running)


def _rules(_: argparse.Namespace) -> int:
    from services.cases.domain import PolicyRule, load_policy, policy_rules, rules_by_priority
    from services.routing.policy import deployment_policy

    settings = get_settings()
    routing = deployment_policy(settings)
    rules = [
        PolicyRule(r.name, r.serves, r.why, "services/routing/policy.yaml (routing)")
        for r in routing.rules
    ]
    rules += policy_rules(load_policy(settings.case_policy_path))
    for priority, group in rules_by_priority(rules):
        print(f"\n{priority.statement} [{priority.value}]")
        for rule in group:
            print(f"  - {rule.rule_id}: {rule.description}  ({rule.source})")
    return 0


def _watch(args: argparse.Namespace) -> int:
    from services.cases.watch import watch

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(watch(get_settings(), args.agency, from_beginning=args.from_beginning))
    return 0


def _rebuild(args: argparse.Namespace) -> int:
    import asyncpg

    from services.cases.rebuild import rebuild
    from services.privacy.vault import person_vault
    from services.runtime.credentials import AUDITOR_ROLE, OWNER_ROLE, database_url
    from services.runtime.database import asyncpg_dsn

    async def go() -> int:
        settings = get_settings()
        url = database_url(settings, OWNER_ROLE if args.write else AUDITOR_ROLE)
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            async with conn.transaction():
                report = await rebuild(
                    conn, person_vault(settings), write=args.write, progress=args.progress
                )
        finally:
            await conn.close()
        print(f"{report.identical}/{report.cases} cases identical to the fold of their log")
        for label, ids in (
            ("differing", report.differing),
            ("no snapshot", report.missing_snapshot),
            ("snapshot without log", report.without_log),
        ):
            if ids:
                print(f"{label}: {', '.join(ids)}")
        return 0 if report.ok else 1

    return asyncio.run(go())


def _person_erase(args: argparse.Namespace) -> int:
    from services.cases.erasure import erase

    return asyncio.run(
        erase(
            get_settings(),
            case_id=args.case_id,
            person_key=args.person_key,
            reason=args.reason,
            requested_by=args.requested_by,
            timeout_s=args.timeout,
        )
    )


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in[:1] == ["audit"]:
        # The auditors' commands (verify, proof, consistency, export, tree-heads, serve, sign,
        # keygen, new-token) have their own parser.
        from services.audit.cli import main as audit_main

        return audit_main(args_in[1:])
    parser = argparse.ArgumentParser(
        prog="casebridge",
        description=__doc__,
        epilog="casebridge audit --help: the auditors' commands (verify, proof, export, ...)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run services in this process (all by default)")
    p.add_argument("--services", default="", help="comma-separated: intake,router,audit")
    p.set_defaults(func=_run)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=_migrate)
    p = sub.add_parser(
        "config", help="every setting, its value (secrets masked) and where it came from"
    )
    p.add_argument(
        "--reference", action="store_true", help="the configuration reference (Markdown)"
    )
    p.set_defaults(func=_config)
    p = sub.add_parser("agencies", help="broker access: topics, credentials and ACLs")
    agencies_sub = p.add_subparsers(dest="agencies_command", required=True)
    agencies_sub.add_parser(
        "sync", help="create every topic, credential and ACL the registry implies (idempotent)"
    ).set_defaults(func=_agencies)
    p = agencies_sub.add_parser("rotate", help="a new password for a principal")
    p.add_argument("principal", help="an agency id or a service principal (casebridge-...)")
    p.set_defaults(func=_agencies)
    p = agencies_sub.add_parser("revoke", help="remove a principal's ACLs and credential")
    p.add_argument("principal")
    p.set_defaults(func=_agencies)
    p = sub.add_parser("demo", help="run the demo scenario against a running stack")
    p.add_argument("--keep-running", action="store_true", help="keep services running after")
    p.set_defaults(func=_demo)
    sub.add_parser(
        "rules", help="routing and escalation rules grouped by ministerial priority"
    ).set_defaults(func=_rules)
    p = sub.add_parser("watch", help="an agency's live case-update feed")
    p.add_argument("--agency", required=True)
    p.add_argument("--from-beginning", action="store_true")
    p.set_defaults(func=_watch)
    p = sub.add_parser("cases", help="case store maintenance")
    cases_sub = p.add_subparsers(dest="cases_command", required=True)
    p = cases_sub.add_parser("rebuild", help="replay every case's log; compare (or --write)")
    p.add_argument("--write", action="store_true", help="replace differing snapshots")
    add_progress_flag(p)
    p.set_defaults(func=_rebuild)
    p = sub.add_parser("person", help="the data-protection officer's commands")
    person_sub = p.add_subparsers(dest="person_command", required=True)
    p = person_sub.add_parser(
        "erase",
        help="erase a person's data (destroys the data keys of the cases concerned) and wait",
    )
    subject = p.add_mutually_exclusive_group(required=True)
    subject.add_argument("--case-id", help="the case the person is the subject of")
    subject.add_argument("--person-key", help="every case with this pseudonymous person key")
    p.add_argument("--reason", required=True, help="a short code, e.g. subject_request")
    p.add_argument("--requested-by", required=True, help="who asked (kept with the erasure)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait (default 60)")
    p.set_defaults(func=_person_erase)
    console_cli.add_parser(sub)
    statistics_cli.add_parser(sub)
    htcds_cli.add_parser(sub)
    args = parser.parse_args(args_in)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
