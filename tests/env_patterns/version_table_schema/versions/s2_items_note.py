"""items.note

Revision ID: s2_items_note
Revises: s1_items
"""
import sqlalchemy as sa
from alembic import op

revision = "s2_items_note"
down_revision = "s1_items"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("items", sa.Column("note", sa.String(20)))


def downgrade() -> None:
    op.drop_column("items", "note")
