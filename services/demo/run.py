"""`casebridge demo`: run the services, publish the scenario as agencies would, show the result.

Assumes Kafka and PostgreSQL are up (`make demo` starts them first). Does the set-up an
operator would (migrations; topics, credentials and ACLs for every agency in the registry),
then publishes as each agency, with that agency's own credentials, to its own inbound topic
(a plain aiokafka producer and CloudEvents headers), waits until the audit log holds every
record the scenario should produce, prints where each event went and the audit trail, then
stops the services (or keeps them running with --keep-running).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import uuid
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaProducer

from services.access.broker import deployment_plan, sync
from services.audit.config import AuditSettings
from services.audit.queries import EventFilter, find_events
from services.audit.tree_head import generate_keypair, private_key_pem, public_key_pem
from services.audit.verify_stored import verify_against_latest
from services.bootstrap import SERVICES, build_app
from services.cases.erasure import erase
from services.cases.rebuild import rebuild
from services.cases.watch import read_feeds
from services.console.config import ConsoleSettings
from services.demo import acts, coordination
from services.demo.console import console_running, print_console
from services.demo.scenario import AgencyMessage, build_scenario
from services.privacy.keys import ensure_deployment_keys, load_kek
from services.privacy.vault import person_vault
from services.routing.policy import deployment_policy
from services.runtime.credentials import (
    AUDITOR_ROLE,
    OWNER_ROLE,
    database_url,
    kafka_client,
)
from services.runtime.database import asyncpg_dsn
from services.runtime.logging import logged_errors
from services.runtime.migrations import upgrade
from services.runtime.settings import Settings, get_settings

WAIT_S = 60.0


async def publish(settings: Settings, messages: Sequence[AgencyMessage]) -> None:
    """Each message as its agency: connected with the agency's credentials, in order."""
    producers: dict[str, AIOKafkaProducer] = {}
    try:
        for m in messages:
            producer = producers.get(m.agency)
            if producer is None:
                client = kafka_client(settings, m.agency)
                producer = AIOKafkaProducer(
                    **client.aiokafka(), enable_idempotence=True, acks="all"
                )
                await producer.start()
                producers[m.agency] = producer
            topic = settings.topic_prefix + m.topic
            await producer.send_and_wait(topic, m.value, key=m.key, headers=m.headers)
    finally:
        for producer in producers.values():
            await producer.stop()


async def _trail(conn: asyncpg.Connection, event_ids: list[str]) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT seq, outcome, event_type, subject, agency, reason_code, kafka_topic,"
        " attributes->>'cb_priority' AS priority, attributes->>'cb_rule' AS rule,"
        " attributes->>'ce_causationid' AS cause, event_id"
        " FROM audit_log WHERE event_id = ANY($1::text[])"
        " OR attributes->>'ce_causationid' = ANY($1::text[]) ORDER BY seq",
        event_ids,
    )
    return rows


def _settled(messages: Sequence[AgencyMessage], rows: Sequence[asyncpg.Record]) -> bool:
    for m in messages:
        mine = [r for r in rows if r["event_id"] == m.event_id or r["cause"] == m.event_id]
        outcomes = {r["outcome"] for r in mine}
        if m.expect == "routed":
            routed = [r for r in mine if r["outcome"] == "routed"]
            if not routed or "delivered" not in outcomes:
                return False
        elif "rejected" not in outcomes:
            return False
    return True


def _print_report(messages: Sequence[AgencyMessage], rows: Sequence[asyncpg.Record]) -> bool:
    ok = True
    print("\n== Where each agency message went ==")
    for m in messages:
        mine = [r for r in rows if r["event_id"] == m.event_id or r["cause"] == m.event_id]
        print(f"\n* {m.label}\n  case {m.case_id}, event {m.event_id}")
        delivered = [r for r in mine if r["outcome"] == "delivered"]
        rejected = [r for r in mine if r["outcome"] == "rejected"]
        for r in delivered:
            print(f"  -> inbox of {r['agency']:<24} priority {r['priority']:<9} rule {r['rule']}")
        for r in rejected:
            print(f"  -> DEAD-LETTER, reason {r['reason_code']}")
        got = (
            "routed"
            if delivered and not rejected
            else (rejected[0]["reason_code"] if rejected else "nothing")
        )
        if got != m.expect:
            ok = False
            print(f"  !! expected {m.expect}, got {got}")
    print("\n== Audit trail (append-only, gapless sequence) ==")
    print(f"{'seq':>6}  {'outcome':<9} {'topic':<44} {'agency':<24} reason")
    for r in rows:
        print(
            f"{r['seq']:>6}  {r['outcome']:<9} {r['kafka_topic']:<44} "
            f"{(r['agency'] or '-'):<24} {r['reason_code'] or ''}"
        )
    return ok


