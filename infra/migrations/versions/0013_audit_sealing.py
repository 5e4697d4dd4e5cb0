"""Audit values sealed per person: `audit_log` keeps no plaintext payload.

The log held every record's value twice in the clear (`payload` jsonb, `raw_value` bytea), so
erasing a person's data meant rewriting an append-only, hash-chained log. Now each value is
sealed (AES-256-GCM, services/privacy/sealing.py) under the data key of the person the record is
about, bound to its row, and stored in `sealed_value` next to the key's id, `data_key_id`; both
are NULL for a record that had no value. Destroying the key (services/privacy/vault.py) erases
the value everywhere at once, while the Merkle leaf, which covers only `payload_digest` (SHA-256
of the value), keeps verifying.

The plaintext columns are dropped, not migrated: no deployment holds audit data from before
this revision (the log's only copies are development and test databases). `DROP COLUMN` only
hides a column's bytes until its rows are rewritten, so a deployment that did hold data would
have to seal it first and then rewrite every partition (`VACUUM FULL`); none has to.

`audit_log` is partitioned by month: ALTER on the parent reaches every partition, including
the default one, and the append-only triggers of 0001 are not fired by ALTER. Grants are
unchanged: the writer may INSERT (the new columns included), the signer and the auditor SELECT.
The CHECK keeps a value and its key together; no foreign key to `data_key`, because the log's
writer COPYs thousands of rows a second and a foreign key costs a lookup per row, and a
verifier must not trust the schema anyway (it reports a key id with no key as a failure).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("""
    ALTER TABLE audit_log
        DROP COLUMN payload,
        DROP COLUMN raw_value,
        ADD COLUMN sealed_value bytea,
        ADD COLUMN data_key_id  bigint,
        ADD CONSTRAINT audit_log_sealed_with_a_key
            CHECK ((sealed_value IS NULL) = (data_key_id IS NULL))""")


def downgrade() -> None:
    # The sealed values cannot be turned back into plaintext here (the KEK is not in the
    # database): the plaintext columns come back empty.
    op.execute("""
    ALTER TABLE audit_log
        DROP CONSTRAINT audit_log_sealed_with_a_key,
        DROP COLUMN sealed_value,
        DROP COLUMN data_key_id,
        ADD COLUMN payload   jsonb,
        ADD COLUMN raw_value bytea""")
