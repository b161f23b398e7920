"""What the ClickHouse server did over a step, from its own counters (``system.events``).

The server's CPU per 1,000 statements hardly moves with the rate (its work follows the
inserts, queries and merges a second, not statements): this says how many of each. Read
through the pipeline's own engine before and after a step, on the server path only (chDB
is read only by the process that owns it). ``MergeTreeDataWriterBlocks`` counts the parts
inserts wrote, every table and materialized view; each one is merged again later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# (event, what it counts), in the order printed.
EVENTS = (
    ("SelectQuery", "SELECT"),
    ("InsertQuery", "INSERT"),
    ("InsertedRows", "rows inserted"),
    ("MergeTreeDataWriterBlocks", "parts written"),
    ("Merge", "merges"),
    ("MergedRows", "rows merged"),
)
_EVENTS_SQL = "SELECT event, value FROM system.events WHERE event IN ({names})".format(
    names=", ".join(f"'{name}'" for name, _what in EVENTS)
)
_ACTIVE_PARTS_SQL = "SELECT count() FROM system.parts WHERE active AND database = currentDatabase()"


@dataclass(frozen=True)
class ServerWork:
    """Counters of ``EVENTS`` the server keeps (a server lists one once it counted something, and
    18.16 has no ``Merge``), and the database's active parts when read."""

    events: dict[str, float] = field(default_factory=dict)
    active_parts: int = 0

    def __sub__(self, earlier: ServerWork) -> ServerWork:
        # A counter first listed during the step started from 0.
        return ServerWork({n: v - earlier.events.get(n, 0.0) for n, v in self.events.items()}, self.active_parts)

    def per_s(self, event: str, seconds: float) -> float | None:
        """``event`` a second over ``seconds``; None if the server does not list it."""
        if event not in self.events or seconds <= 0:
            return None
        return self.events[event] / seconds


def read_server_work(ch: Any) -> ServerWork | None:
    """The counters now, through ``ch`` (a ``ClickHouse`` engine); None if the server did not answer."""
    from schemas.clickhouse.engine import ClickHouseError, ClickHouseUnavailable

    try:
        events = {str(name): float(value) for name, value in ch.query(_EVENTS_SQL)}
        ((parts,),) = ch.query(_ACTIVE_PARTS_SQL)
    except (ClickHouseError, ClickHouseUnavailable):
        return None
    return ServerWork(events, int(parts))


def server_work_summary(work: ServerWork, seconds: float) -> str:
    """One step's line: each counter a second, then the active parts at its end."""
    rates = ", ".join(f"{_rate(work.per_s(name, seconds))} {what}/s" for name, what in EVENTS)
    return f"{rates}; {work.active_parts:,} active parts at the end"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"
