"""users.email, on the table the legacy release created

Revision ID: b1_user_email
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "b1_user_email"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("email", sa.String(120)))
    op.create_index("ix_users_email", "users", ["email"])


def downgrade() -> None:
    op.drop_index("ix_users_email", table_name="users")
    op.drop_column("users", "email")
