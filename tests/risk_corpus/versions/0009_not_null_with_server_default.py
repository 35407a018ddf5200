"""users.is_admin NOT NULL with a constant default: catalog only

Revision ID: 0009_not_null_with_server_default
Revises: 0008_not_null_without_default
"""
import sqlalchemy as sa
from alembic import op

revision = '0009_not_null_with_server_default'
down_revision = '0008_not_null_without_default'


def upgrade() -> None:
    op.add_column("users", sa.Column("is_admin", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    pass
