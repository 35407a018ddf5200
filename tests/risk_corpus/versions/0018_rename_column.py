"""orders.note renamed to comment

Revision ID: 0018_rename_column
Revises: 0017_drop_column
"""
import sqlalchemy as sa
from alembic import op

revision = '0018_rename_column'
down_revision = '0017_drop_column'


def upgrade() -> None:
    op.alter_column("orders", "note", new_column_name="comment", existing_type=sa.Text())


def downgrade() -> None:
    pass
