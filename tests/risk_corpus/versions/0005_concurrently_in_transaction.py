"""TRAP: CONCURRENTLY without autocommit_block fails on PostgreSQL

Revision ID: 0005_concurrently_in_transaction
Revises: 0004_index_concurrently
"""
from alembic import op

revision = '0005_concurrently_in_transaction'
down_revision = '0004_index_concurrently'


def upgrade() -> None:
    op.create_index("ix_events_kind", "events", ["kind"], postgresql_concurrently=True)


def downgrade() -> None:
    pass
