"""every event deleted in the migration

Revision ID: 0028_delete_everything
Revises: 0027_batched_data_fix
"""
from alembic import op

revision = '0028_delete_everything'
down_revision = '0027_batched_data_fix'


def upgrade() -> None:
    op.execute("DELETE FROM events")


def downgrade() -> None:
    pass
