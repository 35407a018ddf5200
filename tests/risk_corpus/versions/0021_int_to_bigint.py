"""orders.total INTEGER to BIGINT rewrites the table

Revision ID: 0021_int_to_bigint
Revises: 0020_widen_varchar
"""
import sqlalchemy as sa
from alembic import op

revision = '0021_int_to_bigint'
down_revision = '0020_widen_varchar'


def upgrade() -> None:
    op.alter_column("orders", "total", type_=sa.BigInteger(), existing_type=sa.Integer())


def downgrade() -> None:
    pass
