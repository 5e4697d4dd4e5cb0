"""Row-level security on the case tables: an agency's caseworkers read only the cases it is on.

`case_state.agencies` names every agency involved in a case (the owner, the assigned agencies
and the pending receivers: `services.cases.store.agencies_involved`); the cases service
writes it with each snapshot. The caseworkers' read path connects as
`casebridge_caseworkers` and sets the acting agency per transaction
(`set_config('casebridge.agency', <agency>, true)`, services/cases/reads.py); the policies below
then let it see only rows of cases whose `agencies` hold that agency, and nothing when none is
set. The isolation is the server's, so a query that forgets a WHERE clause, joins too widely or
asks for another agency's case by id still returns the acting agency's rows alone. Which agency
is acting is the caller's word (the API authenticates the caseworker): the policies guard
against mistakes in queries, not against a compromised API process, which could name any agency.

Row security is FORCEd, so it binds the tables' owner too; every other role keeps exactly what
it had, by policies that mirror its grants (0011): `casebridge_cases` the statements of
services/cases/store.py, `casebridge_auditor` SELECT on every row it may select, and the owner
everything (migrations, `casebridge cases rebuild --write`, tests). A right without a policy
touches no rows, silently: a later grant on these tables needs its policy too (a test checks the
two agree). TRUNCATE, which row security does not cover, is granted to no role but the owner.
No role here has BYPASSRLS (postgres.sh makes them NOBYPASSRLS), and `SET row_security = off`
makes such a role's queries fail, not bypass.

The role is made by `infra/postgres/postgres.sh bootstrap`, like the service roles.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OWNER = "casebridge_owner"
CASES = "casebridge_cases"
AUDITOR = "casebridge_auditor"
CASEWORKERS = "casebridge_caseworkers"
TABLES = ("case_state", "case_event", "case_deadline")

# The acting agency, or NULL when none is set in this transaction. After a transaction-local
# set_config the setting reads '' rather than NULL, hence NULLIF: an array never contains NULL.
ACTING = "NULLIF(current_setting('casebridge.agency', true), '')"
VISIBLE_CASE = f"agencies @> ARRAY[{ACTING}]"

# (table, role, command): the service roles' policies mirror their grants in 0011.
UNRESTRICTED: tuple[tuple[str, str, str], ...] = (
    *((table, OWNER, "ALL") for table in TABLES),
    ("case_state", CASES, "SELECT"),
    ("case_state", CASES, "INSERT"),
    ("case_state", CASES, "UPDATE"),
    ("case_event", CASES, "INSERT"),
    ("case_deadline", CASES, "SELECT"),
    ("case_deadline", CASES, "INSERT"),
    ("case_deadline", CASES, "UPDATE"),
    ("case_deadline", CASES, "DELETE"),
    ("case_state", AUDITOR, "SELECT"),
    ("case_event", AUDITOR, "SELECT"),
)

# The agencies of a case from its snapshot JSON, as agencies_involved computes them from the
# case: the owner, the assigned agencies, receivers of requested handovers, and a return's
# receiving agency until arrival.
BACKFILL = """
UPDATE case_state AS s SET agencies = ARRAY(
    SELECT DISTINCT agency FROM (
        SELECT s.owner AS agency
        UNION ALL
        SELECT jsonb_array_elements_text(
            CASE jsonb_typeof(s.snapshot -> 'assigned')
                WHEN 'array' THEN s.snapshot -> 'assigned' ELSE '[]' END)
        UNION ALL
        SELECT h ->> 'to_agency' FROM jsonb_array_elements(
            CASE jsonb_typeof(s.snapshot -> 'handovers')
                WHEN 'array' THEN s.snapshot -> 'handovers' ELSE '[]' END) AS h
        WHERE h ->> 'status' = 'requested'
        UNION ALL
        SELECT s.snapshot #>> '{returns,receiving_agency}'
        WHERE s.snapshot #>> '{returns,arrived_at}' IS NULL
    ) AS involved
    WHERE agency IS NOT NULL
    ORDER BY agency
)"""


def _policy_name(table: str, role: str, command: str) -> str:
    return f"{table}_{role.removeprefix('casebridge_')}_{command.lower()}"


def _policy(table: str, role: str, command: str) -> str:
    name = _policy_name(table, role, command)
    using = "" if command == "INSERT" else " USING (true)"
    check = " WITH CHECK (true)" if command in ("ALL", "INSERT", "UPDATE") else ""
    return f"CREATE POLICY {name} ON {table} FOR {command} TO {role}{using}{check}"


def upgrade() -> None:
    # Roles are made by set-up, not here: say so plainly rather than fail on the first GRANT.
    op.execute(f"""
    DO $$ BEGIN
        IF to_regrole('{CASEWORKERS}') IS NULL THEN
            RAISE EXCEPTION 'database role % missing', '{CASEWORKERS}'
                USING HINT = 'infra/postgres/postgres.sh bootstrap creates the roles';
        END IF;
    END $$""")
    op.execute("ALTER TABLE case_state ADD COLUMN agencies text[]")
    op.execute(BACKFILL)
    op.execute("ALTER TABLE case_state ALTER COLUMN agencies SET NOT NULL")
    op.execute("CREATE INDEX case_state_agencies ON case_state USING gin (agencies)")

    for table in TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
    for table, role, command in UNRESTRICTED:
        op.execute(_policy(table, role, command))

    # The caseworkers: their agency's cases, those cases' logs and deadlines; reads only. The
    # log and deadline policies name the case's agencies themselves rather than lean on
    # case_state's policy, so they hold whatever else this role is ever granted on case_state.
    op.execute(f"""
    CREATE POLICY {_policy_name("case_state", CASEWORKERS, "SELECT")} ON case_state
        FOR SELECT TO {CASEWORKERS} USING ({VISIBLE_CASE})""")
    for table in ("case_event", "case_deadline"):
        op.execute(f"""
        CREATE POLICY {_policy_name(table, CASEWORKERS, "SELECT")} ON {table}
            FOR SELECT TO {CASEWORKERS}
            USING (EXISTS (SELECT FROM case_state AS c
                           WHERE c.case_id = {table}.case_id AND c.{VISIBLE_CASE}))""")  # noqa: S608
    op.execute(f"""
    DO $$ BEGIN
        EXECUTE format('GRANT CONNECT ON DATABASE %I TO {CASEWORKERS}', current_database());
    END $$""")
    op.execute(f"GRANT USAGE ON SCHEMA public TO {CASEWORKERS}")
    op.execute(f"GRANT SELECT ON {', '.join(TABLES)} TO {CASEWORKERS}")


def downgrade() -> None:
    op.execute(f"REVOKE ALL ON {', '.join(TABLES)} FROM {CASEWORKERS}")
    op.execute(f"REVOKE USAGE ON SCHEMA public FROM {CASEWORKERS}")
    op.execute(f"""
    DO $$ BEGIN
        EXECUTE format('REVOKE CONNECT ON DATABASE %I FROM {CASEWORKERS}', current_database());
    END $$""")
    for table in TABLES:
        op.execute(f"DROP POLICY {_policy_name(table, CASEWORKERS, 'SELECT')} ON {table}")
    for table, role, command in UNRESTRICTED:
        op.execute(f"DROP POLICY {_policy_name(table, role, command)} ON {table}")
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    op.execute("DROP INDEX case_state_agencies")
    op.execute("ALTER TABLE case_state DROP COLUMN agencies")
