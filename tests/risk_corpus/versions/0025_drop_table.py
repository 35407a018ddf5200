"""sessions dropped

Revision ID: 0025_drop_table
Revises: 0024_unique_using_index
"""
from alembic import op

revision = '0025_drop_table'
down_revision = '0024_unique_using_index'


def upgrade() -> None:
    op.drop_table("sessions")


def downgrade() -> None:
    pass
