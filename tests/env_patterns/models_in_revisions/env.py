"""env.py that imports only the declarative base; the revisions import the models. It writes what
sys.modules held at each execution, and in which mode, to the file named by PATTERN_SEEN_FILE."""
import os
import sys
from pathlib import Path

from alembic import context
from sqlalchemy import engine_from_config, pool

sys.path.insert(0, str(Path(__file__).resolve().parent))
if os.environ.get("PATTERN_SEEN_FILE"):
    with open(os.environ["PATTERN_SEEN_FILE"], "a", encoding="utf-8") as seen:
        seen.write(f"offline={context.is_offline_mode()} tables_imported={'patternapp.tables' in sys.modules}\n")

from patternapp.base import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = engine_from_config(config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.",
                                poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
