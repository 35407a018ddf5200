"""a 40-table module added in one transaction (80 relations with their keys)

Revision ID: 0029_many_tables
Revises: 0028_delete_everything
"""
import sqlalchemy as sa
from alembic import op

revision = '0029_many_tables'
down_revision = '0028_delete_everything'


def upgrade() -> None:
    for n in range(40):
        op.create_table(f"module_{n:02d}", sa.Column("id", sa.Integer(), primary_key=True),
                        sa.Column("name", sa.String(50)))


def downgrade() -> None:
    pass
