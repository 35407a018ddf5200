"""The Alembic integration: the ``EnvironmentContext.configure`` hook a guarded run installs while it
runs (and removes after), step tracking, revision arithmetic and offline rendering (``bridge``)."""
