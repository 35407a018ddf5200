"""events.payload unique: index built concurrently, then attached

Revision ID: 0024_unique_using_index
Revises: 0023_unique_constraint
"""
from alembic import op

revision = '0024_unique_using_index'
down_revision = '0023_unique_constraint'


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index("uq_events_kind_payload", "events", ["kind", "payload"], unique=True,
                        postgresql_concurrently=True)
    op.execute("ALTER TABLE events ADD CONSTRAINT uq_events_kind_payload UNIQUE USING INDEX uq_events_kind_payload")


def downgrade() -> None:
    pass
