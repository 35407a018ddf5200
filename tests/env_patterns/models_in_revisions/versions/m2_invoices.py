"""invoices

Revision ID: m2_invoices
Revises: m1_accounts
"""
from collections.abc import Sequence

import patternapp.tables  # noqa: F401
import sqlalchemy as sa
from alembic import op

revision: str = "m2_invoices"
down_revision: str | Sequence[str] | None = "m1_accounts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table("invoices", sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id"), nullable=False),
                    sa.Column("total", sa.Integer, nullable=False))
    op.create_index("ix_invoices_account_id", "invoices", ["account_id"])


def downgrade() -> None:
    op.drop_index("ix_invoices_account_id", table_name="invoices")
    op.drop_table("invoices")
