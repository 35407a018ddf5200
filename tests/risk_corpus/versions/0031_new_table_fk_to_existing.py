"""payments with a foreign key to orders: a new, empty table

Revision ID: 0031_new_table_fk_to_existing
Revises: 0030_set_server_default
"""
import sqlalchemy as sa
from alembic import op

revision = '0031_new_table_fk_to_existing'
down_revision = '0030_set_server_default'


def upgrade() -> None:
    op.create_table(
        "payments",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("order_id", sa.Integer(), sa.ForeignKey("orders.id"), nullable=False),
        sa.Column("amount", sa.Numeric(12, 2), nullable=False),
    )


def downgrade() -> None:
    pass
