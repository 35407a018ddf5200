"""users.last_login_at, nullable: catalog only

Revision ID: 0002_add_nullable_column
Revises: 0001_base
"""
import sqlalchemy as sa
from alembic import op

revision = '0002_add_nullable_column'
down_revision = '0001_base'


def upgrade() -> None:
    op.add_column("users", sa.Column("last_login_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    pass
