"""env.py that picks its version folder per dialect when it runs (prefect's pattern): alembic.ini names
none, `versions/` holds one folder per engine, and env.py sets `context.script.version_locations`."""
from pathlib import Path

from alembic import context
from sqlalchemy import engine_from_config, make_url, pool

config = context.config
target_metadata = None
url = config.get_main_option("sqlalchemy.url")
context.script.version_locations = [str(Path(__file__).parent / "versions" / make_url(url).get_backend_name())]


def run_migrations_offline() -> None:
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connectable = engine_from_config(config.get_section(config.config_ini_section, {}),
                                     prefix="sqlalchemy.", poolclass=pool.NullPool)
    with connectable.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
