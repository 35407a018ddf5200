"""Sending notification events: an HTTP POST of JSON to each ``notify_url``, with the standard library.

A notification is news about facts already recorded, never part of them: one that cannot be sent
comes back as a warning line for the command's result, and nothing here raises. Each URL gets its own
thread and a time budget (``notify_timeout_s`` per attempt, ``notify_retries`` more attempts on no
answer or a 5xx, short pauses between), so a hanging endpoint delays the command by at most that
budget, however many URLs and events there are. Every string of a body is masked before it leaves.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from dbguard import __version__
from dbguard.core import notify as decide
from dbguard.masking import Masker, active
from dbguard.settings import Settings

# Past its budget a delivery's thread is no longer waited for (it is a daemon: it never holds the
# process); this margin covers the thread's own start and a reply that is being read.
_JOIN_MARGIN_S = 0.5


def settings_problem(settings: Settings) -> str | None:
    """What is wrong with the notification settings (the URLs left out: a webhook's address is its
    secret), checked when something is to be sent."""
    import math

    if settings.notify_format not in ("json", "slack"):
        return f"notify_format must be json or slack, got {settings.notify_format!r}"
    if any(not url.lower().startswith(("http://", "https://")) for url in settings.notify_url):
        return "notify_url must be http:// or https:// URLs, and one of them is not"
    if not (math.isfinite(settings.notify_timeout_s) and settings.notify_timeout_s > 0):
        return f"notify_timeout_s must be a number of seconds above 0, got {settings.notify_timeout_s}"
    if not 0 <= settings.notify_retries <= 5:
        return f"notify_retries must be 0 to 5 (a notification never holds a run up), got {settings.notify_retries}"
    return None


def announce(settings: Settings, build: Callable[[], Sequence[Mapping[str, Any]]],
             secrets: Iterable[str | None] = ()) -> tuple[str, ...]:
    """``send`` the events ``build`` makes; a bug in making or sending them is one more warning, never
    an exception out of a command whose outcome is already recorded."""
    if not settings.notify_url:
        return ()
    secrets = list(secrets)
    problem = settings_problem(settings)
    if problem:
        return _recorded(settings, (f"notifications not sent: {problem}",), secrets)
    try:
        return _recorded(settings, send(settings, build(), secrets), secrets)
    except Exception as exc:  # noqa: BLE001 - said as a warning; the run's outcome stands
        said = Masker(secrets, settings.mask_patterns)(f"notifications not sent: {type(exc).__name__}: {exc}")
        return _recorded(settings, (said,), secrets)


FILE_NAME = "notifications.jsonl"


def record_path(settings: Settings) -> Any:
    """Where notifications that could not be sent are kept: beside the kill audit's local file
    (``audit_file``; by default ``$XDG_STATE_HOME/dbguard/``)."""
    from dbguard.db.audit_file import audit_path

    return audit_path(settings.audit_file, settings.config_path).parent / FILE_NAME


def _recorded(settings: Settings, failures: Sequence[str], secrets: Iterable[str | None]) -> tuple[str, ...]:
    """``failures``, each also kept as a JSON line of the local record (masked, append-only), so that
    what the on-call never received can be found after the terminal is gone; the warnings say where."""
    if not failures:
        return ()
    from dbguard.db.audit_file import AuditFile
    from dbguard.db.ledger import utcnow

    try:
        path = record_path(settings)
        file = AuditFile(path, Masker([*active().known, *secrets], [*active().patterns, *settings.mask_patterns]))
        for failure in failures:
            file.append({"at": utcnow(), "application": settings.application, "failure": failure})
    except Exception as exc:  # noqa: BLE001 - a record that cannot be written is said, never raised
        return (*failures, f"notification failures not recorded locally: {type(exc).__name__}: {exc}")
    return tuple(f"{failure}; recorded in {path}" for failure in failures)


def send(settings: Settings, events: Sequence[Mapping[str, Any]], secrets: Iterable[str | None] = ()) -> tuple[str, ...]:
    """POST ``events`` (dbguard.core.notify.body dicts) to every notify_url; the warnings of those
    that could not be sent (none when nothing is configured or all went through)."""
    if not settings.notify_url or not events:
        return ()
    current = active()
    masker = Masker([*current.known, *secrets], [*current.patterns, *settings.mask_patterns])
    masked = [_masked(dict(e), masker) for e in events]
    payloads = [(str(e["event"]), _encode(e, settings.notify_format)) for e in masked]
    budget = decide.budget_s(settings.notify_timeout_s, settings.notify_retries)
    failures: list[str] = []
    lock = threading.Lock()
    threads = []
    for url in dict.fromkeys(settings.notify_url):
        def deliver(url: str = url) -> None:
            try:
                found = _deliver(url, payloads, settings.notify_timeout_s, settings.notify_retries, budget)
            except Exception as exc:  # noqa: BLE001 - a thread's exception would be lost (printed, not said)
                found = [f"notification to {where(url)} not sent: {type(exc).__name__}: {exc}"]
            with lock:
                failures.extend(found)

        thread = threading.Thread(target=deliver, name="dbguard-notify", daemon=True)
        thread.start()
        threads.append((url, thread))
    for url, thread in threads:
        thread.join(budget + _JOIN_MARGIN_S)
        if thread.is_alive():
            with lock:
                failures.append(f"notification to {where(url)} not sent: no answer within {budget:g} s")
    with lock:
        return tuple(masker(f) for f in failures)


def where(url: str) -> str:
    """The URL as a warning may show it: scheme and host only (a webhook's path is its secret)."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}{f':{parts.port}' if parts.port else ''}"


def _masked(value: Any, masker: Masker) -> Any:
    if isinstance(value, str):
        return masker(value)
    if isinstance(value, dict):
        return {masker(str(k)): _masked(v, masker) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_masked(v, masker) for v in value]
    return value


def _encode(event: Mapping[str, Any], fmt: str) -> bytes:
    document = decide.slack_body(event) if fmt == "slack" else event
    return json.dumps(document, default=str).encode()


def _deliver(url: str, payloads: list[tuple[str, bytes]], timeout_s: float, retries: int,
             budget_s: float) -> list[str]:
    """Each payload in turn, within one budget for them all; the lines of those not sent."""
    deadline = time.monotonic() + budget_s
    failed = []
    for name, payload in payloads:
        why = _post_with_retries(url, payload, timeout_s, retries, deadline)
        if why is not None:
            failed.append(f"notification {name} to {where(url)} not sent: {why}")
    return failed


def _post_with_retries(url: str, payload: bytes, timeout_s: float, retries: int, deadline: float) -> str | None:
    """None when the endpoint took it (2xx), else why not."""
    attempts = 0
    why = "no time left of the notification budget"
    while attempts <= retries:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        attempts += 1
        status, detail = _post(url, payload, min(timeout_s, left))
        if status is not None and 200 <= status < 300:
            return None
        why = f"{detail} ({attempts} attempt{'s' if attempts > 1 else ''})"
        if not decide.retryable(status) or attempts > retries:
            break
        pause = decide.backoff_s(attempts)
        if time.monotonic() + pause >= deadline:
            break
        time.sleep(pause)
    return why


def _post(url: str, payload: bytes, timeout_s: float) -> tuple[int | None, str]:
    request = urllib.request.Request(url, data=payload, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": f"dbguard/{__version__}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return exc.code, f"HTTP {exc.code}"
    except urllib.error.URLError as exc:
        reason = exc.reason
        return None, f"no answer within {round(timeout_s, 1):g} s" if isinstance(reason, TimeoutError) else str(reason)
    except TimeoutError:
        return None, f"no answer within {round(timeout_s, 1):g} s"
    except (OSError, http.client.HTTPException) as exc:
        return None, f"{type(exc).__name__}: {exc}"
