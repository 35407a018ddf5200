"""Private MariaDB and PostgreSQL servers, for the tests that must change or watch what is
server-wide (a plugin that is absent, a global read lock, the scratch databases a replay sweeps away),
so the shared servers stay as every other test, running in parallel, expects them.

``mariadb-install-db``/``mariadbd`` and ``initdb``/``postgres`` come with the server packages; an
instance listens on a Unix socket only (no port to collide on), lives in a temporary folder, runs as a
child that dies with the test process, and is removed when the session ends.
"""

from __future__ import annotations

import contextlib
import glob
import os
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
    data, socket, tmp = folder / "data", folder / "sock", folder / "tmp"
    # A temporary folder of its own: two bootstraps at once (two test workers) collide on the
    # temporary tables they both create in /tmp.
    tmp.mkdir()
    proc = None
    try:
        installed = subprocess.run([install, "--no-defaults", f"--datadir={data}", f"--tmpdir={tmp}", "--user=root",
                                    "--auth-root-authentication-method=normal", "--skip-test-db"],
                                   check=False, capture_output=True, text=True, timeout=START_TIMEOUT_S)
        if installed.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed: {(installed.stdout + installed.stderr)[-2000:]}")
        proc = subprocess.Popen(_dies_with_us(
            [server, "--no-defaults", f"--datadir={data}", f"--tmpdir={tmp}", f"--socket={socket}", "--skip-networking",
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


def postgres_binaries() -> Path | None:
    """The folder of ``initdb`` and ``postgres`` (Debian keeps them off PATH), newest version first."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if found:
        return Path(found[0]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@contextlib.contextmanager
def private_postgres() -> Iterator[str]:
    """Start a PostgreSQL cluster of its own (as the ``postgres`` user when run as root, since the
    server refuses root); yield its admin URL (postgres, trust, database ``postgres``)."""
    binaries = postgres_binaries()
    if binaries is None:
        raise RuntimeError("initdb and postgres are not installed")
    folder = Path(tempfile.mkdtemp(prefix="dbg-pg-"))
    as_owner: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
        as_owner = ["--reuid", "postgres", "--regid", "postgres", "--init-groups"]
    setpriv = shutil.which("setpriv")
    if as_owner and setpriv is None:
        raise RuntimeError("running as root needs setpriv (util-linux) to start PostgreSQL as postgres")
    data = folder / "data"
    proc = None
    try:
        initdb = subprocess.run([*([setpriv, *as_owner, "--"] if as_owner else []), str(binaries / "initdb"), "-D",
                                 str(data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"],
                                check=False, capture_output=True, text=True, timeout=START_TIMEOUT_S)
        if initdb.returncode != 0:
            raise RuntimeError(f"initdb failed: {(initdb.stdout + initdb.stderr)[-2000:]}")
        server = [str(binaries / "postgres"), "-D", str(data), "-k", str(folder), "-c", "listen_addresses=",
                  "-c", "fsync=off", "-c", "max_prepared_transactions=10"]
        if setpriv is not None:
            server = [setpriv, *as_owner, "--pdeathsig", "KILL", "--", *server]
        with open(folder / "server.log", "wb") as log:
            proc = subprocess.Popen(server, stdout=log, stderr=subprocess.STDOUT)
        url = f"postgresql+psycopg://postgres@/postgres?host={folder}"

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"the private PostgreSQL exited: {(folder / 'server.log').read_text()[-2000:]}")
            engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
            try:
                with engine.connect() as conn:
                    conn.exec_driver_sql("SELECT 1")
                return True
            except sa.exc.DBAPIError:
                return False
            finally:
                engine.dispose()

        wait_for(ready, timeout=START_TIMEOUT_S, interval=0.05, message="the private PostgreSQL never answered")
        yield url
    finally:
        if proc is not None:
            proc.terminate()  # smart shutdown would wait for clients; SIGTERM is "fast"
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(folder, ignore_errors=True)
