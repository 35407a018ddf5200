"""a new table and its index in one revision

Revision ID: 0006_new_table_with_index
Revises: 0005_concurrently_in_transaction
"""
import sqlalchemy as sa
from alembic import op

revision = '0006_new_table_with_index'
down_revision = '0005_concurrently_in_transaction'


def upgrade() -> None:
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(50), nullable=False),
    )
    op.create_index("ix_audit_actor_id", "audit", ["actor_id"])


def downgrade() -> None:
    pass
