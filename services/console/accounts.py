"""Console accounts and sign-in sessions: who a request comes from, and for which agency.

Passwords are hashed with Argon2id (argon2-cffi, its RFC 9106 low-memory profile); a session is
a random bearer token shown to its holder once and stored only as its SHA-256, with an idle
timeout and a fixed end (`ConsoleSettings`). The web pages carry the token in an HttpOnly,
SameSite=Strict cookie, the JSON API in `Authorization: Bearer`; one session store serves both.

`Authenticator` is the seam for an external identity provider later: whatever signs a person
in must yield a `User` (account, agency, role), and nothing downstream asks how.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import hashlib
import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from argon2.profiles import RFC_9106_LOW_MEMORY

from services.runtime.database import Database

_HASHER = PasswordHasher.from_parameters(RFC_9106_LOW_MEMORY)


@functools.cache
def _unknown_user_hash() -> str:
    """Verified against when the account does not exist, so a wrong name costs what a wrong
    password costs and the timing does not tell which accounts exist."""
    return _HASHER.hash(secrets.token_urlsafe(16))


class Role(StrEnum):
    caseworker = "caseworker"
    """Reads and acts on the cases of the account's agency."""
    auditor = "auditor"
    """Reads the audit log (records, proofs, signed heads); acts on no case."""


@dataclass(frozen=True, slots=True)
class User:
    username: str
    agency: str
    role: Role
    display_name: str


@dataclass(frozen=True, slots=True)
class Session:
    token: str
    """The bearer token: given to the user once, never stored."""
    csrf_token: str
    """Sent back with every form the pages post (the cookie alone does not authorise one)."""
    user: User
    expires_at: dt.datetime


@dataclass(frozen=True, slots=True)
class ActiveSession:
    user: User
    csrf_token: str


class Authenticator(Protocol):
    async def session(self, token: str) -> ActiveSession | None: ...


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def new_password() -> str:
    """A password for a new account: 20 random URL-safe characters (about 120 bits)."""
    return secrets.token_urlsafe(15)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


_SIGN_IN = """
SELECT username, agency, role, display_name, password_hash FROM console_account
WHERE username = $1 AND disabled_at IS NULL"""

_ACTIVE = """
UPDATE console_session AS s
SET last_used_at = $2, expires_at = least(s.created_at + $3 * interval '1 second',
                                          $2 + $4 * interval '1 second')
FROM console_account AS a
WHERE s.token_sha256 = $1 AND s.expires_at > $2 AND a.username = s.username
  AND a.disabled_at IS NULL
RETURNING a.username, a.agency, a.role, a.display_name, s.csrf_token"""


class Accounts:
    """Sign-in, sessions and sign-out, over a pool connected as `casebridge_console`."""

    def __init__(self, db: Database, *, idle_s: float, max_s: float) -> None:
        self._db = db
        self._idle_s = idle_s
        self._max_s = max_s

    async def sign_in(self, username: str, password: str) -> Session | None:
        """A new session, or None for an unknown, disabled or wrong-password account (the
        caller is not told which)."""
        async with self._db.pool.acquire() as conn:
            row = await conn.fetchrow(_SIGN_IN, username)
        stored = row["password_hash"] if row is not None else _unknown_user_hash()
        # Argon2 is deliberately slow: off the event loop, so other requests go on.
        matched = await asyncio.to_thread(_verify, stored, password)
        if row is None or not matched:
            return None
        user = User(row["username"], row["agency"], Role(row["role"]), row["display_name"])
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        now = dt.datetime.now(dt.UTC)
        expires = now + dt.timedelta(seconds=min(self._idle_s, self._max_s))
        async with self._db.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO console_session (token_sha256, username, csrf_token, created_at,"
                " last_used_at, expires_at) VALUES ($1, $2, $3, $4, $4, $5)",
                _digest(token),
                user.username,
                csrf,
                now,
                expires,
            )
            await conn.execute(
                "UPDATE console_account SET last_sign_in = $2 WHERE username = $1",
                user.username,
                now,
            )
            # Expired sessions of this account go as it signs in again.
            await conn.execute(
                "DELETE FROM console_session WHERE username = $1 AND expires_at <= $2",
                user.username,
                now,
            )
        return Session(token, csrf, user, expires)

    async def session(self, token: str) -> ActiveSession | None:
        """The session's user if it is still valid (its idle time restarts), else None."""
        if not token or len(token) > 256:
            return None
        async with self._db.pool.acquire() as conn:
            row = await conn.fetchrow(
                _ACTIVE, _digest(token), dt.datetime.now(dt.UTC), self._max_s, self._idle_s
            )
        if row is None:
            return None
        user = User(row[0], row[1], Role(row[2]), row[3])
        return ActiveSession(user, row[4])

    async def sign_out(self, token: str) -> None:
        async with self._db.pool.acquire() as conn:
            await conn.execute(
                "DELETE FROM console_session WHERE token_sha256 = $1", _digest(token)
            )


async def add_account(
    conn: asyncpg.Connection,
    *,
    username: str,
    agency: str,
    role: Role,
    display_name: str,
    password: str,
) -> None:
    """Create or reset an account (as the database owner: the console's role cannot)."""
    await conn.execute(
        "INSERT INTO console_account (username, agency, role, display_name, password_hash)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (username) DO UPDATE SET agency = $2,"
        " role = $3, display_name = $4, password_hash = $5, disabled_at = NULL",
        username,
        agency,
        role.value,
        display_name,
        hash_password(password),
    )
    await conn.execute("DELETE FROM console_session WHERE username = $1", username)


async def disable_account(conn: asyncpg.Connection, username: str) -> bool:
    """Disable an account and end its sessions at once; False if there is no such account."""
    status: str = await conn.execute(
        "UPDATE console_account SET disabled_at = now() WHERE username = $1", username
    )
    await conn.execute("DELETE FROM console_session WHERE username = $1", username)
    return status.endswith(" 1")
