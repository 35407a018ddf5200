"""orders.status widened from 20 to 50: catalog only

Revision ID: 0020_widen_varchar
Revises: 0019_narrow_varchar
"""
import sqlalchemy as sa
from alembic import op

revision = '0020_widen_varchar'
down_revision = '0019_narrow_varchar'


def upgrade() -> None:
    op.alter_column("orders", "status", type_=sa.String(50), existing_type=sa.String(20), existing_nullable=False)


def downgrade() -> None:
    pass
