"""The pipeline's tables: intake's first sightings and the append-only audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Monthly partitions cover this window; a DEFAULT partition catches anything outside it, and
# `casebridge audit partitions` (or the next migration) adds months ahead of time.
FIRST_MONTH = (2026, 1)
MONTHS = 36


def _months() -> list[tuple[str, str, str]]:
    year, month = FIRST_MONTH
    out = []
    for _ in range(MONTHS):
        ny, nm = (year + 1, 1) if month == 12 else (year, month + 1)
        out.append(
            (
                f"audit_log_{year:04d}_{month:02d}",
                f"{year:04d}-{month:02d}-01",
                f"{ny:04d}-{nm:02d}-01",
            )
        )
        year, month = ny, nm
    return out


AUDIT_EMITTED = """
    CREATE TABLE audit_emitted (
        kafka_topic  text NOT NULL,
        event_source text NOT NULL,
        event_id     text NOT NULL,
        PRIMARY KEY (kafka_topic, event_source, event_id)
    )"""
"""Identities of records CaseBridge itself published. After a crash a service may publish a
record again (at-least-once), always under the same deterministic id; the audit log keeps
the first copy only. Inbound records are deduplicated by position instead: an agency sending
an event twice is a fact the log must show."""


def upgrade() -> None:
    op.execute("""
    CREATE TABLE intake_seen_event (
        source          text        NOT NULL,
        event_id        text        NOT NULL,
        kafka_topic     text        NOT NULL,
        kafka_partition integer     NOT NULL,
        kafka_offset    bigint      NOT NULL,
        first_seen_at   timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (source, event_id)
    )""")
    op.execute("""
    CREATE TABLE audit_log (
        seq             bigint      NOT NULL,
        recorded_at     timestamptz NOT NULL,
        event_id        text        NOT NULL,
        event_source    text        NOT NULL,
        event_type      text        NOT NULL,
        subject         text,
        agency          text,
        outcome         text        NOT NULL,
        reason_code     text,
        kafka_topic     text        NOT NULL,
        kafka_partition integer     NOT NULL,
        kafka_offset    bigint      NOT NULL,
        attributes      jsonb       NOT NULL,
        payload         jsonb,
        raw_value       bytea,
        payload_digest  bytea       NOT NULL,
        leaf_hash       bytea       NOT NULL,
        PRIMARY KEY (seq, recorded_at)
    ) PARTITION BY RANGE (recorded_at)""")
    for name, start, end in _months():
        op.execute(
            f"CREATE TABLE {name} PARTITION OF audit_log FOR VALUES FROM ('{start}') TO ('{end}')"
        )
    op.execute("CREATE TABLE audit_log_default PARTITION OF audit_log DEFAULT")
    op.execute("CREATE INDEX audit_log_subject_seq ON audit_log (subject, seq)")
    op.execute("CREATE INDEX audit_log_agency_seq ON audit_log (agency, seq)")
    op.execute("CREATE INDEX audit_log_type_seq ON audit_log (event_type, seq)")
    op.execute("CREATE INDEX audit_log_event ON audit_log (event_id)")
    op.execute("""
    CREATE FUNCTION audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END $$""")
    op.execute("""
    CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only()""")
    op.execute("""
    CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_append_only()""")
    op.execute("""
    CREATE TABLE audit_head (
        id       smallint PRIMARY KEY CHECK (id = 1),
        next_seq bigint   NOT NULL
    )""")
    op.execute("INSERT INTO audit_head (id, next_seq) VALUES (1, 0)")
    op.execute("""
    CREATE TABLE audit_consumer_offset (
        consumer        text    NOT NULL,
        kafka_topic     text    NOT NULL,
        kafka_partition integer NOT NULL,
        next_offset     bigint  NOT NULL,
        PRIMARY KEY (consumer, kafka_topic, kafka_partition)
    )""")
    op.execute(AUDIT_EMITTED)
    # Each service role's rights on these tables are granted by 0011_service_roles.
    op.execute("REVOKE ALL ON audit_log FROM PUBLIC")


def downgrade() -> None:
    tables = ("audit_emitted", "audit_consumer_offset", "audit_head", "audit_log")
    for table in (*tables, "intake_seen_event"):
        op.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
    op.execute("DROP FUNCTION IF EXISTS audit_log_is_append_only()")
