"""orders

Revision ID: b2_orders
Revises: b1_user_email
"""
import sqlalchemy as sa
from alembic import op

revision = "b2_orders"
down_revision = "b1_user_email"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("orders", sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
                    sa.Column("total", sa.Numeric(10, 2), nullable=False))


def downgrade() -> None:
    op.drop_table("orders")
