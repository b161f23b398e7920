"""Keeps ``engagement_hourly`` (migration 0023) equal to the exact hourly figures of ``engagement``.

``engagement`` holds one row per learner x cohort x hour (``ReplacingMergeTree(version)``:
the stream writes a learner's hour again with a higher version as statements arrive, and a
replay writes copies); ``engagement_hourly`` holds the sums per (school, course, cohort,
hour). A sum cannot be kept by adding what arrives (a new version replaces, a copy adds
nothing), so, as ``activity_totals`` (sinks/totals.py), it is only *recomputed*, from
``engagement_by_time FINAL`` (the same rows as ``engagement``, copied by the same INSERT,
sorted time-first so a touched hour is a key range):

- the engagement sink, after inserting a batch and before it commits the Kafka offsets,
  recomputes every (school, course, cohort, hour) its hourly rows touched
  (:func:`recompute_touched_hours`). A crash before the step means a replay that runs it;
- ``forget-learner`` recomputes the groups of the erased learners' engagement rows after
  deleting them (:func:`hour_keys_of_learners`, :func:`recompute_forgotten_hours`).

Which recompute wins (``ReplacingMergeTree(version)``): the server's clock in whole seconds
(read before the recompute's SELECT) in the high 32 bits, as for ``activity_totals``, and in
the low 32 bits the sum of the group's engagement row versions plus its row count (capped).
Under inserts a key's newest version never falls (the stream's versions are the learner x
course sequence, a record ``(key, version)`` always carries the same figures) and keys only
appear, so a later view of a group has a larger sum unless it is the same view: two
recomputes of one second are ordered by what they saw. An erasure removes rows, so
:func:`recompute_forgotten_hours` first waits for the server's next second, and
``forget-learner`` then sweeps the rows written late (sinks/forget.py, step 5).

Cluster form: :class:`ReplicatedHourlyRecompute` waits for this replica of
``engagement_by_time`` first (``SYSTEM SYNC REPLICA``), as ``activity_totals``'
:class:`~sinks.totals.ReplicatedRecompute` does for ``activity_daily`` (see there for why
and for the limits), and settles groups recomputed while a replica was down.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from schemas import metrics
from schemas.clickhouse import tables as T
from schemas.clickhouse.engine import ClickHouse
from schemas.clickhouse.rollups import hourly_select

from .totals import (
    _COHORT_PART, ReplicatedRecompute, keyed_chunks, recompute_in_chunks, server_clock, wait_for_next_second,
)

Rows = dict[str, list[tuple[Any, ...]]]
Hour = tuple[str, str, str, datetime]  # school, course, cohort, hour (naive UTC)

# One group as one string (each name after its length, then the hour's 19 characters), on
# the engagement tables and on engagement_hourly alike (both name the hour period_start).
HOUR_KEY = f"concat({_COHORT_PART}, toString(period_start))"
_IN_KEYS = f"has(CAST({{groups:Array(String)}} AS Array(String)), {HOUR_KEY})"
_RECOMPUTE_SQL = f"INSERT INTO {{db}}.{T.ENGAGEMENT_HOURLY} " + hourly_select("{clock:UInt64}", "{where}")
# Key ranges first (engagement_by_time is sorted grain, school, period_start), then the groups.
_TOUCHED = (
    "school >= {first_school:String} AND school <= {last_school:String}"
    " AND period_start >= toDateTime({first_hour:String}, 'UTC') AND period_start <= toDateTime({last_hour:String}, 'UTC')"
    f" AND {_IN_KEYS}"
)
_HOURS_OF_LEARNERS_SQL = (
    f"SELECT DISTINCT {HOUR_KEY} FROM {{db}}.{T.ENGAGEMENT} WHERE grain = 'hour' AND has({{ps:Array(String)}}, learner)"
)
_DELETE_SQL = f"ALTER TABLE {{db}}.{T.ENGAGEMENT_HOURLY} DELETE WHERE {_IN_KEYS}"
_DELETE_STALE_SQL = f"{_DELETE_SQL} AND bitShiftRight(version, 32) < {{clock:UInt64}}"
_IDX = {c: T.ENGAGEMENT_COLUMNS.index(c) for c in ("school", "course", "cohort", "grain", "period_start")}


def _text(hour: datetime) -> str:
    return hour.strftime("%Y-%m-%d %H:%M:%S")  # toString(DateTime('UTC'))


def hour_key(group: Hour) -> str:
    """:data:`HOUR_KEY` of one group, as ClickHouse computes it (lengths in UTF-8 bytes)."""
    school, course, cohort, hour = group
    return "".join(f"{len(n.encode())}:{n}" for n in (school, course, cohort)) + _text(hour)


def batch_hours(rows: Rows) -> set[Hour]:
    """The (school, course, cohort, hour) groups of a batch's hourly engagement rows."""
    i = _IDX
    return {
        (r[i["school"]], r[i["course"]], r[i["cohort"]], r[i["period_start"]])
        for r in rows.get(T.ENGAGEMENT) or []
        if r[i["grain"]] == "hour"
    }


