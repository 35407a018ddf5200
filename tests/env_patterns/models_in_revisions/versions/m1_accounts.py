"""accounts

Revision ID: m1_accounts
Revises:
"""
from collections.abc import Sequence

import patternapp.tables  # noqa: F401 - the models load with the revisions
import sqlalchemy as sa
from alembic import op

revision: str = "m1_accounts"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table("accounts", sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("email", sa.String(120), nullable=False),
                    sa.UniqueConstraint("email", name="accounts_email_key"))


def downgrade() -> None:
    op.drop_table("accounts")
