"""then validated in its own revision

Revision ID: 0012_fk_validate
Revises: 0011_fk_not_valid
"""
from alembic import op

revision = '0012_fk_validate'
down_revision = '0011_fk_not_valid'


def upgrade() -> None:
    op.execute("ALTER TABLE sessions VALIDATE CONSTRAINT fk_sessions_user_id")


def downgrade() -> None:
    pass
