"""orders.public_id with a volatile default rewrites every row

Revision ID: 0022_volatile_default
Revises: 0021_int_to_bigint
"""
import sqlalchemy as sa
from alembic import op

revision = '0022_volatile_default'
down_revision = '0021_int_to_bigint'


def upgrade() -> None:
    op.add_column("orders", sa.Column("public_id", sa.Uuid(), server_default=sa.text("gen_random_uuid()")))


def downgrade() -> None:
    pass
