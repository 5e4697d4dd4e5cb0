"""Caseworkers' and auditors' accounts for the console, and their sign-in sessions.

An account belongs to one agency (a caseworker acts for it; an auditor reads the audit log) and
holds an Argon2id password hash, never a password. A session is stored as the SHA-256 of its
bearer token, so a copy of this table signs nobody in; it expires after a short idle time and at
a fixed end whatever the use. Accounts are made and disabled by the owner role
(`casebridge console add-user`, `disable-user`); the console's own role
(`casebridge_console`) may read accounts, note a sign-in, and manage sessions, nothing else: it
cannot make itself an account or change a password hash. Case data is not here: the console reads
it as `casebridge_caseworkers`, under row-level security (0015).

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CONSOLE = "casebridge_console"


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE console_account (
            username      text PRIMARY KEY CHECK (username ~ '^[a-z0-9][a-z0-9._-]{1,62}$'),
            agency        text NOT NULL CHECK (agency <> ''),
            role          text NOT NULL CHECK (role IN ('caseworker', 'auditor')),
            display_name  text NOT NULL,
            password_hash text NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
            created_at    timestamptz NOT NULL DEFAULT now(),
            disabled_at   timestamptz,
            last_sign_in  timestamptz
        )"""
    )
    op.execute(
        """
        CREATE TABLE console_session (
            token_sha256 bytea PRIMARY KEY CHECK (length(token_sha256) = 32),
            username     text NOT NULL REFERENCES console_account (username) ON DELETE CASCADE,
            csrf_token   text NOT NULL,
            created_at   timestamptz NOT NULL,
            last_used_at timestamptz NOT NULL,
            expires_at   timestamptz NOT NULL
        )"""
    )
    op.execute("CREATE INDEX console_session_username ON console_session (username)")
    op.execute(f"GRANT SELECT ON console_account TO {CONSOLE}")
    op.execute(f"GRANT UPDATE (last_sign_in) ON console_account TO {CONSOLE}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON console_session TO {CONSOLE}")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS console_session")
    op.execute("DROP TABLE IF EXISTS console_account")
