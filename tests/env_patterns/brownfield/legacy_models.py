"""The schema of the release before the project adopted Alembic: made with create_all."""
import sqlalchemy as sa

metadata = sa.MetaData()

users = sa.Table(
    "users", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(80), nullable=False),
    # A named enum type on PostgreSQL: a snapshot baseline must create it before its table.
    sa.Column("tier", sa.Enum("free", "paid", name="user_tier")),
)


def create(connection: sa.Connection) -> None:
    """The same schema, for a baseline given as a callable."""
    metadata.create_all(connection)
