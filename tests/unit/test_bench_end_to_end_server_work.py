"""benchmarks/bench_end_to_end's reading of the ClickHouse server's counters (benchmarks/end_to_end/server_work.py)."""

from __future__ import annotations

from benchmarks.end_to_end.report import server_work_lines
from benchmarks.end_to_end.run import StepResult
from benchmarks.end_to_end.server_work import EVENTS, ServerWork, read_server_work, server_work_summary
from benchmarks.end_to_end.traffic import StepLoad
from schemas.clickhouse.engine import ClickHouseUnavailable


class FakeServer:
    def __init__(self, events: dict[str, int], parts: int, down: bool = False) -> None:
        self.events, self.parts, self.down = events, parts, down
        self.asked: list[str] = []

    def query(self, sql: str, params: dict | None = None) -> list[tuple]:
        self.asked.append(sql)
        if self.down:
            raise ClickHouseUnavailable("refused")
        if "system.events" in sql:
            assert all(f"'{name}'" in sql for name, _what in EVENTS)
            return list(self.events.items())
        assert "system.parts" in sql and "active" in sql
        return [(self.parts,)]


def test_the_counters_are_read_and_a_step_is_their_difference():
    before = read_server_work(FakeServer({"SelectQuery": 100, "InsertQuery": 50, "Merge": 3}, parts=40))
    after = read_server_work(FakeServer({"SelectQuery": 400, "InsertQuery": 250, "MergedRows": 9000}, parts=55))
    step = after - before
    # "Merge" no longer listed (absent: "-"), "MergedRows" listed since (counted from 0).
    assert step.events == {"SelectQuery": 300, "InsertQuery": 200, "MergedRows": 9000}
    assert step.active_parts == 55  # the end's, not a difference
    assert step.per_s("InsertQuery", 20) == 10 and step.per_s("InsertedRows", 20) is None
    assert read_server_work(FakeServer({}, 0, down=True)) is None


def test_the_report_prints_each_counter_a_second_for_the_steps_that_read_them():
    work = ServerWork({"SelectQuery": 600, "InsertQuery": 300, "InsertedRows": 150_000,
                       "MergeTreeDataWriterBlocks": 420, "Merge": 30, "MergedRows": 1_200_000}, 123)  # fmt: skip
    assert server_work_summary(work, 30) == (
        "20.0 SELECT/s, 10.0 INSERT/s, 5,000.0 rows inserted/s, 14.0 parts written/s, 1.0 merges/s, "
        "40,000.0 rows merged/s; 123 active parts at the end"
    )
    del work.events["Merge"]  # 18.16 does not count merges launched
    assert "- merges/s, 40,000.0 rows merged/s" in server_work_summary(work, 30)
    measured = StepResult(750, 30, StepLoad(), measured_s=30, server_work=work)
    unread = StepResult(1500, 30, StepLoad())
    lines = server_work_lines([measured, unread])
    assert len(lines) == 3 and lines[-1].startswith("      750  20.0 SELECT/s") and "1,500" not in "".join(lines)
    assert server_work_lines([unread]) == []
