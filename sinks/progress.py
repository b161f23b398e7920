"""Publishes each sink's committed progress to ``sink_progress`` (see migration 0005).

Readers: ``reporting/progress.py`` (the LRS ``X-Experience-API-Consistent-Through``
header, the freshness figure). Rows are written only when something changed (a commit, or
``caught_up_at`` passing records the last row said were written but did not cover yet), or
every ``refresh_s`` to advance ``caught_up_at`` of an idle, caught-up partition; when one
partition's row is written, the sink's other partitions' rows go with it.
"""

from __future__ import annotations

import time
from typing import Any

from kafka import TopicPartition

from schemas.clickhouse import tables as T
from schemas.clickhouse.engine import ClickHouse
from schemas.clickhouse.progress import caught_up_ms, read_ms

from .consumer import KafkaClickHouseSink, PartitionProgress
from .rows import ms_to_datetime

_PREVIOUS_SQL = (
    f"SELECT partition, argMax(caught_up_at, {T.PROGRESS_LATEST}), argMax(newest_received, {T.PROGRESS_LATEST}),"
    f" argMax(caught_up_ms, {T.PROGRESS_LATEST})"
    " FROM {db}.sink_progress"
    " WHERE sink = {sink:String} AND topic = {topic:String} GROUP BY partition"
)


class ProgressPublisher:
    """``on_progress`` hook of :class:`~sinks.consumer.KafkaClickHouseSink`."""

    def __init__(self, engine: ClickHouse, refresh_s: float = 5.0) -> None:
        self.engine = engine
        self.refresh_s = refresh_s
        # Shared by the sinks of one process (each its own topic): keyed by sink and topic.
        # (committed, newest) of the last row written, when, and its caught_up_at (ms).
        self._written: dict[tuple[str, TopicPartition], tuple[tuple[Any, ...], float, int]] = {}
        self._previous: dict[tuple[str, str], dict[int, tuple[int, int]]] = {}

    def _load_previous(self, sink: str, topic: str) -> dict[int, tuple[int, int]]:
        # What an earlier run published (epoch ms): a partition lagging now was still caught up then.
        key = (sink, topic)
        if key not in self._previous:
            rows = self.engine.query(_PREVIOUS_SQL, {"sink": sink, "topic": topic})
            self._previous[key] = {int(r[0]): (caught_up_ms(r[3], r[1]), read_ms(r[2])) for r in rows}
        return self._previous[key]

    def __call__(self, sink: KafkaClickHouseSink, progress: dict[TopicPartition, PartitionProgress], partitions: int):
        now = time.monotonic()
        name = sink.config.name
        candidates: list[tuple[bool, tuple[str, TopicPartition], tuple[tuple[Any, ...], int], tuple[Any, ...]]] = []
        for tp, p in sorted(progress.items()):
            if p.committed is None:
                continue
            if p.caught_up_ms is None or not p.newest_ms:
                previous = self._load_previous(name, tp.topic).get(tp.partition)
                if previous is not None:
                    caught_ms, newest_ms = previous
                    if p.caught_up_ms is None and caught_ms > 0:
                        p.caught_up_ms = caught_ms
                    if not p.newest_ms and newest_ms > 0:
                        p.newest_ms = newest_ms
            # A commit makes a row due (and brings every partition's row along, below), and
            # so does caught_up_at passing more of what the last row said was written (the end
            # of a burst: no commit follows the one whose measurement found more coming).
            # caught_up_at moving through idle time, or the end offset alone, waits for the refresh.
            state = (p.committed, p.newest_ms)
            last = self._written.get((name, tp))
            due = (
                last is None or last[0] != state or now - last[1] >= self.refresh_s
                or _covers_more(last[2], p.caught_up_ms, p.newest_ms)
            )  # fmt: skip
            row = (
                name, tp.topic, tp.partition, partitions, p.committed, p.end if p.end is not None else -1,
                ms_to_datetime(p.caught_up_ms or 0), ms_to_datetime(p.newest_ms), ms_to_datetime(_wall_ms()),
                p.caught_up_ms or 0,
            )  # fmt: skip
            candidates.append((due, (name, tp), (state, p.caught_up_ms or 0), row))
        # Consistent-Through is the oldest caught_up_at of the topic's partitions, so an
        # idle partition left at its last row would hold it back until its refresh: when
        # any partition has something new, every partition's row goes in the same insert.
        if not any(due for due, *_ in candidates):
            return
        for _due, key, (state, caught_up_ms), _row in candidates:
            self._written[key] = (state, now, caught_up_ms)
        data = [list(c) for c in zip(*(row for *_, row in candidates))]
        self.engine.insert(f"{self.engine.database}.{T.SINK_PROGRESS}", T.PROGRESS_COLUMNS, data)


def _covers_more(published_ms: int, caught_up_ms: int | None, newest_ms: int) -> bool:
    """Whether ``caught_up_ms`` passes more of the records written than the row published at
    ``published_ms`` did (records received up to ``newest_ms`` are written)."""
    return caught_up_ms is not None and published_ms < caught_up_ms and published_ms < newest_ms


def _wall_ms() -> int:
    return int(time.time() * 1000)
