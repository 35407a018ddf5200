"""users.last_login_at and an orders (status, created_at) index

Revision ID: 0003_last_login_status_index
Revises: 0002_orders
Create Date: 2025-01-20 09:00:00.000000

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0003_last_login_status_index"
down_revision: str | Sequence[str] | None = "0002_orders"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column("users", sa.Column("last_login_at", sa.DateTime(), nullable=True))
    op.create_index("ix_orders_status_created", "orders", ["status", "created_at"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_orders_status_created", table_name="orders")
    op.drop_column("users", "last_login_at")
