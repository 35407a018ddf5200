"""raw SQL switches the lock timeout off before an ALTER

Revision ID: 0026_lock_timeout_off
Revises: 0025_drop_table
"""
import sqlalchemy as sa
from alembic import op

revision = '0026_lock_timeout_off'
down_revision = '0025_drop_table'


def upgrade() -> None:
    op.execute("SET lock_timeout = 0")
    op.add_column("events", sa.Column("source", sa.String(50), nullable=True))


def downgrade() -> None:
    pass