def recompute_hours(ch: ClickHouse, groups: Iterable[Hour], replicated: bool = False) -> None:
    """Write the current exact figures of ``groups`` (idempotent; module docstring).
    ``replicated``: the cluster form, each recompute first waits for its replica."""

    def key_ranges(chunk: list[Hour]) -> dict[str, Any]:
        return {
            "first_school": min(g[0] for g in chunk), "last_school": max(g[0] for g in chunk),
            "first_hour": _text(min(g[3] for g in chunk)), "last_hour": _text(max(g[3] for g in chunk)),
        }  # fmt: skip

    ordered = sorted(set(groups))
    recompute_in_chunks(ch, [(g, hour_key(g)) for g in ordered], _RECOMPUTE_SQL.replace("{where}", _TOUCHED),
                        key_ranges, T.ENGAGEMENT_BY_TIME if replicated else None)  # fmt: skip


def recompute_touched_hours(ch: ClickHouse, rows: Rows) -> None:
    """After-insert step of the engagement sink."""
    groups = batch_hours(rows)
    if groups:
        recompute_hours(ch, groups)


def recompute_all_hours(ch: ClickHouse) -> None:
    """Recompute every group (a repair, and what a fill written around the sink needs)."""
    ch.execute(_RECOMPUTE_SQL.replace("{where}", "1"), {"clock": server_clock(ch)})


class ReplicatedHourlyRecompute(ReplicatedRecompute):
    """:func:`recompute_touched_hours` in the cluster form (one per sink: it keeps unsettled groups)."""

    gauge = metrics.HOURLY_UNSETTLED_GROUPS

    def needed(self, rows: Rows) -> tuple[str, ...]:
        return (T.ENGAGEMENT_BY_TIME,)

    def touched(self, ch: ClickHouse, rows: Rows, wait: bool) -> set[Any]:
        return batch_hours(rows)

    def recompute(self, ch: ClickHouse, groups: set[Any], replicated: bool) -> None:
        recompute_hours(ch, groups, replicated)


# -- forget-learner ------------------------------------------------------------------------
def hour_keys_of_learners(ch: ClickHouse, learners: list[str]) -> list[str]:
    """:data:`HOUR_KEY` of every hour group ``learners`` have engagement in (read before erasing)."""
    return sorted(str(r[0]) for r in ch.query(_HOURS_OF_LEARNERS_SQL, {"ps": list(learners)}))


def delete_hours_sql() -> str:
    """ALTER deleting the ``engagement_hourly`` rows of the groups ``{groups:Array(String)}``
    (a group may be empty after an erasure: its row goes, not only changes)."""
    return _DELETE_SQL


def delete_stale_hours_sql() -> str:
    """ALTER deleting the ``engagement_hourly`` rows of the groups ``{groups:Array(String)}``
    recomputed before ``{clock:UInt64}`` (seconds): what a sink's recompute that read before an
    erasure wrote after it (sinks/forget.py). A group with a row of that clock or later keeps it."""
    return _DELETE_STALE_SQL


def key_chunks(keys: list[str]) -> list[list[str]]:
    """``keys`` in runs a query's text can hold (old servers inline parameters)."""
    return [[k for k, _ in c] for c in keyed_chunks([(k, k) for k in keys])]


def recompute_forgotten_hours(ch: ClickHouse, keys: list[str], poll_s: float = 0.1) -> int:
    """Recompute the groups ``keys`` after their engagement rows were erased; returns the
    first chunk's clock (no later chunk's is smaller).

    Waits for the server's next second first, so these versions are above every recompute
    that saw the rows before the erasure (module docstring).
    """
    wait_for_next_second(ch, poll_s)
    first = server_clock(ch)
    for i, chunk in enumerate(key_chunks(keys)):
        clock = first if i == 0 else server_clock(ch)
        ch.execute(_RECOMPUTE_SQL.replace("{where}", _IN_KEYS), {"clock": clock, "groups": chunk})
    return first
