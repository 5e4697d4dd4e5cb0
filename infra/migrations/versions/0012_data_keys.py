"""Per-person data keys (crypto-shredding): `data_key` holds each subject's key wrapped by the KEK.

The KEK itself never enters the database (services/privacy/keys.py). A row can only move from
live to erased: a trigger refuses any other UPDATE and every DELETE, so erasures stay on record
(when, why, at whose request) and a destroyed key cannot be put back.

Rights: the audit writer and the cases service create keys (INSERT ... ON CONFLICT DO NOTHING)
and read them; the cases service erases (it applies erasure requests); the auditor reads wrapped
keys to open payloads for auditors entitled to them.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GRANTS = (
    ("SELECT, INSERT", "casebridge_audit"),
    ("SELECT, INSERT, UPDATE", "casebridge_cases"),
    ("SELECT", "casebridge_auditor"),
)


def upgrade() -> None:
    op.execute("""
    CREATE TABLE data_key (
        key_id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        subject        text        NOT NULL,
        wrapped_key    bytea,
        kek_id         text        NOT NULL,
        created_at     timestamptz NOT NULL DEFAULT now(),
        erased_at      timestamptz,
        erasure_reason text,
        erased_by      text,
        CONSTRAINT data_key_erased_means_destroyed
            CHECK ((wrapped_key IS NULL) = (erased_at IS NOT NULL))
    )""")
    op.execute("CREATE UNIQUE INDEX data_key_live ON data_key (subject) WHERE erased_at IS NULL")
    op.execute("""
    CREATE FUNCTION data_key_only_erase() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' THEN
            RAISE EXCEPTION 'data_key rows are kept: erase a key, do not delete it';
        END IF;
        IF OLD.erased_at IS NOT NULL OR NEW.erased_at IS NULL
           OR NEW.key_id <> OLD.key_id OR NEW.subject <> OLD.subject
           OR NEW.kek_id <> OLD.kek_id OR NEW.created_at <> OLD.created_at THEN
            RAISE EXCEPTION 'data_key rows may only go from live to erased';
        END IF;
        RETURN NEW;
    END $$""")
    op.execute("""
    CREATE TRIGGER data_key_only_erase BEFORE UPDATE OR DELETE ON data_key
        FOR EACH ROW EXECUTE FUNCTION data_key_only_erase()""")
    for privileges, role in GRANTS:
        op.execute(f"GRANT {privileges} ON data_key TO {role}")


def downgrade() -> None:
    op.execute("DROP TABLE data_key")
    op.execute("DROP FUNCTION data_key_only_erase()")