async def run_pipeline_part(settings: Settings, conn: asyncpg.Connection, run: str) -> bool:
    messages = build_scenario(run)
    print(f"CaseBridge demo run {run}: publishing {len(messages)} agency messages")
    await publish(settings, messages)
    ids = [m.event_id for m in messages]
    deadline = time.monotonic() + WAIT_S
    rows = await _trail(conn, ids)
    while not _settled(messages, rows) and time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        rows = await _trail(conn, ids)
    return _print_report(messages, rows)


async def run_coordination_part(settings: Settings, conn: asyncpg.Connection, run: str) -> bool:
    print("\n== Case coordination: SAR incident, victim identification, protection, return ==")

    async def send(messages: Sequence[AgencyMessage]) -> None:
        await publish(settings, messages)

    ok = True
    for steps in (
        coordination.sar_steps(run),
        coordination.referral_steps(run),
        coordination.return_steps(run),
    ):
        ok &= await coordination.play(steps, send, conn, report=coordination.print_step)
    cases = coordination.cases_of(run)
    mine = {cases.sar, cases.referral, cases.returns}
    agencies = [a.id for a in deployment_policy(settings).agencies]
    await asyncio.sleep(1.0)  # let the outbox relay the last updates
    feeds = await read_feeds(settings, agencies)
    print("\n== What each agency's caseworkers saw (casebridge.updates.<agency>) ==")
    for agency in agencies:
        items = [i for i in feeds[agency] if i.case_id in mine]
        print(f"\n{agency}: {len(items)} updates")
        for item in items:
            print(f"    {item.line()}")
    report = await rebuild(conn, person_vault(settings))
    print(
        f"\nRebuild from the case event log: {report.identical}/{report.cases} cases identical"
        + ("" if report.ok else f"; differing {report.differing}")
    )
    return ok and report.ok


async def run_priority_acts(settings: Settings, conn: asyncpg.Connection, run: str) -> bool:
    """The remaining priorities, an act each: a business's report of forced labour, a
    returnee's travel document gating her departure, a regional statistics release."""

    async def send(messages: Sequence[AgencyMessage]) -> None:
        await publish(settings, messages)

    ok = await acts.business_report_act(settings, conn, run, send)
    ok &= await acts.document_act(settings, conn, run, send)
    ok &= await acts.statistics_act(settings)
    return ok


async def run_erasure_part(settings: Settings, conn: asyncpg.Connection, run: str) -> bool:
    """The data-protection officer erases the referred survivor's personal data: the key
    goes, the case log and the audit log stay whole and verifiable."""
    case_id = coordination.cases_of(run).referral
    print(f"\n== Erasure: the survivor of {case_id} asks for their personal data to be erased ==")
    code = await erase(
        settings,
        case_id=case_id,
        person_key=None,
        reason="data_subject_request",
        requested_by="Data-protection officer (synthetic)",
        timeout_s=30.0,
        out=lambda line: print(f"  {line}"),
    )
    await asyncio.sleep(1.0)  # the audit consumer appends the erasure's own records
    vault = person_vault(settings, cache_ttl_s=0.0)
    records = await find_events(conn, EventFilter(case_id=case_id), limit=1000, vault=vault)
    erased = sum(1 for r in records.items if r.erased)
    print(
        f"  audit records of {case_id}: {len(records.items)}, of which {erased} now read as "
        "erased (their hashes still in the signed tree)"
    )
    report = await rebuild(conn, vault)
    print(
        f"  rebuild after erasure: {report.identical}/{report.cases} cases identical"
        + ("" if report.ok else f"; differing {report.differing}")
    )
    return code == 0 and erased > 0 and report.ok


async def _until_interrupted() -> None:
    """Wait for Ctrl-C or SIGTERM, then return so the services stop cleanly."""
    interrupted = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupted.set)
    await interrupted.wait()


