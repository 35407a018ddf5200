"""TRAP for per-file linters: audit was created by 0006, in this plan

Revision ID: 0007_index_on_table_created_earlier_in_plan
Revises: 0006_new_table_with_index
"""
from alembic import op

revision = '0007_index_on_table_created_earlier_in_plan'
down_revision = '0006_new_table_with_index'


def upgrade() -> None:
    op.create_index("ix_audit_action", "audit", ["action"])


def downgrade() -> None:
    pass
