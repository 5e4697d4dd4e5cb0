"""`casebridge audit verify --progress` and `export --progress` on the real database.

With progress shown, `verify` checks the log in more, smaller chunks than it has worker
processes, so that the count moves as each chunk ends: the verdict and the divergent seq it
names must be the same as without. The progress goes to stderr only; stdout keeps the report
and the records.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import orjson
import pytest

from services.audit import verify_stored
from services.audit.cli import main as cli_main
from services.audit.tree_head import public_key_pem
from services.audit.verify_stored import read_tree_heads_file, verify_database
from services.runtime.database import asyncpg_dsn
from tests.integration.audit.support import PUBLIC, AuditDb, seed_and_sign

pytestmark = pytest.mark.postgres


async def _both(db: AuditDb, export_dir: Path) -> tuple[verify_stored.VerificationReport, ...]:
    heads = read_tree_heads_file(export_dir / "tree-heads.jsonl")
    return tuple(
        [
            await verify_database(
                db.auditor, PUBLIC, tree_heads=heads, kek=db.kek, workers=2, progress=shown
            )
            for shown in (False, True)
        ]
    )


async def test_verify_with_progress_reaches_the_same_verdict_in_smaller_chunks(
    audit_db: AuditDb,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    await seed_and_sign(audit_db, tmp_path)
    monkeypatch.setattr(verify_stored, "_PARALLEL_FROM", 0)  # the worker processes, at 40 rows
    monkeypatch.setattr(verify_stored, "_FETCH", 5)  # with progress: 8 chunks, 2 workers

    plain, shown = await _both(audit_db, tmp_path)
    assert plain.ok, plain.detail
    assert shown == plain
    assert "verify: 40/40 records (100.0 %)" in capfd.readouterr().err

    conn = await asyncpg.connect(asyncpg_dsn(audit_db.owner))
    try:
        async with conn.transaction():
            await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
            await conn.execute(
                "UPDATE audit_log SET event_type = 'org.casebridge.forged.v1' WHERE seq = 27"
            )
            await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER USER")
    finally:
        await conn.close()
    plain, shown = await _both(audit_db, tmp_path)
    assert not plain.ok
    assert plain.first_divergent_seq == 27
    assert shown == plain


async def test_cli_progress_goes_to_stderr_and_stdout_keeps_the_results(
    audit_db: AuditDb, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    await seed_and_sign(audit_db, tmp_path)
    key_file = tmp_path / "public.pem"
    key_file.write_text(public_key_pem(PUBLIC))
    source = ["--database-url", audit_db.auditor]
    verify = ["verify", "--public-key", str(key_file), *source, "--no-payloads"]
    capfd.readouterr()  # the seeding's own log lines

    assert await asyncio.to_thread(cli_main, [*verify, "--progress"]) == 0
    out, err = capfd.readouterr()
    assert out.startswith("ok: 40 records match the signed root"), out
    assert "verify: 40/40 records (100.0 %)" in err

    assert await asyncio.to_thread(cli_main, verify) == 0
    out, err = capfd.readouterr()
    assert out.startswith("ok: 40 records"), out
    assert "verify:" not in err, "no progress unless asked, stderr not being a terminal"

    assert await asyncio.to_thread(cli_main, ["export", "--all", *source, "--progress"]) == 0
    out, err = capfd.readouterr()
    assert [orjson.loads(line)["seq"] for line in out.splitlines()] == list(range(40))
    assert "export: 40/40 records (100.0 %)" in err
    assert err.strip().endswith("exported 40 records")
