"""orders.user_id index: CONCURRENTLY in an autocommit block

Revision ID: 0004_index_concurrently
Revises: 0003_index_not_concurrent
"""
from alembic import op

revision = '0004_index_concurrently'
down_revision = '0003_index_not_concurrent'


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index("ix_orders_user_id", "orders", ["user_id"], postgresql_concurrently=True)


def downgrade() -> None:
    pass
