"""a view (models know nothing of views; migrations and snapshots do)

Revision ID: 0002_view
Revises: 0001_all_types
"""
from alembic import op

revision = "0002_view"
down_revision = "0001_all_types"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE VIEW open_things AS SELECT id, title FROM things WHERE status = 'new'")


def downgrade() -> None:
    op.execute("DROP VIEW open_things")
