"""The person vault on the real database: one live key per subject, erasure destroys it."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import asyncpg
import pytest

from services.privacy.keys import KEY_BYTES, KeyUnavailableError, LocalKek
from services.privacy.vault import PersonVault, case_subject
from services.runtime.credentials import OWNER_ROLE
from services.runtime.database import Database, asyncpg_dsn
from tests.support.stack import Stack

pytestmark = [pytest.mark.postgres]

KEK = LocalKek(os.urandom(KEY_BYTES))


@pytest.fixture(scope="module")
async def database(stack: Stack) -> str:
    return await stack.create_database()


@pytest.fixture
async def cases_db(stack: Stack, database: str) -> AsyncIterator[Database]:
    db = Database(stack.url("casebridge_cases", database), max_size=4)
    await db.start()
    yield db
    await db.close()


async def test_concurrent_writers_agree_on_one_key_per_subject(cases_db: Database) -> None:
    subjects = [case_subject(f"vault-{i}") for i in range(20)]

    async def fetch(vault: PersonVault) -> dict[str, bytes]:
        async with cases_db.pool.acquire() as conn:
            return {s: k.key for s, k in (await vault.keys_for(conn, subjects)).items()}

    first, second = await asyncio.gather(fetch(PersonVault(KEK)), fetch(PersonVault(KEK)))
    assert first == second
    assert set(first) == set(subjects)
    assert len(set(first.values())) == len(subjects)
    async with cases_db.pool.acquire() as conn:
        stored = await conn.fetch(
            "SELECT subject, wrapped_key FROM data_key WHERE subject = ANY($1::text[])", subjects
        )
    assert len(stored) == len(subjects)
    assert all(first[r["subject"]] not in r["wrapped_key"] for r in stored)  # wrapped, not plain


async def test_erasure_destroys_the_key_and_a_new_write_gets_a_new_one(
    stack: Stack, database: str, cases_db: Database
) -> None:
    subject = case_subject("vault-erase")
    writer, reader = PersonVault(KEK), PersonVault(KEK)
    async with cases_db.pool.acquire() as conn:
        key = (await writer.keys_for(conn, [subject]))[subject]
        assert await reader.keys_by_id(conn, [key.key_id]) == {key.key_id: key.key}
        erasure = await writer.erase(conn, subject, reason="dsr-0001", requested_by="dpo-test")
        assert erasure is not None
        assert erasure.key_id == key.key_id
        assert await writer.erase(conn, subject, reason="again", requested_by="dpo-test") is None
        assert await PersonVault(KEK).keys_by_id(conn, [key.key_id]) == {key.key_id: None}
        fresh = (await writer.keys_for(conn, [subject]))[subject]
        assert fresh.key_id != key.key_id
        assert fresh.key != key.key
        row = await conn.fetchrow(
            "SELECT wrapped_key, erasure_reason, erased_by FROM data_key WHERE key_id = $1",
            key.key_id,
        )
    assert tuple(row) == (None, "dsr-0001", "dpo-test")
    # Not even the owner can bring a destroyed key back or delete the record of its erasure.
    owner = await asyncpg.connect(asyncpg_dsn(stack.url(OWNER_ROLE, database)))
    try:
        with pytest.raises(asyncpg.RaiseError, match="only go from live to erased"):
            await owner.execute(
                "UPDATE data_key SET wrapped_key = '\\x00', erased_at = NULL WHERE key_id = $1",
                key.key_id,
            )
        with pytest.raises(asyncpg.RaiseError, match="do not delete"):
            await owner.execute("DELETE FROM data_key WHERE key_id = $1", key.key_id)
    finally:
        await owner.close()


async def test_a_wrapped_key_moved_to_another_subject_does_not_open(cases_db: Database) -> None:
    a, b = case_subject("vault-a"), case_subject("vault-b")
    async with cases_db.pool.acquire() as conn:
        keys = await PersonVault(KEK).keys_for(conn, [a, b])
        wrapped_a = await conn.fetchval(
            "SELECT wrapped_key FROM data_key WHERE key_id = $1", keys[a].key_id
        )
        with pytest.raises(KeyUnavailableError, match="does not open"):
            KEK.unwrap(wrapped_a, subject=b)
