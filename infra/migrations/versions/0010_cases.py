"""The cases service: case event log, current state, deadlines, processed messages, outbox.

Revision ID: 0010
Revises: 0002
Create Date: 2026-11-24
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("""
    CREATE TABLE case_event (
        case_id     text        NOT NULL,
        version     integer     NOT NULL,
        event_type  text        NOT NULL,
        event       jsonb       NOT NULL,
        recorded_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (case_id, version)
    )""")
    op.execute("""
    CREATE TABLE case_state (
        case_id    text        PRIMARY KEY,
        kind       text        NOT NULL,
        state      text        NOT NULL,
        version    integer     NOT NULL,
        owner      text        NOT NULL,
        person_key text,
        snapshot   jsonb       NOT NULL,
        updated_at timestamptz NOT NULL
    )""")
    op.execute(
        "CREATE INDEX case_state_person_key ON case_state (person_key) WHERE person_key IS NOT NULL"
    )
    op.execute("""
    CREATE TABLE case_message_seen (
        source   text NOT NULL,
        event_id text NOT NULL,
        PRIMARY KEY (source, event_id)
    )""")
    op.execute("""
    CREATE TABLE case_deadline (
        deadline_id text        PRIMARY KEY,
        case_id     text        NOT NULL,
        due_at      timestamptz NOT NULL,
        deadline    jsonb       NOT NULL,
        raised_at   timestamptz
    )""")
    op.execute(
        "CREATE INDEX case_deadline_pending ON case_deadline (due_at) WHERE raised_at IS NULL"
    )
    op.execute("""
    CREATE TABLE case_outbox (
        id           bigserial   PRIMARY KEY,
        topic        text        NOT NULL,
        key          bytea,
        headers      jsonb       NOT NULL,
        value        bytea       NOT NULL,
        created_at   timestamptz NOT NULL DEFAULT now(),
        published_at timestamptz
    )""")
    op.execute("CREATE INDEX case_outbox_pending ON case_outbox (id) WHERE published_at IS NULL")
    # The cases service's rights on these tables are granted by 0011_service_roles.


def downgrade() -> None:
    for table in ("case_outbox", "case_deadline", "case_message_seen", "case_state", "case_event"):
        op.execute(f"DROP TABLE IF EXISTS {table}")
