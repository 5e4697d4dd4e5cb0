"""The audit log takes any bytes, refuses a seq used twice, and drops only exact copies.

* `audit_log.original_bytes`: the record's key and audited headers exactly as received (JSON
  with base64 values, services/audit/records.py `encode_original`), kept when the text columns
  and `attributes` could not hold them exactly. PostgreSQL text and jsonb refuse NUL and bytes
  that are not UTF-8, so the writer stores escaped text there, and a record carrying such
  bytes no longer fails its whole batch forever. NULL (every ordinary record) means the text
  is exact.
* `audit_emitted` now holds the digest of each whole record (key, value, every header but
  `ce_time`) logged on a topic only CaseBridge's services may write, instead of its (topic,
  ce_source, ce_id). A later record is dropped as a re-published copy only if all of that
  matches, so a record written first under a guessed id can no longer hide the real one.
  The old claims are dropped, not converted (their bytes were never kept): a re-publication
  of a record logged before this revision is logged once more, which hides nothing.
* `audit_seq_range`: the seq ranges every INSERT or COPY into `audit_log` used, claimed by a
  statement-level trigger from the statement's transition table; an exclusion constraint
  admits no overlap, so the server refuses a seq used twice, by any role. A unique index on
  `seq` alone is not possible on a table partitioned by `recorded_at` (a unique index must
  hold the partition key), and one row per batch costs the writer far less than one per
  record. The trigger is on the partitioned table, so it sees inserts through `audit_log`,
  the only way any service may insert (0011 grants nothing on partitions). Like the
  append-only triggers it is a user trigger: the owner can disable it, as the tamper tests
  do, and the verifier, which trusts no schema, still names a repeated seq.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AUDIT = "casebridge_audit"


def upgrade() -> None:
    op.execute("ALTER TABLE audit_log ADD COLUMN original_bytes bytea")

    op.execute("DROP TABLE audit_emitted")
    op.execute("""
    CREATE TABLE audit_emitted (
        kafka_topic   text  NOT NULL,
        record_digest bytea NOT NULL,
        PRIMARY KEY (kafka_topic, record_digest)
    )""")
    op.execute("REVOKE ALL ON audit_emitted FROM PUBLIC")
    # INSERT ... ON CONFLICT DO NOTHING RETURNING: RETURNING needs SELECT.
    op.execute(f"GRANT SELECT, INSERT ON audit_emitted TO {AUDIT}")

    op.execute("""
    CREATE TABLE audit_seq_range (
        seqs int8range NOT NULL,
        CONSTRAINT audit_seq_used_once EXCLUDE USING gist (seqs WITH &&)
    )""")
    op.execute("REVOKE ALL ON audit_seq_range FROM PUBLIC")
    # Gaps and islands: consecutive seqs share `seq - row_number()`, so each island is one
    # range. A repeated seq lands in two islands whose ranges both hold it, and overlap.
    islands = """
        SELECT int8range(min(seq), max(seq), '[]')
        FROM (SELECT seq, seq - row_number() OVER (ORDER BY seq) AS island FROM {}) AS s
        GROUP BY island"""
    op.execute("""
    DO $$ BEGIN
        IF EXISTS (SELECT seq FROM audit_log GROUP BY seq HAVING count(*) > 1) THEN
            RAISE EXCEPTION 'audit_log already holds a seq more than once'
                USING HINT = 'casebridge audit verify names the first one';
        END IF;
    END $$""")
    op.execute(f"INSERT INTO audit_seq_range (seqs) {islands.format('audit_log')}")
    # SECURITY DEFINER: the writer role needs no right on the guard table (and has none, so
    # it cannot remove a claim to reuse a seq).
    op.execute(f"""
    CREATE FUNCTION audit_log_claim_seqs() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    BEGIN
        INSERT INTO audit_seq_range (seqs) {islands.format("added")};
        RETURN NULL;
    END $$""")
    op.execute("REVOKE ALL ON FUNCTION audit_log_claim_seqs() FROM PUBLIC")
    op.execute("""
    CREATE TRIGGER audit_log_seq_used_once AFTER INSERT ON audit_log
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_claim_seqs()""")
    op.execute("""
    CREATE FUNCTION audit_seq_range_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'audit_seq_range is append-only: % refused', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END $$""")
    op.execute("""
    CREATE TRIGGER audit_seq_range_append_only BEFORE UPDATE OR DELETE ON audit_seq_range
    FOR EACH ROW EXECUTE FUNCTION audit_seq_range_is_append_only()""")
    op.execute("""
    CREATE TRIGGER audit_seq_range_no_truncate BEFORE TRUNCATE ON audit_seq_range
    FOR EACH STATEMENT EXECUTE FUNCTION audit_seq_range_is_append_only()""")


def downgrade() -> None:
    op.execute("DROP TRIGGER audit_log_seq_used_once ON audit_log")
    op.execute("DROP FUNCTION audit_log_claim_seqs()")
    op.execute("DROP TABLE audit_seq_range")
    op.execute("DROP FUNCTION audit_seq_range_is_append_only()")
    op.execute("DROP TABLE audit_emitted")
    op.execute("""
    CREATE TABLE audit_emitted (
        kafka_topic  text NOT NULL,
        event_source text NOT NULL,
        event_id     text NOT NULL,
        PRIMARY KEY (kafka_topic, event_source, event_id)
    )""")
    op.execute("REVOKE ALL ON audit_emitted FROM PUBLIC")
    op.execute(f"GRANT SELECT, INSERT ON audit_emitted TO {AUDIT}")
    op.execute("ALTER TABLE audit_log DROP COLUMN original_bytes")
