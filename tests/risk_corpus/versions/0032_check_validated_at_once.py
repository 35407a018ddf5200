"""orders.total >= 0 CHECK validated at once

Revision ID: 0032_check_validated_at_once
Revises: 0031_new_table_fk_to_existing
"""
from alembic import op

revision = '0032_check_validated_at_once'
down_revision = '0031_new_table_fk_to_existing'


def upgrade() -> None:
    op.create_check_constraint("ck_orders_total_positive", "orders", "total >= 0")


def downgrade() -> None:
    pass
