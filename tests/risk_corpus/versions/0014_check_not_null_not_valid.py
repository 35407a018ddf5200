"""CHECK (plan IS NOT NULL) NOT VALID

Revision ID: 0014_check_not_null_not_valid
Revises: 0013_backfill_nullable
"""
from alembic import op

revision = '0014_check_not_null_not_valid'
down_revision = '0013_backfill_nullable'


def upgrade() -> None:
    op.execute("ALTER TABLE users ADD CONSTRAINT ck_users_plan_nn CHECK (plan IS NOT NULL) NOT VALID")


def downgrade() -> None:
    pass
