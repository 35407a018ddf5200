"""dbguard: a guardian around Alembic migrations."""

__version__ = "0.1.0"
