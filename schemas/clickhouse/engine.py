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


class ClickHouse(Protocol):
    """Access to one ClickHouse database.

    SQL may use ``{db}`` for the database name and ``{name:Type}`` query parameters bound
    from ``params``; values are never formatted into SQL by callers. Every method may
    block on I/O and raises :class:`ClickHouseUnavailable` for transient failures; other
    exceptions mean the request itself is wrong.
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
