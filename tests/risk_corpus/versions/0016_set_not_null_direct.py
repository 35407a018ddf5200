"""orders.status SET NOT NULL with nothing prepared

Revision ID: 0016_set_not_null_direct
Revises: 0015_validate_then_set_not_null
"""
import sqlalchemy as sa
from alembic import op

revision = '0016_set_not_null_direct'
down_revision = '0015_validate_then_set_not_null'


def upgrade() -> None:
    op.alter_column("orders", "status", existing_type=sa.String(20), nullable=False)


def downgrade() -> None:
    pass
