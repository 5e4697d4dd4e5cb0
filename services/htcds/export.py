"""`casebridge export htcds`: cases read from their log, as the auditor, written as HTCDS 2.0.

Cases are read the way `casebridge cases rebuild` reads them: as the read-only auditor role, in
a read-only transaction, each case folded from its event log (the truth) with its sealed
personal fields opened by the person vault. A person whose key was erased reads as erased, so
the case exports without personal fields and its line says ``"personal_data": "erased"``.

Every record is checked against the field list before anything is written: a record that does
not conform stops the export (a bug in the mapping, never a half-written file). Messages name
cases, agencies and fields, never a value.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

import asyncpg
import orjson

from services.cases import store
from services.cases.coordinator import directory_of
from services.cases.domain import CaseContext, CaseEvent, replay
from services.cases.domain import load_policy as load_case_policy
from services.cases.domain.model import Case
from services.htcds.fields import validate
from services.htcds.mapping import CaseExport, NoStandingError, export_for
from services.privacy.policy import load_policy as load_data_sharing_policy
from services.privacy.vault import person_vault
from services.routing.policy import deployment_policy
from services.runtime.credentials import AUDITOR_ROLE, database_url
from services.runtime.database import asyncpg_dsn
from services.runtime.settings import Settings

EXIT_OK = 0
EXIT_INVALID = 1
"""A record did not conform to the field list: nothing was written."""
EXIT_NOTHING = 3
"""Nothing to export: no such case, no case in the range, or no standing on any."""


@dataclass(frozen=True, slots=True)
class Selection:
    """One case by id, or the cases opened from `since` to `until` (dates inclusive, UTC)."""

    case_id: str | None = None
    since: dt.date | None = None
    until: dt.date | None = None

    def __post_init__(self) -> None:
        if (self.case_id is None) == (self.since is None or self.until is None):
            raise ValueError("name a case id, or both --since and --until")


async def case_ids_opened(conn: Any, since: dt.date, until: dt.date) -> list[str]:
    """Cases whose opening event (version 1) happened from `since` to `until`, UTC."""
    start = dt.datetime.combine(since, dt.time(), tzinfo=dt.UTC)
    end = dt.datetime.combine(until + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    rows = await conn.fetch(
        "SELECT case_id FROM case_event WHERE version = 1"
        " AND (event ->> 'occurred_at')::timestamptz >= $1"
        " AND (event ->> 'occurred_at')::timestamptz < $2 ORDER BY case_id",
        start,
        end,
    )
    return [r[0] for r in rows]


def context_of(settings: Settings) -> CaseContext:
    """The agency directory and the data-sharing policy the deployment runs with."""
    return CaseContext(
        agencies=directory_of(deployment_policy(settings)),
        policy=load_case_policy(settings.case_policy_path),
        data_sharing=load_data_sharing_policy(settings.data_sharing_policy_path),
    )


def exports_of(
    logs: dict[str, list[CaseEvent]],
    *,
    agency: str | None,
    ctx: CaseContext,
    on: dt.date,
) -> tuple[list[CaseExport], list[str]]:
    """Each case's export, and the cases the agency has no standing on (left out)."""
    exports: list[CaseExport] = []
    refused: list[str] = []
    for case_id, events in sorted(logs.items()):
        case: Case | None = replay(events)
        if case is None:
            continue
        try:
            exports.append(export_for(case, events, agency=agency, ctx=ctx, on=on))
        except NoStandingError:
            refused.append(case_id)
    return exports, refused


async def export_htcds(
    settings: Settings,
    selection: Selection,
    *,
    agency: str | None,
    out: IO[bytes],
    say: Callable[[str], None],
    today: dt.date | None = None,
) -> int:
    """Write the selected cases as JSON Lines to `out`; `say` gets the summary (stderr)."""
    ctx = context_of(settings)
    on = today or dt.datetime.now(dt.UTC).date()
    conn = await asyncpg.connect(asyncpg_dsn(database_url(settings, AUDITOR_ROLE)))
    try:
        async with conn.transaction(readonly=True):
            ids = [selection.case_id] if selection.case_id is not None else []
            if selection.since is not None and selection.until is not None:
                ids = await case_ids_opened(conn, selection.since, selection.until)
            logs = await store.case_logs(conn, person_vault(settings, cache_ttl_s=0), ids)
    finally:
        await conn.close()
    if not logs:
        say(
            f"no case {selection.case_id}"
            if selection.case_id is not None
            else f"no case opened from {selection.since} to {selection.until}"
        )
        return EXIT_NOTHING
    exports, refused = exports_of(logs, agency=agency, ctx=ctx, on=on)
    for case_id in refused:
        say(f"agency {agency} has no standing on case {case_id}: nothing exported for it")
    if not exports:
        return EXIT_NOTHING
    problems = [f"{e.case_id}: {p}" for e in exports for p in validate(e.record)]
    if problems:
        say("not HTCDS 2.0, nothing written:\n  " + "\n  ".join(problems))
        return EXIT_INVALID
    for e in exports:
        out.write(orjson.dumps(e.as_json()) + b"\n")
        if e.personal_data == "erased":
            say(f"case {e.case_id}: the person's data was erased; exported without it")
    for_whom = f"for agency {agency}" if agency is not None else "whole records"
    say(f"exported {len(exports)} case(s) as HTCDS 2.0 ({for_whom})")
    return EXIT_OK
