"""The example project's schema at its head revision (0004), as SQLAlchemy Core.

env.py hands this MetaData to Alembic as ``target_metadata``; dbguard compares
it with the live database to detect drift, so it must describe exactly what
``upgrade head`` builds (without ``-x fail=1``): same tables, columns, types,
nullability, server defaults, constraint and index names.

Constraint names are spelled out by the naming convention below and written
literally in the revisions, so every engine ends up with the same names instead
of its own defaults (``users_pkey`` vs ``PRIMARY``, ``orders_ibfk_1`` ...).
"""

import sqlalchemy as sa

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

ORDER_STATUSES = ("pending", "paid", "shipped")

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("email", sa.String(255), nullable=False, unique=True),
    sa.Column("name", sa.String(100), nullable=True),
    sa.Column("is_active", sa.Boolean(), nullable=False, server_default=sa.true()),
    sa.Column("created_at", sa.DateTime(), nullable=False, server_default=sa.func.now()),
    # 0003
    sa.Column("last_login_at", sa.DateTime(), nullable=True),
)

orders = sa.Table(
    "orders",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column(
        "user_id",
        sa.Integer(),
        sa.ForeignKey("users.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column(
        "status",
        sa.Enum(*ORDER_STATUSES, name="order_status"),
        nullable=False,
        server_default="pending",
    ),
    sa.Column("total", sa.Numeric(10, 2), nullable=False, server_default="0"),
    sa.Column("payload", sa.JSON(), nullable=True),
    sa.Column("created_at", sa.DateTime(), nullable=True, server_default=sa.func.now()),
    # 0004
    sa.Column("note", sa.String(200), nullable=True),
    sa.Index("ix_orders_user_id", "user_id"),
    # 0003
    sa.Index("ix_orders_status_created", "status", "created_at"),
)

# 0004
audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("order_id", sa.Integer(), sa.ForeignKey("orders.id"), nullable=True),
    sa.Column("action", sa.String(50), nullable=False),
    sa.Column("at", sa.DateTime(), nullable=True, server_default=sa.func.now()),
    # MySQL/MariaDB would otherwise add an implicit index named after the
    # foreign key, which exists there only: declare it so every engine agrees.
    sa.Index("ix_audit_log_order_id", "order_id"),
)
