"""Stock Alembic projects for tests, and a condition poller.

``make_project`` runs the real ``alembic init`` so dbguard is always tested
against the env.py users actually have, never a hand-written imitation.
"""

from __future__ import annotations

import inspect
import io
import re
import textwrap
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from alembic import command
from alembic.config import Config

from tests.dbs import url_string

T = TypeVar("T")

# (revision_id, body) or (revision_id, upgrade_body, downgrade_body); see make_project.
RevisionSpec = tuple[str, str] | tuple[str, str, str]

_REVISION_HEADER = '''\
"""{rev_id}

Revision ID: {rev_id}
Revises: {down_rev_text}
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = {rev_id!r}
down_revision = {down_rev!r}
branch_labels = None
depends_on = None
'''


def _indent_body(body: str) -> str:
    body = textwrap.dedent(body).strip("\n")
    if not body.strip():
        body = "pass"
    return textwrap.indent(body, "    ")


def render_revision(
    rev_id: str,
    down_rev: str | None,
    upgrade_body: str = "pass",
    downgrade_body: str = "pass",
) -> str:
    """The source of a revision file whose upgrade()/downgrade() run the given bodies.

    Bodies are plain statements (dedented here), e.g.
    ``"op.create_table('t', sa.Column('id', sa.Integer, primary_key=True))"``;
    ``op`` and ``sa`` are imported.
    """
    header = _REVISION_HEADER.format(rev_id=rev_id, down_rev=down_rev, down_rev_text=down_rev or "")
    return (
        f"{header}\n\n"
        f"def upgrade() -> None:\n{_indent_body(upgrade_body)}\n\n\n"
        f"def downgrade() -> None:\n{_indent_body(downgrade_body)}\n"
    )


def render_revision_module(rev_id: str, down_rev: str | None, body: str) -> str:
    """The source of a revision file from a module body.

    If ``body`` defines ``upgrade`` (and perhaps ``downgrade``, helpers, more
    imports) it is used as is, with a no-op ``downgrade`` added when missing;
    otherwise ``body`` is taken as the statements of ``upgrade()``.
    """
    if not re.search(r"^def upgrade\(", textwrap.dedent(body), re.MULTILINE):
        return render_revision(rev_id, down_rev, body)
    header = _REVISION_HEADER.format(rev_id=rev_id, down_rev=down_rev, down_rev_text=down_rev or "")
    module = textwrap.dedent(body).strip("\n") + "\n"
    if not re.search(r"^def downgrade\(", module, re.MULTILINE):
        module += "\n\ndef downgrade() -> None:\n    pass\n"
    return f"{header}\n\n{module}"


def write_revisions(
    versions_dir: Path, revisions: Sequence[RevisionSpec], down_rev: str | None = None
) -> list[Path]:
    """Write revision files into ``versions_dir``, each revising the one before it.

    The first one revises ``down_rev`` (default: base), so a test can append
    revisions to an existing project later.
    """
    paths = []
    for spec in revisions:
        if len(spec) == 3:
            rev_id, upgrade_body, downgrade_body = spec
            source = render_revision(rev_id, down_rev, upgrade_body, downgrade_body)
        elif len(spec) == 2:
            rev_id, body = spec
            source = render_revision_module(rev_id, down_rev, body)
        else:
            raise ValueError(f"a revision is (id, body) or (id, upgrade, downgrade), not {spec!r}")
        path = versions_dir / f"{rev_id}.py"
        path.write_text(source)
        paths.append(path)
        down_rev = rev_id
    return paths


def make_project(
    tmp_path: Path,
    url: str,
    revisions: Sequence[RevisionSpec] | None = None,
    template: str = "generic",
    name: str = "project",
) -> Path:
    """Create a stock Alembic project under ``tmp_path/name`` and return its alembic.ini.

    Runs the real ``alembic init`` with ``template`` (generic, async, pyproject,
    ...), points ``sqlalchemy.url`` at ``url`` and writes ``revisions`` into
    ``versions/`` as a straight chain from base. Each revision is either
    ``(revision_id, body)`` (see ``render_revision_module``) or
    ``(revision_id, upgrade_body, downgrade_body)`` (see ``render_revision``).
    """
    root = Path(tmp_path) / name
    root.mkdir(parents=True, exist_ok=True)
    ini_path = root / "alembic.ini"
    script_dir = root / "migrations"
    # The config files must be named up front: init renders alembic.ini (and,
    # for pyproject templates, pyproject.toml) at these paths.
    # toml_file came with Alembic 1.16's pyproject.toml configuration; older releases, which
    # dbguard supports too, take the ini file alone.
    toml = {"toml_file": root / "pyproject.toml"} if "toml_file" in inspect.signature(Config).parameters else {}
    config = Config(ini_path, stdout=io.StringIO(), **toml)
    command.init(config, str(script_dir), template=template)

    # init writes script_location as the absolute path it was given; make it
    # relative to the config file so a test can copy the project elsewhere.
    for config_file in (ini_path, root / "pyproject.toml"):
        if config_file.exists():
            text = config_file.read_text()
            text = text.replace(script_dir.as_posix(), "%(here)s/migrations")
            config_file.write_text(text)

    # ConfigParser interpolates %, which URL-encoded passwords contain.
    escaped = url_string(url).replace("%", "%%")
    ini_text, count = re.subn(
        r"^sqlalchemy\.url\s*=.*$",
        lambda _m: f"sqlalchemy.url = {escaped}",
        ini_path.read_text(),
        count=1,
        flags=re.MULTILINE,
    )
    if count != 1:
        raise AssertionError(f"no sqlalchemy.url line in the {template!r} template's alembic.ini")
    ini_path.write_text(ini_text)

    if revisions:
        write_revisions(script_dir / "versions", revisions)
    return ini_path


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str | Callable[[], str] = "condition not met",
) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that.

    Tests synchronise on observable conditions (a session shows up in the
    process list, a lock is granted) instead of sleeping for a guessed time.
    Raises AssertionError with ``message`` (a string, or a callable for a
    message describing the last state) after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"timed out after {timeout:g}s: {text}")
        time.sleep(interval)
