"""sink_progress rows: written on change, all partitions together (Consistent-Through is their minimum)."""

from __future__ import annotations

from types import SimpleNamespace

from kafka import TopicPartition

from schemas.clickhouse import tables as T
from sinks.consumer import PartitionProgress
from sinks.progress import ProgressPublisher


class FakeEngine:
    database = "db"

    def __init__(self) -> None:
        self.inserts: list[dict[str, list]] = []

    def insert(self, table, columns, data, dedup_token=None):
        assert table == f"db.{T.SINK_PROGRESS}"
        self.inserts.append(dict(zip(columns, data)))

    def query(self, sql, params=None):
        return []


def test_progress_rows_of_idle_partitions_go_with_a_changed_one():
    engine = FakeEngine()
    publish = ProgressPublisher(engine, refresh_s=3600)
    sink = SimpleNamespace(config=SimpleNamespace(name="statements"))
    a, b = TopicPartition("xapi.statements", 0), TopicPartition("xapi.statements", 1)
    progress = {a: PartitionProgress(committed=5, end=5, caught_up_ms=1_000, newest_ms=900),
                b: PartitionProgress(committed=7, end=7, caught_up_ms=1_000, newest_ms=800)}
    publish(sink, progress, 2)
    assert len(engine.inserts) == 1 and engine.inserts[0]["partition"] == [0, 1]

    # Nothing new: nothing written (the idle refresh is an hour away here).
    progress[a].caught_up_ms = progress[b].caught_up_ms = 2_000
    publish(sink, progress, 2)
    assert len(engine.inserts) == 1

    # Partition 0 committed more: partition 1's advanced caught_up_at is written too.
    progress[a].committed = progress[a].end = 6
    progress[a].caught_up_ms = progress[b].caught_up_ms = 3_000
    publish(sink, progress, 2)
    assert len(engine.inserts) == 2
    row = engine.inserts[1]
    assert row["partition"] == [0, 1]
    assert [int(t.timestamp() * 1000) for t in row["caught_up_at"]] == [3_000, 3_000]


def test_caught_up_advances_to_the_newest_end_the_commit_reached():
    # A partition that never runs dry: ends measured at 1 s, 2 s, 3 s while records keep coming.
    p = PartitionProgress(committed=5)
    for wall_ms, end in ((1_000, 10), (2_000, 20), (3_000, 30)):
        p.ends.append((wall_ms, end))
    p.caught_up_by_ends()
    assert p.caught_up_ms is None  # nothing acknowledged before 1 s is known to be written yet
    p.committed = 25
    p.caught_up_by_ends()
    assert p.caught_up_ms == 2_000 and list(p.ends) == [(3_000, 30)]
    p.committed = 30
    p.caught_up_by_ends()
    assert p.caught_up_ms == 3_000 and not p.ends


def test_a_caught_up_time_that_now_covers_written_records_is_published_at_once():
    # The end of a burst: the last commit's measurement found more records coming, so its row
    # stopped short of the newest record it wrote. No commit follows; the next measurement finds
    # the partition caught up. That advance is what readers wait for (Consistent-Through): it
    # must not wait for the idle refresh.
    engine = FakeEngine()
    publish = ProgressPublisher(engine, refresh_s=3600)
    sink = SimpleNamespace(config=SimpleNamespace(name="statements"))
    tp = TopicPartition("xapi.statements", 0)
    progress = {tp: PartitionProgress(committed=5, end=9, caught_up_ms=1_000, newest_ms=1_500)}
    publish(sink, progress, 1)
    assert len(engine.inserts) == 1

    progress[tp].caught_up_ms = 1_200  # still short of the newest record written: written too
    publish(sink, progress, 1)
    assert len(engine.inserts) == 2
    progress[tp].end, progress[tp].caught_up_ms = 5, 2_000  # past it: every written record is covered
    publish(sink, progress, 1)
    assert len(engine.inserts) == 3
    assert [int(t.timestamp() * 1000) for t in engine.inserts[2]["caught_up_at"]] == [2_000]

    # Caught up past everything it wrote: later advances are idle time, left to the refresh.
    progress[tp].caught_up_ms = 3_000
    publish(sink, progress, 1)
    assert len(engine.inserts) == 3


def test_progress_rows_carry_the_caught_up_instant_in_milliseconds():
    # caught_up_at keeps whole seconds on clickhouse-server 18.16; caught_up_ms (migration 0024) does not.
    engine = FakeEngine()
    publish = ProgressPublisher(engine, refresh_s=3600)
    sink = SimpleNamespace(config=SimpleNamespace(name="statements"))
    tp = TopicPartition("xapi.statements", 0)
    publish(sink, {tp: PartitionProgress(committed=5, end=5, caught_up_ms=1_780_000_000_250, newest_ms=900)}, 1)
    assert engine.inserts[0]["caught_up_ms"] == [1_780_000_000_250]


def test_a_restarted_sink_takes_the_previous_runs_caught_up_milliseconds():
    class Previous(FakeEngine):
        def query(self, sql, params=None):
            assert "caught_up_ms" in sql
            return [(0, "2026-06-01 00:00:00", "2026-06-01 00:00:00", 1_780_000_000_250)]

    engine = Previous()
    publish = ProgressPublisher(engine, refresh_s=3600)
    sink = SimpleNamespace(config=SimpleNamespace(name="statements"))
    tp = TopicPartition("xapi.statements", 0)
    progress = {tp: PartitionProgress(committed=5, end=9)}  # lagging now: the earlier run's instant stands
    publish(sink, progress, 1)
    assert progress[tp].caught_up_ms == 1_780_000_000_250
