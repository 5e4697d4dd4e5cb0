"""Index `case_deadline` by case: every case change replaces that case's pending deadlines.

`services.cases.store.replace_deadlines` deletes a case's pending deadlines by `case_id` on
every event it applies, and the caseworkers' row-level security policy (0015) joins deadlines
to their case the same way. With only the primary key and the due-date index, each of those
read the whole table, so applying an event cost time in proportion to every deadline ever set:
quadratic over a run (the fault recipes of `make chaos` slowed down as they went).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE INDEX case_deadline_case ON case_deadline (case_id)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS case_deadline_case")
