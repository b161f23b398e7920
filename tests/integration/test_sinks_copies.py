"""The statements sink's look-ups (sinks/copies.py) against both real ClickHouse engines."""

from __future__ import annotations

from schemas.clickhouse import tables as T
from schemas.clickhouse.migrate import migrate
from sinks.copies import FirstCopyFilter
from sinks.engines import engine_from_url
from sinks.lrs_rows import LRS_AGENTS, LRS_STATEMENT_IDS
from sinks.rows import COLUMNS
from tests.unit.sinks.test_sinks_copies import FIRST, RETRY, offered, rows_of


def _insert(engine, table, rows):
    engine.insert(f"{engine.database}.{table}", COLUMNS[table], [list(c) for c in zip(*rows)])


def test_sinks_copies_look_ups_find_what_each_table_holds(clickhouse_url):
    engine = engine_from_url(clickhouse_url)
    try:
        migrate(engine)
        written, missing = offered(), offered()
        rows = rows_of((written, FIRST), (missing, FIRST))
        ids = COLUMNS[T.STATEMENTS_RAW].index("statement_id")
        # An insert of statements_raw landed for one statement only (a lost answer, a batch split by month).
        _insert(engine, T.STATEMENTS_RAW, [r for r in rows[T.STATEMENTS_RAW] if str(r[ids]) == written["id"]])
        _insert(engine, LRS_STATEMENT_IDS, [r for r in rows[LRS_STATEMENT_IDS] if str(r[1]) == written["id"]])
        copies = FirstCopyFilter(engine, COLUMNS)

        left = copies.not_in_table(T.STATEMENTS_RAW, rows[T.STATEMENTS_RAW])
        assert [str(r[ids]) for r in left] == [missing["id"]]
        assert copies.not_in_table(LRS_AGENTS, rows[LRS_AGENTS]) == rows[LRS_AGENTS]  # nothing there yet
        # The written statement is whole as far as the last table says: not inserted again.
        unwritten = copies.unwritten(rows)
        assert {str(r[ids]) for r in unwritten[T.STATEMENTS_RAW]} == {missing["id"]}
        # A retry accepted later is not the first copy: dropped everywhere.
        later = copies(rows_of((written, RETRY)))
        assert all(not later[t] for t in (T.STATEMENTS_RAW, T.STATEMENTS, LRS_STATEMENT_IDS))
    finally:
        engine.close()
