"""orders.status index built the blocking way

Revision ID: 0003_index_not_concurrent
Revises: 0002_add_nullable_column
"""
from alembic import op

revision = '0003_index_not_concurrent'
down_revision = '0002_add_nullable_column'


def upgrade() -> None:
    op.create_index("ix_orders_status", "orders", ["status"])


def downgrade() -> None:
    pass
