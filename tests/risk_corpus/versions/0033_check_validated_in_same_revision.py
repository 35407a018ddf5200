"""events.kind CHECK added NOT VALID, then validated in the same revision (one transaction)

Revision ID: 0033_check_validated_in_same_revision
Revises: 0032_check_validated_at_once
"""
from alembic import op

revision = '0033_check_validated_in_same_revision'
down_revision = '0032_check_validated_at_once'


def upgrade() -> None:
    op.execute("ALTER TABLE events ADD CONSTRAINT ck_events_kind_len CHECK (length(kind) > 0) NOT VALID")
    op.execute("ALTER TABLE events VALIDATE CONSTRAINT ck_events_kind_len")


def downgrade() -> None:
    pass
