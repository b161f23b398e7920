"""The one small interface every stage uses to talk to ClickHouse.

Implemented in ``sinks/engines.py`` (clickhouse-driver for a server, chDB embedded),
built from a URL by ``learnpulse/`` and handed to sinks and reporting.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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

    def insert(self, table: str, columns: Sequence[str], data: Sequence[Sequence[Any]]) -> int:
        """Insert one block, given column-wise (``data[i]`` is the column ``columns[i]``).

        The block is inserted whole or not at all; returns the number of rows.
        """
        ...

    def close(self) -> None:
        """Release connections; the engine is unusable afterwards."""
        ...
