"""dbguard: a guardian around Alembic migrations."""

__version__ = "0.1.0"

# Whether this process is dbguard's own (the CLI, a fleet worker), which ends soon after its
# command: only then may dbguard gc.freeze() the heap. Inside a host application that calls
# dbguard.api, objects frozen would never be collected again, whatever becomes of them.
OWNS_PROCESS = False