def demo_audit_settings(export_dir: Path) -> tuple[AuditSettings, Path]:
    """The configured audit settings; without a signing key, a demo key kept in `export_dir`
    (a deployment configures its own: CASEBRIDGE_AUDIT_SIGNING_KEY[_FILE]). Returns the
    settings and the public key file a verifier trusts."""
    audit = AuditSettings()
    if audit.signing_key is None and audit.signing_key_file is None:
        key_file = export_dir / "audit-demo-signing-key.pem"
        if not key_file.exists():
            export_dir.mkdir(parents=True, exist_ok=True)
            private, _ = generate_keypair()
            key_file.write_text(private_key_pem(private))
            key_file.chmod(0o600)
        audit = AuditSettings(
            signing_key_file=key_file, export_dir=export_dir, sth_every_seconds=2.0
        )
    public_file = audit.export_dir / "audit-public-key.pem"
    public_file.write_text(public_key_pem(audit.private_key()))
    return audit, public_file


def set_up(settings: Settings) -> None:
    """What an operator does once per deployment, idempotently: migrate the database, then
    create every topic, credential and ACL the agency registry implies."""
    ensure_deployment_keys(settings.secrets_dir)
    upgrade(database_url(settings, OWNER_ROLE))
    plan = deployment_plan(settings)
    report = sync(settings, plan)
    print(
        f"Set-up: {len(plan.principals)} Kafka principals, {report.grants} ACLs, "
        f"{len(plan.topics)} topics; each agency's client file in {settings.secrets_dir / 'kafka'}"
    )


async def verify_audit_log(settings: Settings, audit: AuditSettings, public_file: Path) -> bool:
    report = await verify_against_latest(
        database_url(settings, AUDITOR_ROLE),
        public_file,
        tree_heads_file=audit.tree_heads_path,
        leaf_hashes_file=audit.leaf_hashes_path,
        kek=partial(load_kek, secrets_dir=settings.secrets_dir),
    )
    print("\n== Audit log verified against the latest signed tree head ==")
    print(f"  trusting only the public key {public_file}")
    print(
        f"  tree size {report.tree_size}, records checked {report.checked}: "
        + (
            "OK, every record matches the signed root"
            if report.ok
            else f"FAILED ({report.problem}, first divergent seq {report.first_divergent_seq})"
        )
    )
    print(
        f"  payloads opened and matched to their digests: {report.payloads_checked}; "
        f"erased (key destroyed, hash kept): {report.erased}"
    )
    return report.ok


async def run_demo(
    settings: Settings,
    *,
    keep_running: bool,
    export_dir: Path | None = None,
    console_settings: ConsoleSettings | None = None,
) -> int:
    await asyncio.to_thread(set_up, settings)
    audit, public_file = demo_audit_settings(export_dir or settings.run_dir)
    app = build_app(*SERVICES, settings=settings, audit=audit)
    await app.start()
    stopped = False
    async with contextlib.AsyncExitStack() as console_stack:
        try:
            run = uuid.uuid4().hex[:6].upper()
            # Reports read as the read-only auditor role.
            conn = await asyncpg.connect(asyncpg_dsn(database_url(settings, AUDITOR_ROLE)))
            try:
                ok = await run_pipeline_part(settings, conn, run)
                ok &= await run_coordination_part(settings, conn, run)
                ok &= await run_priority_acts(settings, conn, run)
                ok &= await run_erasure_part(settings, conn, run)
                console = await console_stack.enter_async_context(
                    console_running(
                        settings, conn, run, partial(publish, settings), audit, console_settings
                    )
                )
            finally:
                await conn.close()
            await asyncio.sleep(1.0)  # the audit consumer appends the last updates
            if keep_running:
                await asyncio.sleep(audit.sth_every_seconds + 1.0)  # the signer's next head
            else:
                await console_stack.aclose()
                await app.stop()  # the signer signs the final tree head on the way out
                stopped = True
            ok &= await verify_audit_log(settings, audit, public_file)
            errors = logged_errors()  # a healthy run logs none (the lines are on stderr)
            print(f"\nLog lines at error level: {errors}")
            ok &= errors == 0
            print("\nDemo result:", "OK" if ok else "FAILED")
            print_console(console, keep_running=keep_running)
            if keep_running:
                print("Services and console keep running (Ctrl-C to stop).")
                await _until_interrupted()
            return 0 if ok else 1
        finally:
            await console_stack.aclose()
            if not stopped:
                await app.stop()


def main(*, keep_running: bool = False, settings: Settings | None = None) -> int:
    return asyncio.run(run_demo(settings or get_settings(), keep_running=keep_running))
