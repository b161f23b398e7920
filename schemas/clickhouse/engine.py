"""The one small interface every stage uses to talk to ClickHouse.

Implemented in ``sinks/engines.py`` (clickhouse-driver for a server, chDB embedded),
built from a URL by ``learnpulse/`` and handed to sinks and reporting.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


class ClickHouseUnavailable(Exception):
    """The engine could not be reached or refused a request for a transient reason.

    Callers retry with backoff; never a sign that the data is bad.
    """


class ClickHouseError(RuntimeError):
    """ClickHouse refused the request itself (syntax, types, missing table...).

    ``code`` is ClickHouse's error code (``system.errors``), or None when unknown.
    Retrying the same request gives the same error.
    """

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


# Error codes (ClickHouse src/Common/ErrorCodes.cpp) that mean "not now" rather than
# "never": the engines raise ClickHouseUnavailable for them, so writers retry.
TRANSIENT_CODES = frozenset(
    {
        159,  # TIMEOUT_EXCEEDED
        202,  # TOO_MANY_SIMULTANEOUS_QUERIES
        203,  # NO_FREE_CONNECTION
        209,  # SOCKET_TIMEOUT
        210,  # NETWORK_ERROR
        236,  # ABORTED
        241,  # MEMORY_LIMIT_EXCEEDED
        242,  # TABLE_IS_READ_ONLY (replica lost its keeper session)
        243,  # NOT_ENOUGH_SPACE
        252,  # TOO_MANY_PARTS (merges are behind: back off)
        319,  # UNKNOWN_STATUS_OF_INSERT
        394,  # QUERY_WAS_CANCELLED (server shutting down)
        425,  # SYSTEM_ERROR
        999,  # KEEPER_EXCEPTION
    }
)
# "Already exists" codes: a concurrent migrator created the object first.
ALREADY_EXISTS_CODES = frozenset({57, 82})  # TABLE_ALREADY_EXISTS, DATABASE_ALREADY_EXISTS


class ClickHouse(Protocol):
    """Access to one ClickHouse database.

    SQL may use ``{db}`` for the database name and ``{name:Type}`` query parameters bound
    from ``params``; values are never formatted into SQL by callers. Every method may
    block on I/O and raises :class:`ClickHouseUnavailable` for transient failures and
    :class:`ClickHouseError` when the request itself is wrong.
    """

    database: str

    def server_version(self) -> tuple[int, ...]:
        """Version of the engine, e.g. ``(26, 9, 2)``; DDL is rendered for it."""
        ...

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        """Run a statement that returns nothing (DDL, ALTER, DELETE)."""
        ...

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Run a SELECT and return its rows as tuples."""
        ...

    def insert(
        self, table: str, columns: Sequence[str], data: Sequence[Sequence[Any]], dedup_token: str | None = None
    ) -> int:
        """Insert one block, given column-wise (``data[i]`` is the column ``columns[i]``).

        The block is inserted whole or not at all; returns the number of rows. With
        ``dedup_token``, a second insert with the same token into a table with a
        deduplication window is dropped by ClickHouse (``insert_deduplication_token``: a
        retry of an insert whose outcome was not known). Servers before 22.2 ignore it.
        """
        ...

    def close(self) -> None:
        """Release connections; the engine is unusable afterwards."""
        ...


# -- read-only queries on their own connection (research SQL) ---------------------------
@dataclass(frozen=True)
class QueryLimits:
    """Limits every research query runs under (ClickHouse settings of the same meaning)."""

    max_execution_s: float = 30
    max_memory_bytes: int = 1_000_000_000
    max_result_rows: int = 10_000
    max_result_bytes: int = 8 * 1024 * 1024
    max_rows_to_read: int = 2_000_000_000
    # Threads per query: a research query never takes every core from the sinks.
    max_threads: int = 1

    def settings(self) -> dict[str, Any]:
        """The ClickHouse settings; ``readonly`` last, since it forbids changing any after it."""
        return {
            "max_execution_time": max(1, int(round(self.max_execution_s))),
            "max_memory_usage": int(self.max_memory_bytes),
            # ClickHouse stops at a block boundary; the runner cuts to the exact count.
            "max_result_rows": int(self.max_result_rows) + 1,
            "max_result_bytes": int(self.max_result_bytes),
            "result_overflow_mode": "break",
            "max_rows_to_read": int(self.max_rows_to_read),
            "read_overflow_mode": "throw",
            "max_threads": int(self.max_threads),
            "readonly": 1,
        }


@dataclass
class LimitedResult:
    columns: list[str]
    types: list[str]
    rows: list[tuple[Any, ...]]
    # Why the rows were cut ("rows", "bytes"), or None when complete.
    truncated_by: str | None = None


class QueryCancelled(Exception):
    """The caller cancelled the query (client gone); it was stopped in the engine."""


class ReadonlyRunner(Protocol):
    """Runs read-only queries on a connection (chDB: handle) of its own, under fixed limits.

    Never shares the pipeline's connection: a long or failing query cannot block the sinks
    or the dashboard. Raises :class:`ClickHouseError` (with ClickHouse's code: 159 time
    limit, 241 memory, 158 rows to read, 164 read-only …), :class:`ClickHouseUnavailable`,
    or :class:`QueryCancelled` when ``cancel`` was set.
    """

    limits: QueryLimits

    def run(self, sql: str, cancel: Any) -> LimitedResult: ...

    def close(self) -> None: ...
