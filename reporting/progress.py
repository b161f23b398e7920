"""How far ClickHouse has caught up with Kafka, from the sinks' published progress.

``sink_progress`` (migration 0005) holds, per sink and topic partition, the committed
offset and ``caught_up_at``: the latest instant at which that offset had reached the
partition's end, i.e. every record Kafka acknowledged before that instant is written.
The table is a ReplacingMergeTree, so it is read with ``argMax(..., updated)``, never
trusting that merges happened.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from schemas.clickhouse import tables as T
from schemas.clickhouse.engine import ClickHouse
from schemas.clickhouse.progress import caught_up_ms, read_ms

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

LATEST = T.PROGRESS_LATEST  # see there: ties of `updated` go to the furthest row

# Latest row per partition of the sink's newest topic (a renamed topic leaves old rows).
_PROGRESS_SQL = f"""
SELECT partition, argMax(partitions, {LATEST}), argMax(caught_up_at, {LATEST}), argMax(newest_received, {LATEST}),
       argMax(committed_offset, {LATEST}), argMax(end_offset, {LATEST}), max(updated), argMax(caught_up_ms, {LATEST})
FROM {{db}}.sink_progress
WHERE sink = {{sink:String}}
  AND topic = (SELECT argMax(topic, {LATEST}) FROM {{db}}.sink_progress WHERE sink = {{sink:String}})
GROUP BY partition
ORDER BY partition
"""


@dataclass(frozen=True)
class PartitionProgress:
    partition: int
    partitions: int
    caught_up_at: datetime | None
    newest_received: datetime | None
    committed_offset: int
    end_offset: int
    updated: datetime


def sink_progress(ch: ClickHouse, sink: str = "statements") -> list[PartitionProgress]:
    """The latest published progress of every partition ``sink`` has written."""
    out = []
    for p, parts, caught, newest, committed, end, updated, caught_ms in ch.query(_PROGRESS_SQL, {"sink": sink}):
        caught_at = _utc(caught_up_ms(caught_ms, caught))
        newest_at = _utc(newest)
        out.append(
            PartitionProgress(
                int(p), int(parts), caught_at if caught_at > _EPOCH else None,
                newest_at if newest_at > _EPOCH else None, int(committed), int(end), _utc(updated),
            )
        )  # fmt: skip
    return out


def consistent_through(ch: ClickHouse, sink: str = "statements") -> datetime | None:
    """The time up to which every statement accepted into Kafka is readable in ClickHouse.

    The minimum ``caught_up_at`` over all partitions of the statements topic (the LRS
    ``X-Experience-API-Consistent-Through`` header). None while some partition has never
    been caught up (or has no progress yet): no time can be promised then.
    """
    rows = sink_progress(ch, sink)
    if not rows:
        return None
    partitions = max(r.partitions for r in rows)
    if partitions == 0 or len({r.partition for r in rows}) < partitions:
        return None
    if any(r.caught_up_at is None for r in rows):
        return None
    return min(r.caught_up_at for r in rows if r.caught_up_at is not None)


def freshness_seconds(ch: ClickHouse, sink: str = "statements", now: datetime | None = None) -> float | None:
    """Seconds since the newest record ``sink`` has committed was received (None: nothing yet).

    Low while traffic flows; grows when the sink stops or falls behind. The same figure
    as the ``learnpulse_sink_freshness_seconds`` metric, from ClickHouse's side.
    """
    newest = [r.newest_received for r in sink_progress(ch, sink) if r.newest_received is not None]
    if not newest:
        return None
    return max(0.0, ((now or datetime.now(UTC)) - max(newest)) / timedelta(seconds=1))


def _utc(value: object) -> datetime:
    """A DateTime64 as read back (see ``read_ms``), or epoch ms, → aware UTC."""
    return _EPOCH + timedelta(milliseconds=read_ms(value))
