"""orders.user_id foreign key, validated in the same statement

Revision ID: 0010_fk_validated_at_once
Revises: 0009_not_null_with_server_default
"""
from alembic import op

revision = '0010_fk_validated_at_once'
down_revision = '0009_not_null_with_server_default'


def upgrade() -> None:
    op.create_foreign_key("fk_orders_user_id", "orders", "users", ["user_id"], ["id"])


def downgrade() -> None:
    pass
