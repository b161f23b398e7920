"""Apply migrations through the :class:`ClickHouse` interface; record them in a table."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime, timezone

from .ddl import render
from .engine import ClickHouse
from .migrations import Migration, all_migrations

_LEDGER = """
CREATE TABLE IF NOT EXISTS {db}.schema_migrations (
    id String,
    checksum String,
    applied_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree
ORDER BY id
"""


def _checksum(m: Migration) -> str:
    return hashlib.sha256("\n;\n".join(m.forwards).encode()).hexdigest()[:16]


def applied(ch: ClickHouse) -> set[str]:
    return {row[0] for row in ch.query(f"SELECT DISTINCT id FROM {ch.database}.schema_migrations")}


def migrate(ch: ClickHouse, log: Callable[[str], None] = lambda _m: None) -> list[str]:
    """Apply every pending migration in order; returns the ids applied now.

    Safe to run twice or concurrently: each statement is idempotent and the ledger is a
    ReplacingMergeTree keyed by id, so a double record collapses.
    """
    version = ch.server_version()
    ch.execute(f"CREATE DATABASE IF NOT EXISTS {ch.database}")
    ch.execute(render(_LEDGER, version, ch.database))
    done = applied(ch)
    now_applied = []
    for m in all_migrations():
        if m.id in done:
            continue
        log(f"applying {m.id}")
        for sql in m.forwards:
            ch.execute(render(sql, version, ch.database))
        ch.insert(
            f"{ch.database}.schema_migrations",
            ["id", "checksum", "applied_at"],
            [[m.id], [_checksum(m)], [_now()]],
        )
        now_applied.append(m.id)
    return now_applied


def _now() -> datetime:
    # Naive UTC: both drivers read naive datetimes as the column's time zone (UTC).
    return datetime.now(timezone.utc).replace(tzinfo=None)
