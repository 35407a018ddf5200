"""users.email unique constraint builds its index under ACCESS EXCLUSIVE

Revision ID: 0023_unique_constraint
Revises: 0022_volatile_default
"""
from alembic import op

revision = '0023_unique_constraint'
down_revision = '0022_volatile_default'


def upgrade() -> None:
    op.create_unique_constraint("uq_users_email", "users", ["email"])


def downgrade() -> None:
    pass
