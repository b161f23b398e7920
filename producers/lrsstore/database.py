"""One connection to the transactional store, by URL: ``sqlite:///path`` or ``postgresql://…``.

Both stores expose the same small surface: :meth:`Database.transaction` yields a cursor in
a transaction that is committed on exit and rolled back on error, with ``?`` placeholders
on both (rewritten to ``%s`` for PostgreSQL), so a store implementation writes its SQL once
where the dialects agree. Writes take the write lock at the start of the transaction
(SQLite ``BEGIN IMMEDIATE``; PostgreSQL row locks or ``ON CONFLICT`` in the statements), so
a read-check-write inside one transaction is a compare-and-set across processes.

Thread use: one :class:`Database` per thread is simplest; :meth:`Database.transaction`
serialises the threads sharing one instance.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

Dialect = Literal["sqlite", "postgresql"]

# Seconds a writer waits for another process's write lock before failing (SQLite).
SQLITE_BUSY_TIMEOUT_S = 30.0


class Cursor:
    """A DB-API cursor whose ``execute`` takes ``?`` placeholders on both dialects."""

    def __init__(self, raw: Any, dialect: Dialect) -> None:
        self._raw = raw
        self.dialect = dialect

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        self._raw.execute(sql if self.dialect == "sqlite" else sql.replace("?", "%s"), tuple(params))
        return self

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> Cursor:
        """One statement for many parameter rows, looped in the driver (SQLite: C; PostgreSQL: pipelined)."""
        if rows:
            self._raw.executemany(sql if self.dialect == "sqlite" else sql.replace("?", "%s"), rows)
        return self

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._raw.fetchone()

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._raw.fetchall()

    @property
    def rowcount(self) -> int:
        return self._raw.rowcount


class Database:
    """A connection to the store named by ``url``; schemas applied with :meth:`ensure`."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self._lock = threading.Lock()
        if parts.scheme == "sqlite":
            path = Path(parts.path)
            path.parent.mkdir(parents=True, exist_ok=True)
            # Autocommit mode: transactions are begun explicitly below.
            conn = sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            self.dialect: Dialect = "sqlite"
            self._conn: Any = conn
        elif parts.scheme in ("postgresql", "postgres"):
            import psycopg

            self.dialect = "postgresql"
            self._conn = psycopg.connect(url, autocommit=False)
        else:
            raise ValueError(f"transactional store URL must be sqlite:///path or postgresql://…, not {url!r}")

    @contextmanager
    def transaction(self, read_only: bool = False) -> Iterator[Cursor]:
        """``read_only``: a snapshot read that takes no write lock (SQLite ``BEGIN DEFERRED``)."""
        with self._lock:
            raw = self._conn.cursor()
            if self.dialect == "sqlite":
                raw.execute("BEGIN" if read_only else "BEGIN IMMEDIATE")
            try:
                yield Cursor(raw, self.dialect)
            except BaseException:
                self._conn.rollback() if self.dialect == "postgresql" else raw.execute("ROLLBACK")
                raise
            else:
                self._conn.commit() if self.dialect == "postgresql" else raw.execute("COMMIT")
            finally:
                raw.close()

    def ensure(self, ddl: Sequence[str]) -> None:
        """Apply ``CREATE … IF NOT EXISTS`` statements (each store owns its tables)."""
        with self.transaction() as cur:
            for statement in ddl:
                cur.execute(statement)

    def ensure_columns(self, table: str, columns: Sequence[tuple[str, str]]) -> None:
        """Add ``(name, type)`` columns a table made by an older version lacks."""
        with self.transaction() as cur:
            if self.dialect == "sqlite":
                have = {row[1] for row in cur.execute(f"PRAGMA table_info({table})").fetchall()}
                for name, sql_type in columns:
                    if name not in have:
                        cur.execute(f"ALTER TABLE {table} ADD COLUMN {name} {sql_type}")
            else:
                # Gateways may start together: IF NOT EXISTS, not a look then an ALTER.
                for name, sql_type in columns:
                    cur.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {name} {sql_type}")

    def close(self) -> None:
        # After any transaction in flight in another thread (a worker of the gateway's index
        # at shutdown): closing under it crashed the process (SQLite freed its statements).
        with self._lock:
            self._conn.close()
