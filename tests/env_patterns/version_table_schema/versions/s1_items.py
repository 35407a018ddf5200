"""items

Revision ID: s1_items
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "s1_items"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("items", sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("name", sa.String(50), nullable=False))
    op.create_index("ix_items_name", "items", ["name"])


def downgrade() -> None:
    op.drop_table("items")
