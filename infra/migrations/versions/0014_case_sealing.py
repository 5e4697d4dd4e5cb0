"""Case personal fields sealed per person; outbox rows deleted once published.

The cases service seals the person and the person key inside opening events and snapshots,
and the whole value of outbox records about a person, with the case's data key
(services/cases/store.py); `data_key_id` names the key a row was sealed with (NULL: nothing
sealed). Destroying that key (an erasure) leaves every such value unreadable while the rows, and
the non-personal facts a case is rebuilt from, stay.

An outbox row is deleted once the broker has it, so nothing published lingers in the database:
the cases role gets DELETE on `case_outbox` and loses UPDATE, and `published_at` goes.

Sealing needs the key-encryption key, which migrations never hold: a database that already has
referral or return cases (written in the clear before this revision) is refused rather than
left holding plaintext personal data.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CASES = "casebridge_cases"
SEALED_TABLES = ("case_event", "case_state", "case_outbox")


def upgrade() -> None:
    op.execute("""
    DO $$ BEGIN
        IF EXISTS (SELECT FROM case_state WHERE kind <> 'sar') THEN
            RAISE EXCEPTION 'case_state holds referral or return cases whose personal data is '
                            'stored in the clear'
                USING HINT = 'Sealing them needs the key-encryption key, which migrations do '
                             'not hold. A development or test database: start from an empty '
                             'one (infra/README.md: reset a stack).';
        END IF;
    END $$""")
    for table in SEALED_TABLES:
        op.execute(
            f"ALTER TABLE {table} ADD COLUMN data_key_id bigint REFERENCES data_key (key_id)"
        )
    op.execute("DELETE FROM case_outbox WHERE published_at IS NOT NULL")
    op.execute("ALTER TABLE case_outbox DROP COLUMN published_at")  # and its partial index
    op.execute(f"REVOKE UPDATE ON case_outbox FROM {CASES}")
    op.execute(f"GRANT DELETE ON case_outbox TO {CASES}")


def downgrade() -> None:
    # Sealed values stay sealed: only the service, with the key-encryption key, can open them.
    op.execute(f"REVOKE DELETE ON case_outbox FROM {CASES}")
    op.execute(f"GRANT UPDATE ON case_outbox TO {CASES}")
    op.execute("ALTER TABLE case_outbox ADD COLUMN published_at timestamptz")
    op.execute("CREATE INDEX case_outbox_pending ON case_outbox (id) WHERE published_at IS NULL")
    for table in SEALED_TABLES:
        op.execute(f"ALTER TABLE {table} DROP COLUMN data_key_id")
