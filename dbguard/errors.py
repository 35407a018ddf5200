"""Exit codes and the few exceptions that carry data.

Verdicts (drift found, breaker open) are results with an exit code; an exception means
dbguard could not do its job, and its message is one line a user can act on.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    FINDINGS = 1
    USAGE = 2
    REFUSED = 3
    BUSY = 4
    RUN_FAILED = 5


def is_internal(exc: BaseException) -> bool:
    """An exception of dbguard's own making: not a refusal or a problem it reports, not the database's
    answer (SQLAlchemy's errors, the OS's), not a signal."""
    import sqlalchemy as sa

    return isinstance(exc, Exception) and not isinstance(exc, (DbguardError, sa.exc.SQLAlchemyError, OSError))


class DbguardError(Exception):
    """A problem dbguard reports as one line, with an exit code; never a traceback."""

    exit_code: ExitCode = ExitCode.USAGE

    def __init__(self, message: str, exit_code: ExitCode | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    @property
    def message(self) -> str:
        return str(self)


class ConfigError(DbguardError):
    """Missing or invalid configuration, or a bad argument."""


class ConnectError(DbguardError):
    """The target database could not be reached or refused the credentials."""


class PrivilegeError(DbguardError):
    """The database user lacks a right dbguard needs; the message names the grant."""


class TargetMismatchError(DbguardError):
    """env.py connected to another server or database than the one dbguard locked."""


class BudgetSpent(DbguardError):
    """The rollback's time budget ran out while a statement ran: the statement was cancelled."""

    exit_code = ExitCode.RUN_FAILED


class StatementParseError(DbguardError):
    """sqlglot could not parse a migration statement, or dbguard could not read the tree it made (how
    an unsupported sqlglot shows up): the risk rules cannot judge the statement, and a plan that
    passed it unjudged would say "safe" about SQL nobody read."""

    def __init__(self, detail: str, statement: str, revision: str | None = None) -> None:
        self.detail, self.statement, self.revision = detail, statement, revision
        where = f"revision {revision}: " if revision else ""
        super().__init__(f"{where}{detail}; the risk rules cannot judge it: rewrite it in a form sqlglot "
                         "reads, or set fail_on = none to run upgrades without the risk plan")

    def in_revision(self, revision: str) -> StatementParseError:
        """The same error, naming the revision the statement belongs to."""
        return StatementParseError(self.detail, self.statement, revision)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where SIGINT raises KeyboardInterrupt: a run stopped either way is recorded."""

    signal_name = "SIGTERM"


class Cancelled(KeyboardInterrupt):
    """A host's :func:`dbguard.api.cancel`, raised in the run's thread where SIGINT raises
    KeyboardInterrupt: the run stops and is recorded as interrupted."""

    signal_name = "dbguard.api.cancel()"
