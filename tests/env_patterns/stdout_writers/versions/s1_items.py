import sqlalchemy as sa
from alembic import op

revision = "s1_items"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    print("PROJECT-PRINT creating items")
    op.create_table("items", sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("name", sa.String(50), nullable=False))


def downgrade() -> None:
    print("PROJECT-PRINT dropping items")
    op.drop_table("items")
