"""The migrated database and the SQLModel models (services/runtime/tables.py) agree: every
table, column, type and nullability, so neither can drift from the other unnoticed."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from services.runtime.tables import METADATA
from tests.support.stack import Stack

pytestmark = [pytest.mark.postgres]


def _kind(diff: Any) -> str:
    # Column-level changes come as lists of tuples; table-level ones as tuples.
    return str(diff[0][0] if isinstance(diff, list) else diff[0])


def _only_modelled(obj: Any, name: str | None, type_: str, reflected: bool, _: Any) -> bool:
    """Partitions, alembic_version and indexes are the migrations' business alone."""
    if type_ == "table":
        return name in METADATA.tables
    return type_ == "column"


async def test_every_table_and_column_matches_its_model(stack: Stack) -> None:
    database = await stack.create_database()
    engine = create_async_engine(stack.url("casebridge_owner", database))
    try:
        async with engine.connect() as conn:
            diffs = await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(
                        sync,
                        opts={"compare_type": True, "include_object": _only_modelled},
                    ),
                    METADATA,
                )
            )
    finally:
        await engine.dispose()
    kinds = [_kind(d) for d in diffs]
    assert len(METADATA.tables) == 13
    assert diffs == [], f"migrations and models disagree: {kinds}: {diffs}"
