"""the schema every later revision starts from

Revision ID: 0001_base
Revises: 
"""
import sqlalchemy as sa
from alembic import op

revision = '0001_base'
down_revision = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("email", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column("tenant_id", sa.Integer(), nullable=True),
        sa.Column("legacy_flag", sa.Boolean(), nullable=True),
    )
    op.create_table(
        "orders",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(20), nullable=True),
        sa.Column("total", sa.Integer(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("kind", sa.String(50), nullable=True),
        sa.Column("payload", sa.Text(), nullable=True),
    )
    op.create_table(
        "sessions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("expired", sa.Boolean(), nullable=True),
    )


def downgrade() -> None:
    pass
