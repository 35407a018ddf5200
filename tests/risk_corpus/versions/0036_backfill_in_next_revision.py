"""sessions.channel backfilled in the next revision, in batches: the ADD COLUMN's lock is gone

Revision ID: 0036_backfill_in_next_revision
Revises: 0035_add_column_alone
"""
from alembic import op

revision = '0036_backfill_in_next_revision'
down_revision = '0035_add_column_alone'


def upgrade() -> None:
    op.execute("UPDATE sessions SET channel = 'web' WHERE channel IS NULL AND id BETWEEN 1 AND 5000")


def downgrade() -> None:
    pass
