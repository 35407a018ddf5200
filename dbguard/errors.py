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
