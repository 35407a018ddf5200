"""users.legacy_flag dropped

Revision ID: 0017_drop_column
Revises: 0016_set_not_null_direct
"""
from alembic import op

revision = '0017_drop_column'
down_revision = '0016_set_not_null_direct'


def upgrade() -> None:
    op.drop_column("users", "legacy_flag")


def downgrade() -> None:
    pass
