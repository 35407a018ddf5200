"""A snapshot file written by ``dbguard snapshot``, read back as its checked document."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dbguard.core.schema import check_document, from_dict
from dbguard.errors import ConfigError


def snapshot_document(path: str | Path) -> dict[str, Any]:
    """A snapshot file as its document (plain JSON data, checked): objects are built later, only
    for the tables that differ from the live ones."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read snapshot {path}: {exc.strerror or exc}") from None
    try:
        doc = check_document(json.loads(text))
        from_dict(doc, ())  # the shape of everything but the tables
    except (ValueError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return doc
