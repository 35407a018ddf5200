"""env.py that keeps the application in a schema of its own, named by the deployment (arize-phoenix's
PHOENIX_SQL_DATABASE_SCHEMA): the models name it (``MetaData(schema=...)``), env.py creates it, puts
its connection on that search_path and keeps Alembic's version table there
(``version_table_schema``)."""
import os

import sqlalchemy as sa
from alembic import context
from sqlalchemy import MetaData, engine_from_config, pool, text

config = context.config
SCHEMA = os.environ.get("APP_SCHEMA") or None
target_metadata = MetaData(schema=SCHEMA)
sa.Table("items", target_metadata,
         sa.Column("id", sa.Integer, primary_key=True),
         sa.Column("name", sa.String(50), nullable=False),
         sa.Column("note", sa.String(20)),
         sa.Index("ix_items_name", "name"))


def run_migrations_online() -> None:
    engine = engine_from_config(config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.",
                                poolclass=pool.NullPool)
    with engine.connect() as connection:
        if SCHEMA:
            connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
            connection.execute(text(f"SET search_path TO {SCHEMA}"))
            connection.commit()
        context.configure(connection=connection, target_metadata=target_metadata, version_table_schema=SCHEMA)
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
