"""audit_log table and orders.note -- THE DEMO FAILURE

This revision fails on purpose when asked to, so dbguard's ledger, circuit
breaker and rollback can be shown on a real half-applied migration:

    alembic -c migrations_example/alembic.ini -x fail=1 upgrade head

creates audit_log, adds orders.note, and then runs a SELECT on a table that
does not exist, which fails on every engine. What it leaves behind depends on
the engine: PostgreSQL rolls the whole transaction back, while MariaDB/MySQL
(non-transactional DDL) and SQLite keep audit_log and orders.note with
alembic_version still at 0003, so a plain re-run then fails on "table
audit_log already exists". Without ``-x fail=...`` (or with a false value) the
revision succeeds.

Revision ID: 0004_audit_log_order_note
Revises: 0003_last_login_status_index
Create Date: 2025-01-27 09:00:00.000000

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

# revision identifiers, used by Alembic.
revision: str = "0004_audit_log_order_note"
down_revision: str | Sequence[str] | None = "0003_last_login_status_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _failure_requested() -> bool:
    value = context.get_x_argument(as_dictionary=True).get("fail") or ""
    return value.strip().lower() in ("1", "true", "yes")


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=50), nullable=False),
        sa.Column("at", sa.DateTime(), server_default=sa.func.now(), nullable=True),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name="fk_audit_log_order_id_orders"),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_order_id", "audit_log", ["order_id"], unique=False)
    op.add_column("orders", sa.Column("note", sa.String(length=200), nullable=True))

    if _failure_requested():
        # The demo failure: after two DDL statements, so engines without
        # transactional DDL are left half-migrated.
        op.execute("SELECT * FROM dbguard_example_missing_table")


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_column("orders", "note")
    # No drop_index first: once ix_audit_log_order_id exists, MySQL/MariaDB drop
    # the implicit index of the foreign key and then refuse to drop ours
    # (error 1553, needed in a foreign key constraint). DROP TABLE takes it along.
    op.drop_table("audit_log")
