"""Secrets this installation generates for itself, kept in ``LEARNPULSE_HOME`` (mode 0600).

No process uses a well-known secret silently: where the settings leave the pseudonym secret
at its published default, the first process creates a random one in the home directory,
says so in its log, and every later process with the same home uses the same one (a
different secret would give every learner a different pseudonym). The local ClickHouse
server's password is made the same way.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from .settings import DEFAULT_PSEUDONYM_SECRET, Settings

log = logging.getLogger("learnpulse.secrets")

PSEUDONYM_SECRET_FILE = "pseudonym-secret"
CLICKHOUSE_PASSWORD_FILE = "clickhouse-password"


def local_secret(home: Path, name: str) -> tuple[str, bool]:
    """The secret in ``<home>/<name>``, created (random, 0600) if missing; (value, created)."""
    path = home.resolve() / name
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # another process may be writing it right now
            text = path.read_text().strip()
            if text:
                return text, False
            import time

            time.sleep(0.1)
        raise RuntimeError(f"{path} is empty: remove it and start again") from None
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
        f.flush()
        os.fsync(f.fileno())
    return value, True


def pseudonym_key(settings: Settings) -> bytes:
    """The learner pseudonym HMAC key: the configured one, else this home's generated one."""
    configured = settings.pseudonym_secret.get_secret_value()
    if configured != DEFAULT_PSEUDONYM_SECRET:
        return configured.encode()
    value, created = local_secret(settings.home, PSEUDONYM_SECRET_FILE)
    if created:
        log.warning(
            "no pseudonym secret configured: created a random one in %s (mode 0600); keep it — another secret "
            "gives every learner another pseudonym. Set LEARNPULSE_PSEUDONYM_SECRET to choose one.",
            settings.home.resolve() / PSEUDONYM_SECRET_FILE,
        )
    return value.encode()
