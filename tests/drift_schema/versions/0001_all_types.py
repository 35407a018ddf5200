"""every type

Revision ID: 0001_all_types
Revises:
"""
import os
import sys

from alembic import op

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import drift_models

revision = "0001_all_types"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    drift_models.metadata.create_all(op.get_bind())


def downgrade() -> None:
    drift_models.metadata.drop_all(op.get_bind())
