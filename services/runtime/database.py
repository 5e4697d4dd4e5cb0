"""PostgreSQL access: one asyncpg pool per process, opened when the app starts.

The tables are declared once as SQLModel models (`services.runtime.tables`) and created by the
migrations; the services read and write them through asyncpg, which the hot paths need (COPY,
arrays), so there is one way to talk to the database at run time.
"""

from __future__ import annotations

import asyncpg


def asyncpg_dsn(url: str) -> str:
    """`postgresql+asyncpg://...` (SQLAlchemy's form) as the plain DSN asyncpg wants."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


_JSONB_VERSION = b"\x01"


def _encode_jsonb(text: str) -> bytes:
    return _JSONB_VERSION + text.encode()


def _decode_jsonb(data: bytes) -> str:
    return data[1:].decode()


async def _json_as_text(conn: asyncpg.Connection) -> None:
    """jsonb as JSON text both ways: payloads pass through without a parse in Python.

    The codec is binary (jsonb's wire format is a version byte and the text), so that COPY,
    which asyncpg always runs in binary, can carry jsonb too.
    """
    await conn.set_type_codec(
        "jsonb",
        encoder=_encode_jsonb,
        decoder=_decode_jsonb,
        schema="pg_catalog",
        format="binary",
    )


class Database:
    """A lazily opened pool, so services can be wired before the event loop runs."""

    def __init__(self, url: str, *, max_size: int = 4) -> None:
        self.url = url
        self._max_size = max_size
        self._pool: asyncpg.Pool | None = None

    async def start(self) -> None:
        if self._pool is None:
            self._pool = await asyncpg.create_pool(
                asyncpg_dsn(self.url),
                min_size=1,
                max_size=self._max_size,
                init=_json_as_text,
                command_timeout=60,
            )

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("database not started")
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
