"""A private MariaDB server for the tests that must change what is server-wide (a plugin that is
absent, a global read lock), so the shared server stays as every other test expects it.

``mariadb-install-db`` and ``mariadbd`` come with the MariaDB server package; the instance listens
on a Unix socket only (no port to collide on), lives in a temporary folder, runs as a child that
dies with the test process, and is removed when the session ends.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

from tests.projects import wait_for

START_TIMEOUT_S = 60


def mariadb_binaries() -> tuple[str, str] | None:
    install = shutil.which("mariadb-install-db")
    server = shutil.which("mariadbd") or next(
        (p for p in ("/usr/sbin/mariadbd", "/usr/libexec/mariadbd") if Path(p).exists()), None)
    return (install, server) if install and server else None


def _dies_with_us(argv: list[str]) -> list[str]:
    # A killed test run never leaves a server behind (util-linux's setpriv sets PR_SET_PDEATHSIG).
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--", *argv] if setpriv else argv


@contextlib.contextmanager
def private_mariadb() -> Iterator[str]:
    """Start a MariaDB server of its own; yield its admin URL (root, no password, database ``test``)."""
    binaries = mariadb_binaries()
    if binaries is None:
        raise RuntimeError("mariadb-install-db and mariadbd are not installed")
    install, server = binaries
    # Short: a Unix socket path must fit in 107 bytes.
    folder = Path(tempfile.mkdtemp(prefix="dbg-maria-"))
    data, socket = folder / "data", folder / "sock"
    proc = None
    try:
        subprocess.run([install, "--no-defaults", f"--datadir={data}", "--user=root",
                        "--auth-root-authentication-method=normal", "--skip-test-db"],
                       check=True, capture_output=True, timeout=START_TIMEOUT_S)
        proc = subprocess.Popen(_dies_with_us(
            [server, "--no-defaults", f"--datadir={data}", f"--socket={socket}", "--skip-networking",
             f"--pid-file={folder / 'pid'}", "--user=root", "--innodb-buffer-pool-size=16M",
             f"--log-error={folder / 'error.log'}"]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"mysql+pymysql://root@localhost/test?unix_socket={socket}"

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"the private MariaDB exited: {(folder / 'error.log').read_text()[-2000:]}")
            engine = sa.create_engine(url.replace("/test?", "/?"), poolclass=sa.pool.NullPool)
            try:
                with engine.connect() as conn:
                    conn.exec_driver_sql("CREATE DATABASE IF NOT EXISTS test")
                return True
            except sa.exc.DBAPIError:
                return False
            finally:
                engine.dispose()

        wait_for(ready, timeout=START_TIMEOUT_S, interval=0.05, message="the private MariaDB never answered")
        yield url
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(folder, ignore_errors=True)
