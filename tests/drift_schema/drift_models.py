"""Every column type the engines commonly use, server defaults with functions and casts, enums,
JSON, partial and expression indexes, FKs with actions, identity and auto-increment columns,
check constraints, comments, a generated column. The revisions build exactly this: drift must find nothing."""

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

metadata = sa.MetaData(naming_convention={
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})

MOODS = ("happy", "sad", "meh")

ticket_seq = sa.Sequence("ticket_seq", metadata=metadata)

accounts = sa.Table(
    "accounts", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("email", sa.String(255), nullable=False, unique=True),
    sa.Column("name", sa.String(100), comment="display name"),
    sa.Column("is_active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("created_at", sa.DateTime, nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("CURRENT_TIMESTAMP")),
    comment="people who log in",
)

things = sa.Table(
    "things", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), sa.Identity(), primary_key=True),
    sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    sa.Column("parent_id", sa.BigInteger().with_variant(sa.Integer, "sqlite"),
              sa.ForeignKey("things.id", ondelete="SET NULL")),
    sa.Column("small", sa.SmallInteger, nullable=False, server_default="0"),
    sa.Column("double_small", sa.Integer, sa.Computed("small * 2", persisted=True)),
    sa.Column("code", sa.String(20), nullable=False, server_default="x"),
    sa.Column("title", sa.Unicode(200)),
    sa.Column("body", sa.Text),
    sa.Column("price", sa.Numeric(12, 4), nullable=False, server_default=sa.text("0")),
    sa.Column("ratio", sa.Float),
    sa.Column("exact", sa.Numeric(10, 2), server_default="1.50"),
    sa.Column("born_on", sa.Date),
    sa.Column("wakes_at", sa.Time),
    sa.Column("blob", sa.LargeBinary),
    sa.Column("doc", sa.JSON().with_variant(postgresql.JSONB(), "postgresql")),
    sa.Column("extra", sa.JSON),
    sa.Column("uid", sa.Uuid),
    sa.Column("mood", sa.Enum(*MOODS, name="mood"), nullable=False, server_default="meh"),
    sa.Column("kind", sa.Enum("a", "b", name="thing_kind", native_enum=False, length=10)),
    sa.Column("flag", sa.Boolean, server_default=sa.false()),
    sa.Column("status", sa.String(10), nullable=False, server_default="new"),
    sa.CheckConstraint("price >= 0", name="price_positive"),
    sa.CheckConstraint("status IN ('new', 'done')", name="status_known"),
    sa.UniqueConstraint("account_id", "code", name="uq_things_account_code"),
    sa.Index("ix_things_account_id", "account_id"),
    sa.Index("ix_things_parent_id", "parent_id"),
    sa.Index("ix_things_status_created", "status", "small"),
    sa.Index("ix_things_open", "account_id", postgresql_where=sa.text("status = 'new'"),
             sqlite_where=sa.text("status = 'new'")),
    sa.Index("ix_things_lower_title", sa.func.lower(sa.column("title"))).ddl_if(dialect=("postgresql", "sqlite")),
    sa.Index("uq_things_title", "title", unique=True),
    comment="one of everything",
)

tags = sa.Table(
    "tags", metadata,
    sa.Column("thing_id", sa.BigInteger().with_variant(sa.Integer, "sqlite"),
              sa.ForeignKey("things.id", ondelete="CASCADE", onupdate="CASCADE"), primary_key=True),
    sa.Column("tag", sa.String(50), primary_key=True),
    sa.Column("ticket", sa.Integer, server_default=sa.text("42")),
)
