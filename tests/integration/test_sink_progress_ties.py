"""Two progress rows of one partition written in the same instant: the reader takes the further one.

On clickhouse-server 18.16 ``updated`` keeps whole seconds (schemas/clickhouse/ddl.py), and a
sink publishes after a commit and again on its interval, often within one second. ``argMax``
over tied versions returned either row, so Consistent-Through went back to "never caught up"
(None) or to an older time at random (seen as a flaky dashboard comparison in
test_clickhouse_shards.py).
"""

from __future__ import annotations

import pytest

from reporting.progress import consistent_through
from schemas.clickhouse import tables as T
from schemas.clickhouse.migrate import migrate
from sinks.engines import engine_from_url
from sinks.rows import ms_to_datetime

pytestmark = [pytest.mark.clickhouse_server]

UPDATED_MS = 1_780_000_000_000  # a whole second: the same value on every server
CAUGHT_MS = UPDATED_MS - 500


def _row(partition: int, committed: int, caught_ms: int) -> list:
    return ["statements", "t.xapi.statements", partition, 2, committed, committed, ms_to_datetime(caught_ms),
            ms_to_datetime(caught_ms), ms_to_datetime(UPDATED_MS), caught_ms]  # fmt: skip


def test_consistent_through_takes_the_furthest_of_rows_written_in_the_same_instant(clickhouse_url):
    ch = engine_from_url(clickhouse_url)
    try:
        migrate(ch)
        table = f"{ch.database}.{T.SINK_PROGRESS}"
        # The further row first, the one before the commit second: the first of tied rows won.
        for rows in ([_row(0, 6, CAUGHT_MS), _row(1, 3, CAUGHT_MS)], [_row(0, 0, 0), _row(1, 0, 0)]):
            ch.insert(table, T.PROGRESS_COLUMNS, [list(c) for c in zip(*rows)])
        through = consistent_through(ch)
        assert through is not None
        assert int(through.timestamp()) == CAUGHT_MS // 1000
    finally:
        ch.close()


def test_consistent_through_keeps_milliseconds_on_every_server(clickhouse_url):
    """18.16 keeps whole seconds in ``caught_up_at``: Consistent-Through fell up to a second
    behind what the sink had written (half a second on average), on every answer."""
    ch = engine_from_url(clickhouse_url)
    try:
        migrate(ch)
        table = f"{ch.database}.{T.SINK_PROGRESS}"
        rows = [_row(0, 6, CAUGHT_MS + 250), _row(1, 3, CAUGHT_MS + 120)]
        ch.insert(table, T.PROGRESS_COLUMNS, [list(c) for c in zip(*rows)])
        through = consistent_through(ch)
        assert through is not None
        assert round(through.timestamp() * 1000) == CAUGHT_MS + 120
    finally:
        ch.close()
