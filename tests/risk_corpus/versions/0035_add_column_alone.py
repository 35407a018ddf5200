"""sessions.channel added in a revision of its own

Revision ID: 0035_add_column_alone
Revises: 0034_add_column_and_backfill
"""
import sqlalchemy as sa
from alembic import op

revision = '0035_add_column_alone'
down_revision = '0034_add_column_and_backfill'


def upgrade() -> None:
    op.add_column("sessions", sa.Column("channel", sa.String(20), nullable=True))


def downgrade() -> None:
    pass
