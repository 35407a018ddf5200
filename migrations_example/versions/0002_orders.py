"""orders

Revision ID: 0002_orders
Revises: 0001_users
Create Date: 2025-01-13 09:00:00.000000

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0002_orders"
down_revision: str | Sequence[str] | None = "0001_users"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    # On PostgreSQL this also emits CREATE TYPE order_status; MySQL/MariaDB
    # use an inline ENUM and SQLite a VARCHAR.
    op.create_table(
        "orders",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            sa.Enum("pending", "paid", "shipped", name="order_status"),
            server_default="pending",
            nullable=False,
        ),
        sa.Column("total", sa.Numeric(precision=10, scale=2), server_default="0", nullable=False),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(), server_default=sa.func.now(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_orders_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_orders"),
    )
    op.create_index("ix_orders_user_id", "orders", ["user_id"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    # No drop_index first: on MySQL/MariaDB ix_orders_user_id is the index the
    # foreign key uses, and dropping it alone fails with error 1553. DROP TABLE
    # takes it along on every engine.
    op.drop_table("orders")
    # DROP TABLE leaves the PostgreSQL enum type behind, and the next upgrade's
    # CREATE TYPE would then fail. IF EXISTS is the checkfirst, written as SQL
    # so that `downgrade --sql` (offline, no connection to inspect) works too.
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP TYPE IF EXISTS order_status")
