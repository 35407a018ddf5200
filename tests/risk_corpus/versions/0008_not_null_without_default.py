"""users.tenant_code NOT NULL, no default

Revision ID: 0008_not_null_without_default
Revises: 0007_index_on_table_created_earlier_in_plan
"""
import sqlalchemy as sa
from alembic import op

revision = '0008_not_null_without_default'
down_revision = '0007_index_on_table_created_earlier_in_plan'


def upgrade() -> None:
    op.add_column("users", sa.Column("tenant_code", sa.String(20), nullable=False))


def downgrade() -> None:
    pass
