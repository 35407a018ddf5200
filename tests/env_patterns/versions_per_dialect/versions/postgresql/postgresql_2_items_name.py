"""an index on items.name (postgresql)

Revision ID: postgresql_2_items_name
Revises: postgresql_1_items
"""
from alembic import op

revision = "postgresql_2_items_name"
down_revision = "postgresql_1_items"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_items_name", "items", ["name"])


def downgrade() -> None:
    op.drop_index("ix_items_name", table_name="items")
