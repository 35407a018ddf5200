"""sessions.user_id foreign key added NOT VALID

Revision ID: 0011_fk_not_valid
Revises: 0010_fk_validated_at_once
"""
from alembic import op

revision = '0011_fk_not_valid'
down_revision = '0010_fk_validated_at_once'


def upgrade() -> None:
    op.execute("ALTER TABLE sessions ADD CONSTRAINT fk_sessions_user_id FOREIGN KEY (user_id) "
               "REFERENCES users (id) NOT VALID")


def downgrade() -> None:
    pass
