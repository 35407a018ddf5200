"""sessions.source added and backfilled for every row in the same revision (one transaction)

Revision ID: 0034_add_column_and_backfill
Revises: 0033_check_validated_in_same_revision
"""
import sqlalchemy as sa
from alembic import op

revision = '0034_add_column_and_backfill'
down_revision = '0033_check_validated_in_same_revision'


def upgrade() -> None:
    op.add_column("sessions", sa.Column("source", sa.String(20), nullable=True))
    op.execute("UPDATE sessions SET source = 'web'")


def downgrade() -> None:
    pass
