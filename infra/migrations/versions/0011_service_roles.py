"""A database role per service, each granted only what its own SQL does; `casebridge_app` retired.

The roles are created, with their passwords, by `infra/postgres/postgres.sh bootstrap` (the
owner that runs migrations may not create roles); this migration only grants. Every right below
is one the service's code uses, nothing more:

* `casebridge_intake` (services/intake/seen_events.py): its sightings table, nothing else.
* `casebridge_audit`, the audit log's writer (services/audit/store.py): INSERT on `audit_log`
  (COPY) and no SELECT, so a compromised writer can add records but neither read the log back
  (payloads of every agency) nor change it; the sequence counter `audit_head` (read under
  FOR UPDATE, then advanced), its Kafka offsets, and the emitted-record identities it claims
  with INSERT ... ON CONFLICT DO NOTHING RETURNING.
* `casebridge_signer` (services/audit/signer.py): reads the log's leaves, reads and adds
  signed tree heads; the only role that may INSERT into `audit_tree_head`.
* `casebridge_auditor` (the auditors' API, `casebridge audit verify`, `casebridge cases rebuild`
  without --write, the demo's reports): SELECT on the audit tables and on the case log and
  snapshots it compares; it can write nothing.
* `casebridge_cases` (services/cases/store.py): the case tables as the coordinator uses them.
  `case_event` is INSERT only (the service never reads its log back; rebuilds run as the
  auditor, or as the owner with --write) and `case_state` is never deleted.

`audit_log` is partitioned by month: privileges on partitioned tables are checked on the table
named in the statement only, so inserts and reads through `audit_log` reach every partition,
including ones added later (`CREATE TABLE ... PARTITION OF audit_log`), without further grants.
The partitions themselves get no grant: no service can address one directly.

UPDATE, DELETE and TRUNCATE are granted to no service on the append-only tables (and the
triggers of 0001/0002 still refuse them to the owner's ordinary sessions).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INTAKE = "casebridge_intake"
CASES = "casebridge_cases"
AUDIT = "casebridge_audit"
SIGNER = "casebridge_signer"
AUDITOR = "casebridge_auditor"
ROLES = (INTAKE, CASES, AUDIT, SIGNER, AUDITOR)
RETIRED = "casebridge_app"

TABLES = (
    "intake_seen_event",
    "audit_log",
    "audit_head",
    "audit_consumer_offset",
    "audit_emitted",
    "audit_tree_head",
    "case_event",
    "case_state",
    "case_message_seen",
    "case_deadline",
    "case_outbox",
)

GRANTS: tuple[tuple[str, str, str], ...] = (
    # (privileges, table, role)
    ("SELECT, INSERT", "intake_seen_event", INTAKE),
    ("INSERT", "audit_log", AUDIT),
    ("SELECT, UPDATE", "audit_head", AUDIT),
    ("SELECT, INSERT, UPDATE", "audit_consumer_offset", AUDIT),
    ("SELECT, INSERT", "audit_emitted", AUDIT),
    ("SELECT", "audit_log", SIGNER),
    ("SELECT, INSERT", "audit_tree_head", SIGNER),
    ("SELECT", "audit_log", AUDITOR),
    ("SELECT", "audit_tree_head", AUDITOR),
    ("SELECT", "case_event", AUDITOR),
    ("SELECT", "case_state", AUDITOR),
    ("INSERT", "case_event", CASES),
    ("SELECT, INSERT, UPDATE", "case_state", CASES),
    ("SELECT, INSERT", "case_message_seen", CASES),
    ("SELECT, INSERT, UPDATE, DELETE", "case_deadline", CASES),
    ("SELECT, INSERT, UPDATE", "case_outbox", CASES),
)
SEQUENCE_GRANTS = (("USAGE", "case_outbox_id_seq", CASES),)

# What 0001, 0002 and 0010 granted the retired role: given back on downgrade if it still exists.
RETIRED_GRANTS = (
    ("SELECT, INSERT", "audit_log"),
    ("SELECT, INSERT", "intake_seen_event"),
    ("SELECT, UPDATE", "audit_head"),
    ("SELECT, INSERT", "audit_emitted"),
    ("SELECT, INSERT, UPDATE", "audit_consumer_offset"),
    ("SELECT, INSERT", "audit_tree_head"),
    ("SELECT, INSERT", "case_event"),
    ("SELECT, INSERT", "case_message_seen"),
    ("SELECT, INSERT, UPDATE, DELETE", "case_state"),
    ("SELECT, INSERT, UPDATE, DELETE", "case_deadline"),
    ("SELECT, INSERT, UPDATE", "case_outbox"),
)


def _if_role_exists(role: str, body: str) -> str:
    return f"""
    DO $$ BEGIN
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
            {body}
        END IF;
    END $$"""


def upgrade() -> None:
    # Roles are made by set-up, not here: say so plainly rather than fail on the first GRANT.
    expected = ", ".join(f"'{role}'" for role in ROLES)
    op.execute(f"""
    DO $$
    DECLARE r text;
    BEGIN
        FOREACH r IN ARRAY ARRAY[{expected}] LOOP
            IF to_regrole(r) IS NULL THEN
                RAISE EXCEPTION 'database role % missing', r
                    USING HINT = 'infra/postgres/postgres.sh bootstrap creates the roles';
            END IF;
        END LOOP;
    END $$""")
    roles = ", ".join(ROLES)
    tables = ", ".join(TABLES)
    # A clean slate: no one but the owner holds anything on the tables, then each role gets its
    # list. The partitions of audit_log keep no grant at all.
    op.execute(f"REVOKE ALL ON {tables} FROM PUBLIC, {roles}")
    op.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM PUBLIC, {roles}")
    op.execute(
        _if_role_exists(
            RETIRED,
            f"""REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {RETIRED};
            REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {RETIRED};
            REVOKE ALL ON SCHEMA public FROM {RETIRED};
            EXECUTE format('REVOKE ALL ON DATABASE %I FROM {RETIRED}', current_database());""",
        )
    )
    # Connecting: databases made by postgres.sh bootstrap already allow it; databases made
    # otherwise (tests, benchmarks, docker-compose) get the same here.
    op.execute(f"""
    DO $$ BEGIN
        EXECUTE format('GRANT CONNECT ON DATABASE %I TO {roles}', current_database());
    END $$""")
    op.execute(f"GRANT USAGE ON SCHEMA public TO {roles}")
    for privileges, table, role in GRANTS:
        op.execute(f"GRANT {privileges} ON {table} TO {role}")
    for privileges, sequence, role in SEQUENCE_GRANTS:
        op.execute(f"GRANT {privileges} ON SEQUENCE {sequence} TO {role}")


def downgrade() -> None:
    roles = ", ".join(ROLES)
    op.execute(f"REVOKE ALL ON {', '.join(TABLES)} FROM {roles}")
    op.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {roles}")
    restore = "\n            ".join(
        f"GRANT {privileges} ON {table} TO {RETIRED};" for privileges, table in RETIRED_GRANTS
    )
    op.execute(
        _if_role_exists(
            RETIRED,
            f"""{restore}
            GRANT USAGE ON SEQUENCE case_outbox_id_seq TO {RETIRED};
            GRANT USAGE ON SCHEMA public TO {RETIRED};
            EXECUTE format('GRANT CONNECT ON DATABASE %I TO {RETIRED}', current_database());""",
        )
    )
