"""Signed tree heads of the audit log, and the indexes the auditors' queries need.

`audit_tree_head` is a convenience copy for the API: the signer also writes every head to a
file and a Kafka topic outside PostgreSQL, which is what a verifier should trust (together
with the public key). It is append-only like `audit_log`: the signer's role can add heads
(0011_service_roles) but never rewrite one.

Auditor tokens are not kept here: they live in a configuration file (SHA-256 hashes only,
see services/audit/config.py), so no database role can read or mint auditor credentials.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("""
    CREATE TABLE audit_tree_head (
        tree_size    bigint      PRIMARY KEY CHECK (tree_size >= 0),
        root_hash    bytea       NOT NULL CHECK (octet_length(root_hash) = 32),
        timestamp_ms bigint      NOT NULL CHECK (timestamp_ms >= 0),
        signature    bytea       NOT NULL CHECK (octet_length(signature) = 64),
        key_id       text        NOT NULL,
        created_at   timestamptz NOT NULL DEFAULT now()
    )""")
    op.execute("""
    CREATE FUNCTION audit_tree_head_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'audit_tree_head is append-only: % refused', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END $$""")
    op.execute("""
    CREATE TRIGGER audit_tree_head_append_only BEFORE UPDATE OR DELETE ON audit_tree_head
    FOR EACH ROW EXECUTE FUNCTION audit_tree_head_is_append_only()""")
    op.execute("""
    CREATE TRIGGER audit_tree_head_no_truncate BEFORE TRUNCATE ON audit_tree_head
    FOR EACH STATEMENT EXECUTE FUNCTION audit_tree_head_is_append_only()""")
    op.execute("REVOKE ALL ON audit_tree_head FROM PUBLIC")
    # Time-range queries (partition pruning picks the months, this the rows within them) and
    # the auditors' own query records (outcome = 'query'), both read in seq order.
    op.execute("CREATE INDEX audit_log_recorded_at ON audit_log (recorded_at)")
    op.execute("CREATE INDEX audit_log_outcome_seq ON audit_log (outcome, seq)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS audit_log_outcome_seq")
    op.execute("DROP INDEX IF EXISTS audit_log_recorded_at")
    op.execute("DROP TABLE IF EXISTS audit_tree_head")
    op.execute("DROP FUNCTION IF EXISTS audit_tree_head_is_append_only()")
