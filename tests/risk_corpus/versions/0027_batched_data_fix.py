"""a bounded data fix: row locks only

Revision ID: 0027_batched_data_fix
Revises: 0026_lock_timeout_off
"""
from alembic import op

revision = '0027_batched_data_fix'
down_revision = '0026_lock_timeout_off'


def upgrade() -> None:
    op.execute("UPDATE orders SET comment = '' WHERE comment IS NULL AND id BETWEEN 1 AND 5000")


def downgrade() -> None:
    pass
