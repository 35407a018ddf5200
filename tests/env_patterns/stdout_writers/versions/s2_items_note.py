import sqlalchemy as sa
from alembic import op

revision = "s2_items_note"
down_revision = "s1_items"
branch_labels = None
depends_on = None


def upgrade() -> None:
    print("PROJECT-PRINT processing batch 1")
    op.add_column("items", sa.Column("note", sa.String(20)))


def downgrade() -> None:
    print("PROJECT-PRINT processing batch 1")
    op.drop_column("items", "note")
