"""A fresh migrated database per test: the audit log's seq starts at 0 in each."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest

from services.runtime.database import asyncpg_dsn
from tests.support.stack import Stack


@dataclass(frozen=True)
class AuditDb:
    name: str
    owner: str
    """The table owner: can disable the append-only triggers, i.e. the tamperer."""
    app: str
    """The application role: SELECT and INSERT on audit_log only."""


@pytest.fixture
async def audit_db(stack: Stack) -> AsyncIterator[AuditDb]:
    name = await stack.create_database()
    yield AuditDb(name, stack.url("casebridge_owner", name), stack.url("casebridge_app", name))
    conn = await asyncpg.connect(asyncpg_dsn(stack.url("postgres", "postgres")))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
