"""Small private files in the learnpulse home: locked read-modify-write, atomic 0600 writes, change stamps.

Shared by the stores of LRS credentials, researcher tokens and operator accounts: each keeps
one JSON file that a CLI command rewrites while a serving process reads it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class Locked:
    """Exclusive lock on ``<file>.lock`` so two writers (e.g. two ``… add``) never lose an entry."""

    def __init__(self, path: Path) -> None:
        self.lock_path = path.with_name(path.name + ".lock")

    def __enter__(self) -> None:
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.lock_path, "w")
        fcntl.flock(self._f, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self._f, fcntl.LOCK_UN)
        self._f.close()


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temp file + rename), mode 0600 from the start."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def file_stamp(path: Path) -> tuple[int, int, int] | None:
    """What changes when ``path`` is rewritten (inode, mtime, size); None when it does not exist."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)
