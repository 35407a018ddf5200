"""orders.status server default: catalog only

Revision ID: 0030_set_server_default
Revises: 0029_many_tables
"""
import sqlalchemy as sa
from alembic import op

revision = '0030_set_server_default'
down_revision = '0029_many_tables'


def upgrade() -> None:
    op.alter_column("orders", "status", server_default="new", existing_type=sa.String(50), existing_nullable=False)


def downgrade() -> None:
    pass
