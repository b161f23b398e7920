"""Small durable files for producer cursors: atomic replace, fsynced, readable after any crash."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson


def write_json_atomic(path: Path, doc: Any) -> None:
    """Replace ``path`` with ``doc`` as JSON: written to a temp file, fsynced, renamed, directory fsynced.

    After a crash the file holds either the previous or the new document, never a mix.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_json(path: Path) -> Any | None:
    """The document in ``path``, or None if there is none."""
    try:
        return orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None
