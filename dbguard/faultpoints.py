"""Named points where a process under test stops itself, so that a fault (a signal, a cut
connection, a rollback from elsewhere) is delivered exactly there and nowhere else.

The fault-injection tests set one environment variable, read here and nowhere else:
``DBGUARD_TEST_PAUSE_AT=<point>`` or ``<point>:<detail>`` (say ``before-step:r2`` or
``statement:r2#2``, the second statement of step r2). At that point the process sends itself
SIGSTOP; the test sees it stopped (``/proc/<pid>/stat`` says ``T``), delivers its fault, and sends
SIGCONT if the process is to go on. Unset, which it always is outside those tests, a point costs one
comparison with None.

Points: ``before-step:<revision>`` (a step is about to start, its row not written yet),
``statement:<revision>#<n>`` (the n-th statement of a step is about to be sent: between a step's
DDL operations), ``ledger-write:<what>`` (a ledger write is about to be sent: ``step-start``,
``step-end``, ``run-end``).
"""

from __future__ import annotations

import os
import signal

ENV = "DBGUARD_TEST_PAUSE_AT"
_AT = os.environ.get(ENV) or None


def reached(point: str, detail: str | None = None) -> None:
    """Stop here if the test asked for this point (with this detail, when it named one)."""
    if _AT is None:
        return
    name, _, wanted = _AT.partition(":")
    if name == point and (not wanted or wanted == detail):
        os.kill(os.getpid(), signal.SIGSTOP)
