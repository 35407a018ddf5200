"""VALIDATE, then SET NOT NULL skips its scan, then drop the CHECK

Revision ID: 0015_validate_then_set_not_null
Revises: 0014_check_not_null_not_valid
"""
import sqlalchemy as sa
from alembic import op

revision = '0015_validate_then_set_not_null'
down_revision = '0014_check_not_null_not_valid'


def upgrade() -> None:
    op.execute("ALTER TABLE users VALIDATE CONSTRAINT ck_users_plan_nn")
    op.alter_column("users", "plan", existing_type=sa.String(20), nullable=False)
    op.drop_constraint("ck_users_plan_nn", "users", type_="check")


def downgrade() -> None:
    pass
