"""The demo's last act: the caseworkers' console, serving the demo's cases.

Demo accounts are (re)made for the agencies of the referral (passwords new on every run), and a
second referral is left waiting for th-shelter-ngo's answer, so a person can sign in and accept
or decline it. Before the address is printed the console is checked through its own API: the
receiving agency sees the waiting case and an agency with no standing does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import asyncpg
import httpx
import uvicorn
from fastapi import FastAPI

from services.audit.api import create_api
from services.audit.config import (
    SCOPE_METADATA,
    Auditor,
    AuditorRegistry,
    AuditSettings,
    token_hash,
)
from services.console.accounts import Role
from services.console.app import create_console, default_parts
from services.console.auditing import AuditClient
from services.console.cli import create_accounts
from services.console.config import ConsoleSettings
from services.demo import coordination
from services.runtime.settings import Settings

DEMO_ACCOUNTS: tuple[tuple[str, str, Role, str], ...] = (
    ("demo.id-shelter", "id-shelter-ngo", Role.caseworker, "Demo caseworker, ID shelter"),
    ("demo.th-shelter", "th-shelter-ngo", Role.caseworker, "Demo caseworker, TH shelter"),
    ("demo.id-police", "id-police-aht", Role.caseworker, "Demo caseworker, ID police"),
    ("demo.au-jrcc", "au-jrcc", Role.caseworker, "Demo caseworker, AU JRCC"),
    ("demo.auditor", "regional-support-office", Role.auditor, "Demo auditor"),
)


@dataclass(frozen=True)
class ConsoleDemo:
    url: str
    passwords: dict[str, str]
    waiting_case: str
    """A referral whose handover th-shelter-ngo has not answered yet."""


async def waiting_referral(
    settings: Settings,
    conn: asyncpg.Connection,
    run: str,
    publish: coordination.Publish,
) -> str:
    """A referral left waiting for th-shelter-ngo's answer (`waiting_handover_steps`)."""
    steps = coordination.waiting_handover_steps(run)
    assert await coordination.play(steps, publish, conn), "the waiting referral did not open"
    return steps[0].case_id


async def _checked(url: str, passwords: dict[str, str], case_id: str) -> None:
    """The receiver sees the waiting case, an agency without standing does not."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:

        async def cases_of(username: str) -> set[str]:
            signed = await client.post(
                "/api/v1/session", json={"username": username, "password": passwords[username]}
            )
            signed.raise_for_status()
            headers = {"Authorization": f"Bearer {signed.json()['token']}"}
            listed = await client.get("/api/v1/cases", headers=headers)
            listed.raise_for_status()
            await client.delete("/api/v1/session", headers=headers)
            return {c["case_id"] for c in listed.json()["cases"]}

        if case_id not in await cases_of("demo.th-shelter"):
            raise RuntimeError("the console does not show th-shelter-ngo its waiting case")
        if case_id in await cases_of("demo.au-jrcc"):
            raise RuntimeError("the console shows au-jrcc a case it has no standing on")
        # The auditor's page, as a browser would: the form, the cookie, the latest head.
        await client.post(
            "/sign-in",
            data={"username": "demo.auditor", "password": passwords["demo.auditor"]},
        )
        page = await client.get("/audit")
        if page.status_code != 200 or "valid for the signer" not in page.text:
            raise RuntimeError("the console's audit page shows no valid signed tree head")


@contextlib.asynccontextmanager
async def _served(app: FastAPI, host: str, port: int, name: str) -> AsyncIterator[str]:
    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError(f"the {name} did not start on {host}:{port}")
            await asyncio.sleep(0.05)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


@contextlib.asynccontextmanager
async def console_running(
    settings: Settings,
    conn: asyncpg.Connection,
    run: str,
    send: coordination.Publish,
    audit: AuditSettings,
    console: ConsoleSettings | None = None,
) -> AsyncIterator[ConsoleDemo]:
    """The console, and the auditors' API its auditors' pages ask (at the console's
    `audit_api_url`, with a metadata-only token made for this run)."""
    console = console or ConsoleSettings()
    passwords = await create_accounts(settings, list(DEMO_ACCOUNTS))
    case_id = await waiting_referral(settings, conn, run, send)
    token = secrets.token_urlsafe(32)
    auditors = AuditorRegistry({token_hash(token): Auditor("console", frozenset({SCOPE_METADATA}))})
    api_address = urlsplit(console.audit_api_url)
    parts = default_parts(settings, console)
    parts.audit_client = AuditClient(console.audit_api_url, token, audit.public_key())
    async with (
        _served(
            create_api(settings, audit, auditors=auditors),
            api_address.hostname or "127.0.0.1",
            api_address.port or 80,
            "auditors' API",
        ),
        _served(
            create_console(settings, console, parts=parts), console.host, console.port, "console"
        ) as url,
    ):
        await _checked(url, passwords, case_id)
        yield ConsoleDemo(url, passwords, case_id)


def print_console(demo: ConsoleDemo, *, keep_running: bool) -> None:
    print("\n== The caseworkers' console ==")
    print(
        f"  checked: th-shelter-ngo sees {demo.waiting_case} waiting, au-jrcc does not; the"
        " auditor's page shows a valid signed tree head"
    )
    if keep_running:
        print("  demo accounts (passwords shown this once; new ones on every run):")
        for username, agency, _, _ in DEMO_ACCOUNTS:
            print(f"    {username:<18} {agency:<16} {demo.passwords[username]}")
        print(f"  sign in as demo.th-shelter to answer the handover of {demo.waiting_case};")
        print("  as demo.auditor to search the audit log and check a record's inclusion proof")
    else:
        print("  (stopped with the demo: KEEP_RUNNING=1 make demo keeps it up, with accounts)")
    print(f"Console: {demo.url}/")
