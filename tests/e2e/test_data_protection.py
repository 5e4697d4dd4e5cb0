"""The data-protection model of the demo scenario, end to end on the real broker and database.

At rest: reading every column of every table as the database owner finds no personal value of
the demo in plain text (positive control: opening the same data with the key-encryption key
finds them). After the demo erases the referred survivor: the audit log still verifies, the
auditors' API serves that case's records marked erased, the cases rebuild identically, and
nothing the KEK can still open (case tables, the audit export written outside the database)
holds any of that person's values, while other people's data still opens.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from schemas.cases import CaseOpened
from services.audit.api import MemoryQueryRecorder, create_api
from services.audit.config import SCOPE_PAYLOAD, Auditor, AuditorRegistry, AuditSettings, token_hash
from services.audit.queries import export_log
from services.cases import store
from services.cases.domain import CASE_ADAPTER
from services.cases.rebuild import rebuild
from services.demo import coordination
from services.demo.run import run_demo
from services.privacy.vault import person_vault
from services.runtime.credentials import AUDITOR_ROLE, OWNER_ROLE, database_url
from services.runtime.database import Database, asyncpg_dsn
from services.runtime.settings import Settings
from tests.support.scenario_values import ScenarioValue, demo_messages, scenario_values
from tests.support.stack import Stack

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

TOKEN = "dpo-test-auditor-token"
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}")


@dataclass
class Demo:
    settings: Settings
    out: str
    erased_case: str
    export_dir: Path


@pytest.fixture(scope="module")
async def demo(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Demo:
    ns = f"p{uuid.uuid4().hex[:10]}."
    database = await stack.create_database()
    settings = stack.settings(database=database, topic_prefix=ns, group_prefix=ns + "cb")
    export_dir = tmp_path_factory.mktemp("exports")
    capture = pytest.MonkeyPatch()
    lines: list[str] = []
    capture.setattr("builtins.print", lambda *a, **_: lines.append(" ".join(map(str, a))))
    try:
        code = await run_demo(settings, keep_running=False, export_dir=export_dir)
    finally:
        capture.undo()
    out = "\n".join(lines)
    assert code == 0, out
    match = re.search(r"Erasure: the survivor of (\S+) asks", out)
    assert match, out
    return Demo(settings, out, match.group(1), export_dir)


def personal_values() -> list[ScenarioValue]:
    return [v for v in scenario_values() if v.personal]


def erased_person_values() -> tuple[list[ScenarioValue], list[ScenarioValue]]:
    """The erased survivor's values that no other person in the scenario shares, and the
    values of the people who were not erased (the positive control)."""
    opening = coordination.referral_steps("X")[0].message
    theirs = {(v.path, v.value) for v in scenario_values([opening]) if v.personal}
    others = [
        v
        for m in demo_messages("X")
        if m.label != opening.label
        for v in scenario_values([m])
        if v.personal
    ]
    shared = {(v.path, v.value) for v in others}
    mine = [v for v in personal_values() if (v.path, v.value) in theirs - shared]
    return mine, [v for v in others if (v.path, v.value) not in theirs]


def texts(cell: Any) -> list[str]:
    """How a stored value could show a personal value: as text, as bytes, or base64 in either."""
    if cell is None:
        return []
    if isinstance(cell, bytes | bytearray | memoryview):
        raw = bytes(cell)
        return [raw.decode("latin-1"), *texts(raw.decode("latin-1", "replace"))[1:]]
    text = str(cell)
    found = [text]
    for run in _BASE64_RUN.findall(text):
        try:
            found.append(base64.b64decode(run + "=" * (-len(run) % 4)).decode("latin-1"))
        except (binascii.Error, ValueError):
            continue
    return found


async def every_stored_text(conn: asyncpg.Connection) -> list[str]:
    out: list[str] = []
    tables = await conn.fetch(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
    )
    assert {"audit_log", "case_state", "case_event", "data_key"} <= {t[0] for t in tables}
    for (table,) in tables:
        for row in await conn.fetch(f'SELECT * FROM "{table}"'):
            for cell in row.values():
                out += texts(cell)
    return out


def found(values: list[ScenarioValue], corpus: list[str]) -> list[str]:
    return sorted({f"{v.path}={v.value!r}" for v in values for t in corpus if v.found_in(t)})


async def opened_everywhere(settings: Settings, export_dir: Path) -> list[str]:
    """Everything the KEK can still open: case snapshots and logs, and the whole audit log
    exported with payloads to a file outside the database."""
    vault = person_vault(settings, cache_ttl_s=0.0)
    conn = await asyncpg.connect(asyncpg_dsn(database_url(settings, AUDITOR_ROLE)))
    try:
        corpus = [
            CASE_ADAPTER.dump_json(c).decode()
            for c in (await store.snapshots(conn, vault)).values()
        ]
        for log in (await store.case_logs(conn, vault)).values():
            corpus += [e.model_dump_json() for e in log]
        export = export_dir / "audit-export.jsonl"
        with export.open("wb") as f:
            async for line in export_log(conn, vault=vault):
                f.write(line)
    finally:
        await conn.close()
    return (
        corpus
        + texts(export.read_text())
        + [p.read_bytes().decode("latin-1") for p in sorted(export_dir.iterdir())]  # noqa: ASYNC240
    )


async def test_no_personal_value_is_stored_in_plain_text(demo: Demo) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(database_url(demo.settings, OWNER_ROLE)))
    try:
        stored = await every_stored_text(conn)
    finally:
        await conn.close()
    values = personal_values()
    assert len(values) >= 10
    assert found(values, stored) == []
    # Positive control: the same values are there, sealed, for whoever holds the KEK.
    assert found(erased_person_values()[1], await opened_everywhere(demo.settings, demo.export_dir))


async def test_after_erasure_nothing_openable_holds_the_persons_values(demo: Demo) -> None:
    mine, others = erased_person_values()
    assert mine, "the erased survivor has values no one else shares"
    corpus = await opened_everywhere(demo.settings, demo.export_dir)
    assert found(mine, corpus) == []
    assert found(others, corpus), "other people's data still opens (positive control)"


async def test_the_log_verifies_and_the_case_rebuilds_after_erasure(demo: Demo) -> None:
    assert f"erased: case {demo.erased_case}" in demo.out
    assert "OK, every record matches the signed root" in demo.out
    erased = re.search(r"erased \(key destroyed, hash kept\): (\d+)", demo.out)
    assert erased, demo.out
    assert int(erased.group(1)) > 0, demo.out
    conn = await asyncpg.connect(asyncpg_dsn(database_url(demo.settings, AUDITOR_ROLE)))
    try:
        report = await rebuild(conn, person_vault(demo.settings, cache_ttl_s=0.0))
        assert report.ok, report.differing
        assert report.cases >= 3
        row = await conn.fetchrow(
            "SELECT person_key, snapshot FROM case_state WHERE case_id = $1", demo.erased_case
        )
        assert row["person_key"] is None
        links = await conn.fetchval(
            "SELECT count(*) FROM case_state WHERE snapshot::text LIKE '%' || $1 || '%'"
            " AND case_id <> $1",
            demo.erased_case,
        )
        assert links == 0, "no other case links to the erased person"
        opening = (await store.case_logs(conn, person_vault(demo.settings)))[demo.erased_case][0]
        assert isinstance(opening, CaseOpened)
        assert opening.referral is not None
        assert opening.referral.location_country == "ID"  # non-personal facts intact
    finally:
        await conn.close()


async def test_the_auditors_api_serves_the_erased_records_as_erased(demo: Demo) -> None:
    database = Database(database_url(demo.settings, AUDITOR_ROLE))
    app = create_api(
        demo.settings,
        AuditSettings(export_dir=demo.export_dir),  # the demo's public key is there
        recorder=MemoryQueryRecorder(),
        database=database,
        auditors=AuditorRegistry(
            {token_hash(TOKEN): Auditor("dpo-test", frozenset({SCOPE_PAYLOAD}))}
        ),
    )
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://a") as c,
        ):
            headers = {"Authorization": f"Bearer {TOKEN}"}
            erased = await c.get(
                "/v1/events", params={"case_id": demo.erased_case, "limit": 500}, headers=headers
            )
            kept = await c.get(
                "/v1/events",
                params={
                    "case_id": coordination.cases_of(demo.erased_case.split("-")[1]).returns,
                    "limit": 500,
                },
                headers=headers,
            )
    finally:
        await database.close()
    assert erased.status_code == 200, erased.text
    items = erased.json()["items"]
    gone = [i for i in items if i["erased"]]
    assert gone, "the case's records read as erased"
    assert all(i["payload"] is None and i["raw_value"] is None for i in gone)
    assert all(i["payload_digest"] and i["leaf_hash"] for i in gone)
    mine, _ = erased_person_values()
    assert found(mine, [erased.text]) == []
    # Positive control: another person's case still opens.
    assert kept.status_code == 200
    assert any(i["payload"] is not None for i in kept.json()["items"])
