"""The console served for real (uvicorn on a free port), with accounts and a case to work on."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
import uvicorn
from fastapi import FastAPI

from services.console.accounts import Role
from services.console.cli import create_accounts
from services.demo import coordination
from services.demo.run import publish as publish_as_agencies
from services.demo.scenario import AgencyMessage
from services.runtime.credentials import AUDITOR_ROLE, database_url
from services.runtime.database import asyncpg_dsn
from services.runtime.settings import Settings
from tests.support.stack import free_port

REQUESTER = "id-shelter-ngo"
"""Owns the referral and asks th-shelter-ngo to join it."""
RECEIVER = "th-shelter-ngo"
"""The handover's receiver: sees the case, may accept or decline."""
OUTSIDER = "au-jrcc"
"""A registered agency with no standing on the case: must see and do nothing with it."""


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    """The app on 127.0.0.1:<free port>, lifespan included; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(200):
            if server.started:
                break
            if task.done():
                task.result()
            await asyncio.sleep(0.05)
        assert server.started, "the console did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


@dataclass(frozen=True)
class Accounts:
    """username -> password, for each kind of person a test signs in as."""

    requester: tuple[str, str]
    receiver: tuple[str, str]
    outsider: tuple[str, str]
    auditor: tuple[str, str]


async def make_accounts(settings: Settings) -> Accounts:
    tag = uuid.uuid4().hex[:6]
    wanted = {
        "requester": (f"ana.{tag}", REQUESTER, Role.caseworker, "Ana (ID shelter)"),
        "receiver": (f"somchai.{tag}", RECEIVER, Role.caseworker, "Somchai (TH shelter)"),
        "outsider": (f"olivia.{tag}", OUTSIDER, Role.caseworker, "Olivia (AU JRCC)"),
        "auditor": (f"audrey.{tag}", REQUESTER, Role.auditor, "Audrey (auditor)"),
    }
    passwords = await create_accounts(settings, list(wanted.values()))
    return Accounts(**{k: (v[0], passwords[v[0]]) for k, v in wanted.items()})


async def referral_awaiting_handover(settings: Settings) -> str:
    """The demo's referral, played up to the handover request to th-shelter-ngo (version 5);
    returns its case id."""
    run = uuid.uuid4().hex[:6].upper()
    steps = coordination.referral_steps(run)[:5]

    async def send(messages: Sequence[AgencyMessage]) -> None:
        await publish_as_agencies(settings, messages)

    conn = await asyncpg.connect(asyncpg_dsn(database_url(settings, AUDITOR_ROLE)))
    try:
        assert await coordination.play(steps, send, conn), "the referral did not reach v5"
    finally:
        await conn.close()
    return steps[0].case_id
