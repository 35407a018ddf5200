"""an index on items.name (sqlite)

Revision ID: sqlite_2_items_name
Revises: sqlite_1_items
"""
from alembic import op

revision = "sqlite_2_items_name"
down_revision = "sqlite_1_items"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_items_name", "items", ["name"])


def downgrade() -> None:
    op.drop_index("ix_items_name", table_name="items")
