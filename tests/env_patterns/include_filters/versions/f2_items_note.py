"""items.note

Revision ID: f2_items_note
Revises: f1_items
"""
import sqlalchemy as sa
from alembic import op

revision = "f2_items_note"
down_revision = "f1_items"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("items", sa.Column("note", sa.String(20)))


def downgrade() -> None:
    op.drop_column("items", "note")
