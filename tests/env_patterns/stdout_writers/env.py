"""env.py of a project whose own logging writes to stdout (airflow's does: its handler is bound to
the stdout of the moment it is configured) and whose migrations print their progress: everything
here lands on stdout under plain Alembic."""
import logging
import os
import sys

import sqlalchemy as sa
from alembic import context
from sqlalchemy import MetaData, engine_from_config, pool

# Bound now, to the stream stdout is when env.py runs (a project's logging set up on import).
handler = logging.StreamHandler(sys.stdout)
handler.setFormatter(logging.Formatter("PROJECT-LOG %(message)s"))
log = logging.getLogger("project.migrations")
log.handlers[:] = [handler]
log.setLevel(logging.INFO)
log.propagate = False

config = context.config
target_metadata = MetaData()
sa.Table("items", target_metadata,
         sa.Column("id", sa.Integer, primary_key=True),
         sa.Column("name", sa.String(50), nullable=False),
         sa.Column("note", sa.String(20)))


def run_migrations_online() -> None:
    log.info("env.py starts")
    os.write(1, b"PROJECT-FD1 written to file descriptor 1\n")  # as C code or a child process would
    engine = engine_from_config(config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.",
                                poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()


def run_migrations_offline() -> None:
    log.info("env.py starts offline")
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
