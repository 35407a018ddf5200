"""users.name shortened from 255 to 100

Revision ID: 0019_narrow_varchar
Revises: 0018_rename_column
"""
import sqlalchemy as sa
from alembic import op

revision = '0019_narrow_varchar'
down_revision = '0018_rename_column'


def upgrade() -> None:
    op.alter_column("users", "name", type_=sa.String(100), existing_type=sa.String(255))


def downgrade() -> None:
    pass
