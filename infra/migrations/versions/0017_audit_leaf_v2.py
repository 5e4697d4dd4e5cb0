"""Each audit record says which leaf format its Merkle leaf is in: `audit_log.leaf_version`.

Leaf format v1 (docs/audit-leaf-format.md) left out `agency`, `attributes` and (added in
0016) `original_bytes`, although auditors filter on them and are shown them: a database owner
could change them without any signed root noticing. From this revision on the writer logs
v2 leaves, which cover them too. Records logged before keep their v1 leaves, which the signed
heads already commit to, so each row must say which format to recompute its leaf in.

Every existing row is v1 (the column is added with that default, which PostgreSQL records
without rewriting a partition); the default then becomes 2, the format `services.audit.store`
writes (it also names the version in each COPY, so a writer of another format says so). The
column is evidence like the others: changing it changes the recomputed leaf (the version tag
is its first line), so the verifier needs no trust in it. There is no CHECK constraint: on a
partitioned table it would scan the whole log, and the verifier rejects unknown versions.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE audit_log ADD COLUMN leaf_version smallint NOT NULL DEFAULT 1")
    op.execute("ALTER TABLE audit_log ALTER COLUMN leaf_version SET DEFAULT 2")


def downgrade() -> None:
    # v2 leaves cannot be verified without the column: a downgrade loses the ability to check
    # records logged since this revision, which is why it refuses while there are any.
    op.execute("""
    DO $$ BEGIN
        IF EXISTS (SELECT 1 FROM audit_log WHERE leaf_version <> 1) THEN
            RAISE EXCEPTION 'audit_log holds v2 leaves: dropping leaf_version would make them'
                ' unverifiable';
        END IF;
    END $$""")
    op.execute("ALTER TABLE audit_log DROP COLUMN leaf_version")
