"""items

Revision ID: p2_items
Revises: p1_settings_seen
"""
import sqlalchemy as sa
from alembic import op

revision = "p2_items"
down_revision = "p1_settings_seen"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("items", sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String(40)))
    op.create_index("ix_items_name", "items", ["name"])


def downgrade() -> None:
    op.drop_index("ix_items_name", table_name="items")
    op.drop_table("items")
