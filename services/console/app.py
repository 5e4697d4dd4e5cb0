"""The console application: `create_console(settings)` is a FastAPI app served by uvicorn
(`casebridge console serve`), pages under `/`, the JSON API under `/api/v1`.

It connects with three identities, none of them more than its task needs: the database role
`casebridge_console` (accounts and sessions), the role `casebridge_caseworkers` (cases, under
row-level security, for the signed-in agency), and on Kafka the console's own principal (which
may write the activity topic only) plus, for actions, each agency's own credentials.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from services.audit.config import AuditSettings
from services.cases.reads import CaseReader
from services.console import api as api_module
from services.console.accounts import Accounts
from services.console.actions import AgencyPublishers
from services.console.activity import ActivityLog, KafkaActivityLog, MemoryActivityLog
from services.console.api import build_api
from services.console.audit_pages import build_audit_pages
from services.console.auditing import AuditClient
from services.console.casework import Casework
from services.console.config import ConsoleSettings
from services.console.pages import build_pages
from services.console.web import Identity, install_problem_handlers
from services.runtime.credentials import database_url, kafka_client, service_principal
from services.runtime.database import Database
from services.runtime.kafka import KafkaPublisher
from services.runtime.settings import Settings

ACCOUNTS_ROLE = "casebridge_console"
CASEWORKERS_ROLE = "casebridge_caseworkers"


@dataclass
class ConsoleParts:
    """What the console runs on; tests swap the activity log."""

    accounts_db: Database
    cases_db: Database
    activity: ActivityLog
    publishers: AgencyPublishers
    activity_publisher: KafkaPublisher | None = None
    audit_client: AuditClient | None = None
    """The auditors' pages' client of the auditors' API; None when not configured."""


def default_parts(settings: Settings, console: ConsoleSettings) -> ConsoleParts:
    publisher = KafkaPublisher(settings, kafka_client(settings, service_principal("console")))
    audit_client = None
    if console.audit_api_token is not None:
        audit_client = AuditClient(
            console.audit_api_url,
            console.audit_api_token.get_secret_value(),
            AuditSettings().public_key(),
        )
    return ConsoleParts(
        accounts_db=Database(database_url(settings, ACCOUNTS_ROLE), max_size=4),
        cases_db=Database(database_url(settings, CASEWORKERS_ROLE), max_size=8),
        activity=KafkaActivityLog(publisher),
        publishers=AgencyPublishers(settings),
        activity_publisher=publisher,
        audit_client=audit_client,
    )


def create_console(
    settings: Settings,
    console: ConsoleSettings | None = None,
    *,
    parts: ConsoleParts | None = None,
) -> FastAPI:
    console = console or ConsoleSettings()
    p = parts or default_parts(settings, console)
    accounts = Accounts(p.accounts_db, idle_s=console.session_idle_s, max_s=console.session_max_s)
    identity = Identity(accounts, p.activity)
    casework = Casework(
        CaseReader(p.cases_db), p.activity, p.publishers, wait_s=console.action_wait_s
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await p.accounts_db.start()
        await p.cases_db.start()
        if p.activity_publisher is not None:
            await p.activity_publisher.start()
        try:
            yield
        finally:
            await p.publishers.stop()
            if p.audit_client is not None:
                await p.audit_client.close()
            if p.activity_publisher is not None:
                await p.activity_publisher.stop()
            await p.cases_db.close()
            await p.accounts_db.close()

    app = FastAPI(
        title="CaseBridge caseworkers' API",
        version="1",
        summary="Cases of the caseworker's agency: list, read, and act, as the agency.",
        description=api_module.__doc__ or "",
        openapi_url="/api/v1/openapi.json",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    install_problem_handlers(app)
    app.include_router(build_api(identity, casework))
    app.include_router(build_pages(identity, casework, console))
    app.include_router(build_audit_pages(identity, p.activity, p.audit_client))

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return app


def openapi_document() -> dict[str, object]:
    """The API's contract, built without connecting anywhere (no secret is read)."""
    unused = Database("postgresql://unused@127.0.0.1:1/unused")
    parts = ConsoleParts(unused, unused, MemoryActivityLog(), AgencyPublishers(Settings()))
    document: dict[str, object] = create_console(Settings(), parts=parts).openapi()
    return document
