"""Researcher tokens for research SQL (``POST /api/sql``): stored as SHA-256, never in clear.

``learnpulse researchers add NAME`` prints a random 256-bit token once; the file
(``<home>/researchers.json``, mode 0600, atomic writes under a lock) keeps only its SHA-256.
A token of that entropy needs no slow hash: nobody can guess one, so a fast digest compared
in constant time is enough. The research role is the only one a token gets.

The process that serves ``/api/sql`` also writes a token of its own, for this machine's
``learnpulse sql`` (``<home>/sql-owner.token``, 0600): who can read that file can read
the chDB files themselves.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .errors import UserError
from .homefiles import Locked, file_stamp, write_private

TOKEN_PREFIX = "lpr_"
OWNER_TOKEN_FILE = "sql-owner.token"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}\Z")


@dataclass(frozen=True)
class Researcher:
    name: str
    token_sha256: str
    created: str


def researchers_path(home: Path) -> Path:
    return home / "researchers.json"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def _load(path: Path) -> dict[str, Researcher]:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        raise UserError(f"researchers file {path} is unreadable: {err}") from err
    return {r["name"]: Researcher(r["name"], r["token_sha256"], r.get("created", "")) for r in doc.get("researchers", [])}


def _dump(path: Path, researchers: dict[str, Researcher]) -> None:
    doc = {"researchers": [r.__dict__ for r in sorted(researchers.values(), key=lambda r: r.name)]}
    write_private(path, json.dumps(doc, indent=2) + "\n")


def add_researcher(path: Path, name: str) -> str:
    """Create (or replace) ``name``'s token; returns the token, shown once."""
    if not _NAME.match(name):
        raise UserError(f"invalid researcher name {name!r} (allowed: {_NAME.pattern})")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with Locked(path):
        found = _load(path)
        found[name] = Researcher(name, _digest(token), datetime.now(UTC).isoformat(timespec="seconds"))
        _dump(path, found)
    return token


def remove_researcher(path: Path, name: str) -> bool:
    with Locked(path):
        found = _load(path)
        if found.pop(name, None) is None:
            return False
        _dump(path, found)
    return True


def list_researchers(path: Path) -> list[Researcher]:
    return sorted(_load(path).values(), key=lambda r: r.name)


class ResearcherTokens:
    """An authenticator for ``/api/sql``: token → researcher name, re-reading the file when it changes."""

    def __init__(self, path: Path, reload_every_s: float = 2.0) -> None:
        self.path = path
        self.reload_every_s = reload_every_s
        self._by_digest: dict[str, str] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._checked = float("-inf")
        self._lock = threading.Lock()

    def _reload(self) -> None:
        now = time.monotonic()
        if now - self._checked < self.reload_every_s:
            return
        self._checked = now
        stamp = file_stamp(self.path)
        if stamp != self._stamp:
            self._by_digest = {r.token_sha256: r.name for r in _load(self.path).values()} if stamp else {}
            self._stamp = stamp

    def __call__(self, token: str) -> str | None:
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        with self._lock:
            self._reload()
            digest = _digest(token)
            for known, name in self._by_digest.items():
                if hmac.compare_digest(known, digest):
                    return f"researcher:{name}"
        return None


class OwnerToken:
    """The serving process's own token for local ``learnpulse sql`` (file 0600 in the home)."""

    def __init__(self, home: Path) -> None:
        self.path = home / OWNER_TOKEN_FILE
        self.token = TOKEN_PREFIX + "owner_" + secrets.token_urlsafe(32)
        write_private(self.path, self.token + "\n")

    def __call__(self, token: str) -> str | None:
        return "local:learnpulse-sql" if hmac.compare_digest(token.encode(), self.token.encode()) else None


def read_owner_token(home: Path) -> str | None:
    try:
        return (home / OWNER_TOKEN_FILE).read_text().strip() or None
    except OSError:
        return None
