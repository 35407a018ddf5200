"""env.py with include_name and include_object hooks, as projects write them to keep objects they do
not manage out of autogenerate: indexes made by hand (``ix_manual_*``), tables another tool owns
(``othertool_*``, judged on the object), a legacy table left out by name before reflection, and
database-only objects judged by what reflection says of them: binary columns, indexes on ``note``."""
import sqlalchemy as sa
from alembic import context
from sqlalchemy import MetaData, engine_from_config, pool

config = context.config
target_metadata = MetaData()
sa.Table("items", target_metadata,
         sa.Column("id", sa.Integer, primary_key=True),
         sa.Column("name", sa.String(50), nullable=False),
         sa.Column("note", sa.String(20)),
         sa.Index("ix_items_name", "name"))


def include_name(name, type_, parent_names):
    return not (type_ == "table" and name == "legacy_audit")


def include_object(obj, name, type_, reflected, compare_to):
    if type_ == "index" and name.startswith("ix_manual_"):
        return False
    # Judged by what reflection says of a database-only object: its type, its columns.
    if type_ == "column" and reflected and isinstance(obj.type, sa.LargeBinary):
        return False
    if type_ == "index" and reflected and [c.name for c in obj.columns] == ["note"]:
        return False
    return not (type_ == "table" and obj.name.startswith("othertool_"))


def run_migrations_online() -> None:
    engine = engine_from_config(config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.",
                                poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata,
                          include_name=include_name, include_object=include_object)
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
