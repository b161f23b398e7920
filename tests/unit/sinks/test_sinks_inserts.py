"""A sink's inserts in waves (sinks/inserts.py): the fixed tables keep their place, the tables
between them go side by side over the extra connections, outcomes are kept per table."""

from __future__ import annotations

import threading

import pytest

from schemas.clickhouse.engine import ClickHouseUnavailable
from sinks.inserts import TableInserts

from .fakes import FakeEngine

TABLES = ("raw", "a", "b", "c", "ids")
COLUMNS = {t: ("k",) for t in TABLES}
ROWS = {t: [(f"{t}-row",)] for t in TABLES}


class Recorded(FakeEngine):
    """Every engine appends to one shared log when an insert starts and ends."""

    def __init__(self, log: list, barrier: threading.Barrier | None = None, fail: set | None = None) -> None:
        super().__init__()
        self.log = log
        self.barrier = barrier
        self.fail = fail or set()

    def insert(self, table, columns, data, dedup_token=None) -> int:
        name = table.split(".")[-1]
        self.log.append(("start", name))
        if name in self.fail:
            self.fail.discard(name)
            self.log.append(("failed", name))
            raise ClickHouseUnavailable("connection reset")
        if self.barrier is not None and name in ("a", "b"):
            self.barrier.wait(10)  # only returns once the other connection is inside its insert too
        written = super().insert(table, columns, data, dedup_token)
        self.log.append(("end", name))
        return written


def _inserts(main, extra=()) -> TableInserts:
    return TableInserts("statements", main, COLUMNS, TABLES, side_by_side=("a", "b", "c"), extra=extra)


def test_waves_keep_the_fixed_tables_alone_and_group_consecutive_side_by_side_ones():
    ins = TableInserts("s", FakeEngine(), COLUMNS, ("raw", "a", "b", "ids", "c"), side_by_side=("a", "b", "c"))
    assert ins.waves(ROWS) == [["raw"], ["a", "b"], ["ids"], ["c"]]
    assert _inserts(FakeEngine()).waves(ROWS) == [["raw"], ["a", "b", "c"], ["ids"]]


def test_a_wave_runs_side_by_side_and_the_next_table_waits_for_all_of_it():
    log: list = []
    barrier = threading.Barrier(2)
    main, other = Recorded(log, barrier), Recorded(log, barrier)
    ins = _inserts(main, extra=(other,))
    inserted: set[str] = set()
    try:
        ins.insert_all(ROWS, "digest", inserted, set(), None)
    finally:
        ins.close()
    assert inserted == set(TABLES)
    assert not barrier.broken, "a and b were not inside their inserts at the same time"
    order = list(log)
    assert order[:2] == [("start", "raw"), ("end", "raw")]
    assert order[-2:] == [("start", "ids"), ("end", "ids")]
    assert {t for _, t in order[2:-2]} == {"a", "b", "c"}
    assert other.inserts and other.closed


def test_without_extra_connections_every_table_goes_in_order_on_the_one():
    log: list = []
    ins = _inserts(Recorded(log))
    ins.insert_all(ROWS, "digest", set(), set(), None)
    assert [t for kind, t in log if kind == "start"] == list(TABLES)


def test_a_failed_table_of_a_wave_is_uncertain_the_others_written_and_the_retry_writes_only_it():
    log: list = []
    main, other = Recorded(log), Recorded(log, fail={"b"})
    ins = _inserts(main, extra=(other,))
    inserted: set[str] = set()
    uncertain: set[str] = set()
    with pytest.raises(ClickHouseUnavailable):
        ins.insert_all(ROWS, "digest", inserted, uncertain, None)
    assert inserted == {"raw", "a", "c"} and uncertain == {"b"}
    assert ("start", "ids") not in log, "the table after the wave waits for the wave to succeed"
    log.clear()
    retried: list[str] = []

    def retry_filter(table, rows):
        retried.append(table)
        return rows

    ins.insert_all(ROWS, "digest", inserted, uncertain, retry_filter)
    ins.close()
    assert [t for kind, t in log if kind == "start"] == ["b", "ids"]
    assert retried == ["b"] and inserted == set(TABLES) and uncertain == set()


def test_a_connection_failing_otherwise_ends_the_wave_with_its_error_and_nothing_after_it():
    class Broken(Recorded):
        def insert(self, table, columns, data, dedup_token=None) -> int:
            raise TypeError("a driver fault")

    log: list = []
    ins = _inserts(Recorded(log), extra=(Broken(log),))
    inserted: set[str] = set()
    with pytest.raises(TypeError):
        ins.insert_all(ROWS, "digest", inserted, set(), None)
    assert "b" not in inserted and ("start", "ids") not in log
