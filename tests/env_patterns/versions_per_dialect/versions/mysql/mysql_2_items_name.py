"""an index on items.name (mysql)

Revision ID: mysql_2_items_name
Revises: mysql_1_items
"""
from alembic import op

revision = "mysql_2_items_name"
down_revision = "mysql_1_items"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_items_name", "items", ["name"])


def downgrade() -> None:
    op.drop_index("ix_items_name", table_name="items")
