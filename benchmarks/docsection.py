"""What every benchmark shares: the machine it ran on, and its own section of docs/benchmarks.md."""

from __future__ import annotations

import datetime as dt
import os
import platform
from pathlib import Path

BENCHMARKS_MD = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def machine() -> str:
    """Date, cores, CPU model, OS and Python, for the line under each table."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} cores ({cpu}); "
            f"{platform.system()} {platform.release()}; Python {platform.python_version()}")


def server_version(url: str) -> str:
    """What the server at ``url`` says it is (``SELECT version()``), without its build details."""
    import sqlalchemy as sa

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return str(conn.exec_driver_sql("SELECT version()").scalar()).split(" on ")[0].split(",")[0]
    finally:
        engine.dispose()


def write_section(name: str, text: str, path: Path = BENCHMARKS_MD) -> None:
    """Insert or replace the section between ``<!-- name:start -->`` and ``<!-- name:end -->`` only.

    The file is read right before writing: other benchmarks own the other sections.
    """
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    body = path.read_text() if path.exists() else "# Benchmarks\n"
    section = f"{start}\n{text.strip()}\n{end}"
    if start in body and end in body:
        head, rest = body.split(start, 1)
        body = head + section + rest.split(end, 1)[1]
    else:
        body = body.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(body)
