"""the lock wait the migration's own connection runs with

Revision ID: p1_settings_seen
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "p1_settings_seen"
down_revision = None
branch_labels = None
depends_on = None

_SETTING = {
    "postgresql": "SELECT current_setting('lock_timeout')",
    "mysql": "SELECT CAST(@@SESSION.innodb_lock_wait_timeout AS CHAR)",
    "mariadb": "SELECT CAST(@@SESSION.innodb_lock_wait_timeout AS CHAR)",
    "sqlite": "SELECT 'none'",
}


def upgrade() -> None:
    op.create_table("settings_seen", sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("lock_wait", sa.String(50), nullable=False))
    bind = op.get_bind()
    seen = bind.exec_driver_sql(_SETTING[bind.dialect.name]).scalar()
    op.execute(sa.text("INSERT INTO settings_seen (lock_wait) VALUES (:v)").bindparams(v=str(seen)))


def downgrade() -> None:
    op.drop_table("settings_seen")
