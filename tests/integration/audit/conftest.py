"""A fresh migrated database per test: the audit log's seq starts at 0 in each."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from services.runtime.credentials import AUDITOR_ROLE, OWNER_ROLE
from services.runtime.database import asyncpg_dsn
from tests.integration.audit.support import SIGNER_ROLE, WRITER_ROLE, AuditDb
from tests.support.stack import Stack


@pytest.fixture
async def audit_db(stack: Stack) -> AsyncIterator[AuditDb]:
    name = await stack.create_database()
    yield AuditDb(
        name,
        owner=stack.url(OWNER_ROLE, name),
        writer=stack.url(WRITER_ROLE, name),
        signer=stack.url(SIGNER_ROLE, name),
        auditor=stack.url(AUDITOR_ROLE, name),
        secrets_dir=stack.run_dir / "secrets",
    )
    conn = await asyncpg.connect(asyncpg_dsn(stack.url("postgres", "postgres")))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
