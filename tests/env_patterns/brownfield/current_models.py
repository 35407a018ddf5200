"""Today's models: the legacy schema plus what the revisions added."""
import sqlalchemy as sa

metadata = sa.MetaData()

users = sa.Table(
    "users", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(80), nullable=False),
    # A named enum type on PostgreSQL: a snapshot baseline must create it before its table.
    sa.Column("tier", sa.Enum("free", "paid", name="user_tier")),
    sa.Column("email", sa.String(120)),
    sa.Index("ix_users_email", "email"),
)

orders = sa.Table(
    "orders", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("total", sa.Numeric(10, 2), nullable=False),
)
