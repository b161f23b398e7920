"""Keeps ``activity_totals`` (migration 0020) equal to the exact content of ``activity_daily``.

``activity_daily`` holds id sets per (school, course, cohort, day, verb) group, so copies of
a statement count once; ``activity_totals`` holds the same figures finalized. It can only be
*recomputed* from the sets, never incremented (an increment would count copies). So:

- the statements sink, after inserting a batch and marking voids (its after-insert steps,
  before it commits the Kafka offsets), recomputes every group the batch touched: the
  batch's own statements and the stored targets of its voiding statements
  (:func:`recompute_touched`). A crash before the step means a replay that runs it again;
- ``forget-learner`` recomputes the groups it rebuilt (:func:`recompute_rebuilt`).

Which recompute wins (``ReplacingMergeTree(version)``): ``version`` = the server's clock in
whole seconds, read *before* the recompute's SELECT, in the high 32 bits, and the group's
content size (the sum of its counts, capped) in the low 32 bits. A recompute sees every
insert completed before its clock was read; an insert completed later is followed by its
own sink's recompute, whose clock is not smaller. Two recomputes of one second are ordered
by content: on one server, under inserts only, later snapshots hold supersets of the sets,
so the larger content is the later view (equal content: equal rows). An erasure shrinks the
sets, so :func:`recompute_rebuilt` first waits for the server's next second: every
recompute that could have seen the erased rows then has a smaller clock; in a group the
erasure left empty nothing outranks such a row, so ``forget-learner`` then deletes the rows
versioned before its recompute, once every write that was running has ended
(sinks/forget.py, step 5). Whole seconds
because 18.16 has no sub-second clock; one formula on every server.

Cluster form (replicas, ``clickhouse.cluster.name`` set; deploy/CLUSTER.md): each sink
writes through its own replica, and replication is asynchronous, so a recompute on replica 2
could miss the rows sink 1 had just inserted on replica 1 while sink 1's recompute missed
sink 2's: both totals rows short, until the group is touched again. So in the cluster form
the statements sink runs :class:`ReplicatedRecompute`: after reading the clock, each
recompute runs ``SYSTEM SYNC REPLICA <db>.activity_daily`` on its replica
(:func:`wait_for_replica`; ``statements`` too before reading the voiding statements'
targets). An acknowledged INSERT has already written its part's entry in the table's
replication log in ZooKeeper (the materialized view's part of ``activity_daily`` is written
by the same INSERT, with its own entry, before the acknowledgement); SYNC REPLICA first pulls
that log into the replica's queue, then waits until the queue is empty, i.e. the parts are
fetched (or a merge covering them). So the recompute again sees every insert acknowledged,
on any replica, before its clock was read, and the argument above holds. Checked on 18.16
(tests/integration/test_clickhouse_cluster.py): with fetches stopped on replica 2 the
recompute there waits, and both replicas end exact.

Why not quorum inserts (measured on 18.16.1, two replicas): with ``insert_quorum=2`` the
materialized view's part is on the other replica too when the INSERT returns, but while one
replica fetches nothing a quorum insert fails after ``insert_quorum_timeout`` (code 319,
status unknown) and every later quorum insert into the table, through either replica, is
refused at once (286: the previous write's quorum is not satisfied). One unfinished quorum
insert per table: one lagging or stopped replica would stop every sink, where a sink now
waits only for the parts its own replica lacks.

The wait happens only while every replica is active (``system.replicas``): a replica that
is down may be the only holder of a part, and the wait would last until it is back, with
the sink stopped. While one is down the groups are recomputed without waiting and settled
(recomputed after a wait) at the first batch that finds every replica active
(:class:`ReplicatedRecompute`): progress first, exact again once the replica is back.
Limits: the version's clock is each replica's own (their clocks must agree, NTP); with
several shards *and* replicas the recompute reads other shards through Distributed tables,
whose replicas are not waited for; ``forget-learner``'s :func:`recompute_rebuilt` does not
wait either. The single-node form runs none of this.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from datetime import date, datetime
from typing import Any

from schemas import metrics
from schemas.clickhouse import tables as T
from schemas.clickhouse.cluster import local_database
from schemas.clickhouse.engine import ClickHouse, ClickHouseError, ClickHouseUnavailable
from schemas.clickhouse.rollups import GROUP_OF_ROLLUP, totals_select

_log = logging.getLogger(__name__)
Rows = dict[str, list[tuple[Any, ...]]]
Group = tuple[str, str, str, date, str]  # school, course, cohort, day, verb_id

# One group as one string: each name after its length in bytes, then the day (always 10
# characters) and the verb, so no two groups share a key. The oldest servers lack tuple
# parameters and lambdas over columns (as reporting/scope.py COHORT_KEY).
_COHORT_PART = (
    "toString(length(school)), ':', school, toString(length(course)), ':', course,"
    " toString(length(cohort)), ':', cohort"
)
GROUP_KEY = f"concat({_COHORT_PART}, toString(day), verb_id)"
_RECOMPUTE_SQL = f"INSERT INTO {{db}}.{T.ACTIVITY_TOTALS} " + totals_select("{clock:UInt64}", "{where}")
# Key ranges first (the table's sorting key and monthly partitions), then the exact groups.
_TOUCHED = (
    "school >= {first_school:String} AND school <= {last_school:String}"
    " AND day >= toDate({first_day:String}) AND day <= toDate({last_day:String})"
    f" AND has(CAST({{groups:Array(String)}} AS Array(String)), {GROUP_KEY})"
)
# The groups of stored statements a batch's voiding statements name (marked voided by
# sinks/voids.py in this batch or already before).
_GROUPS_OF_IDS_SQL = f"""
SELECT DISTINCT school, course, cohort, toString(toDate(timestamp)), verb_id
FROM {{db}}.{T.STATEMENTS}
WHERE school = {{school:String}} AND statement_id IN (SELECT toUUID(arrayJoin({{ids:Array(String)}})))
"""
_IDX = {c: T.STATEMENT_COLUMNS.index(c) for c in ("school", "course", "cohort", "timestamp", "verb_id")}
# The server's code for a SYNC REPLICA past its receive_timeout.
TIMEOUT_EXCEEDED = 159
# Groups per recompute, and bytes of their keys: keeps the parameter text bounded. Old
# servers get the parameters inlined in the query, whose text is limited (max_query_size,
# 256 KiB on 18.16): 2,000 keys of long course IRIs exceeded it (code 62, the sink stuck).
CHUNK = 2_000
CHUNK_KEY_BYTES = 64 * 1024


def group_key(group: Group) -> str:
    """:data:`GROUP_KEY` of one group, as ClickHouse computes it (lengths in UTF-8 bytes)."""
    school, course, cohort, day, verb = group
    return "".join(f"{len(n.encode())}:{n}" for n in (school, course, cohort)) + day.isoformat() + verb


def server_clock(ch: ClickHouse) -> int:
    """The server's clock in whole seconds (read in a query of its own, before a recompute)."""
    ((now,),) = ch.query("SELECT toUInt64(now())")
    return int(now)


def wait_for_replica(ch: ClickHouse, table: str) -> None:
    """Until this server's replica of ``table`` holds every part any replica had acknowledged
    when the call started (``SYSTEM SYNC REPLICA``; module docstring). Bounded by the server's
    ``receive_timeout`` (and the driver's); a timeout is a transient failure (the sink retries
    the batch)."""
    try:
        ch.execute(f"SYSTEM SYNC REPLICA {local_database(ch.database)}.{table}")
    except ClickHouseError as err:
        if err.code != TIMEOUT_EXCEEDED:
            raise
        raise ClickHouseUnavailable(f"replica of {table} not in sync: {err}") from err


def recompute_groups(ch: ClickHouse, groups: Iterable[Group], replicated: bool = False) -> None:
    """Write the current exact totals of ``groups`` (idempotent; see the module docstring).
    ``replicated``: the cluster form, each recompute first waits for its replica."""

    def key_ranges(chunk: list[Group]) -> dict[str, Any]:
        return {
            "first_school": min(g[0] for g in chunk), "last_school": max(g[0] for g in chunk),
            "first_day": min(g[3] for g in chunk).isoformat(), "last_day": max(g[3] for g in chunk).isoformat(),
        }  # fmt: skip

    ordered = sorted(set(groups))
    recompute_in_chunks(ch, [(g, group_key(g)) for g in ordered], _RECOMPUTE_SQL.replace("{where}", _TOUCHED),
                        key_ranges, T.ACTIVITY_DAILY if replicated else None)  # fmt: skip


def recompute_in_chunks(
    ch: ClickHouse, keyed: list[tuple[Any, str]], sql: str, key_ranges: Callable[[list[Any]], dict[str, Any]],
    wait_for: str | None,
) -> None:  # fmt: skip
    """Run a recompute ``sql`` per run of ``(group, key)`` pairs (:func:`keyed_chunks`), with
    ``{clock:UInt64}`` read first, ``{groups:Array(String)}`` the run's keys and ``key_ranges``
    of its groups; ``wait_for``: this replica of that table first (the cluster form)."""
    for chunk in keyed_chunks(keyed):
        clock = server_clock(ch)
        if wait_for:
            wait_for_replica(ch, wait_for)
        params = {"clock": clock, **key_ranges([g for g, _k in chunk]), "groups": [key for _g, key in chunk]}
        ch.execute(sql, params)


def keyed_chunks(keyed: list[tuple[Any, str]]) -> Iterable[list[tuple[Any, str]]]:
    """``(item, its key)`` pairs in runs of at most :data:`CHUNK` and about :data:`CHUNK_KEY_BYTES` of keys."""
    chunk: list[tuple[Any, str]] = []
    size = 0
    for item, key in keyed:
        n = len(key.encode())
        if chunk and (len(chunk) >= CHUNK or size + n > CHUNK_KEY_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append((item, key))
        size += n
    if chunk:
        yield chunk


def _day(ts: datetime) -> date:
    return ts.date()  # the sink's timestamps are naive UTC, as toDate(timestamp) in UTC


def batch_groups(rows: Rows) -> set[Group]:
    """The groups of a batch's statement rows."""
    i = _IDX
    return {
        (r[i["school"]], r[i["course"]], r[i["cohort"]], _day(r[i["timestamp"]]), r[i["verb_id"]])
        for r in rows.get(T.STATEMENTS) or []
    }


def void_target_groups(ch: ClickHouse, rows: Rows) -> set[Group]:
    """The groups of the stored statements the batch's voiding statements name."""
    targets: dict[str, set[str]] = {}
    for school, voided_id, _voiding_id, _stored in rows.get(T.STATEMENT_VOIDS) or []:
        targets.setdefault(school, set()).add(str(voided_id))
    found: set[Group] = set()
    for school, id_set in sorted(targets.items()):
        ids = sorted(id_set)
        for i in range(0, len(ids), CHUNK):
            for s, course, cohort, day, verb in ch.query(_GROUPS_OF_IDS_SQL, {"school": school, "ids": ids[i : i + CHUNK]}):
                found.add((str(s), str(course), str(cohort), date.fromisoformat(str(day)), str(verb)))
    return found


def recompute_touched(ch: ClickHouse, rows: Rows) -> None:
    """After-insert step of the statements sink, after :func:`sinks.voids.mark_voided`."""
    groups = batch_groups(rows) | void_target_groups(ch, rows)
    if groups:
        recompute_groups(ch, groups)


_REPLICAS_SQL = (
    "SELECT table, total_replicas, active_replicas FROM system.replicas "
    "WHERE database = {database:String} AND has({tables:Array(String)}, table)"
)


def inactive_replicas(ch: ClickHouse, tables: tuple[str, ...]) -> list[str]:
    """Those of ``tables`` (local, replicated) of which some replica is not active now (its
    ZooKeeper session is gone: stopped, killed, cut off): a SYNC REPLICA could wait for it."""
    rows = ch.query(_REPLICAS_SQL, {"database": local_database(ch.database), "tables": list(tables)})
    seen = {str(table): int(total) - int(active) for table, total, active in rows}
    return [t for t in tables if seen.get(t, 1) > 0]


class ReplicatedRecompute:
    """:func:`recompute_touched` in the cluster form, one per sink (it keeps unsettled groups).

    While every replica is active, the voiding statements' targets and the id sets are read
    once this replica holds every part acknowledged on any replica (:func:`wait_for_replica`):
    exact at once. While a replica is down, waiting could last until it is back (a part only it
    holds cannot be fetched), and the sink would stop with it. So the groups are recomputed
    without waiting (progress first: they may miss the last rows written through the other
    replica), kept as unsettled, and recomputed again after a wait at the first batch that
    finds every replica active. A replica that goes down during a wait costs that batch one
    ``receive_timeout`` (then it is seen inactive). Unsettled groups live in this process: a
    sink that stops before they settle leaves them until the group is touched again
    (``learnpulse_totals_unsettled_groups`` shows how many there are).
    """

    gauge = metrics.TOTALS_UNSETTLED_GROUPS

    def __init__(self) -> None:
        self.unsettled: set[Any] = set()

    def needed(self, rows: Rows) -> tuple[str, ...]:
        """The replicated tables the recompute reads for ``rows``."""
        voids = bool(rows.get(T.STATEMENT_VOIDS))
        return (T.STATEMENTS, T.ACTIVITY_DAILY) if voids else (T.ACTIVITY_DAILY,)

    def touched(self, ch: ClickHouse, rows: Rows, wait: bool) -> set[Any]:
        """The groups ``rows`` touched (``wait``: every replica is active, read in sync)."""
        if wait and rows.get(T.STATEMENT_VOIDS):
            wait_for_replica(ch, T.STATEMENTS)
        return batch_groups(rows) | void_target_groups(ch, rows)

    def recompute(self, ch: ClickHouse, groups: set[Any], replicated: bool) -> None:
        recompute_groups(ch, groups, replicated)

    def __call__(self, ch: ClickHouse, rows: Rows) -> None:
        needed = self.needed(rows)
        down = inactive_replicas(ch, needed)
        groups = self.touched(ch, rows, wait=not down)
        if down:
            if groups:
                _log.warning("a replica of %s is not active: %d groups recomputed without waiting for it",
                             ", ".join(down), len(groups))  # fmt: skip
                self.recompute(ch, groups, False)
                self.unsettled |= groups
        elif groups or self.unsettled:
            self.recompute(ch, groups | self.unsettled, True)
            self.unsettled.clear()
        self.gauge.set(len(self.unsettled))


# -- forget-learner: groups rebuilt from `statements`, named by their rollup hash ----------
_REBUILT = f"has({{h:Array(UInt64)}}, {GROUP_OF_ROLLUP})"
_DELETE_REBUILT_SQL = f"ALTER TABLE {{db}}.{T.ACTIVITY_TOTALS} DELETE WHERE {_REBUILT}"


# Rows of those groups versioned before ``{clock:UInt64}`` (seconds, the high 32 bits).
_DELETE_STALE_REBUILT_SQL = f"{_DELETE_REBUILT_SQL} AND bitShiftRight(version, 32) < {{clock:UInt64}}"


def delete_rebuilt_sql() -> str:
    """ALTER deleting the totals of the groups ``{h:Array(UInt64)}`` (a group may be empty after an erasure)."""
    return _DELETE_REBUILT_SQL


def delete_stale_rebuilt_sql() -> str:
    """ALTER deleting the totals rows of the groups ``{h:Array(UInt64)}`` recomputed before
    ``{clock:UInt64}``: what a sink's recompute that read the sets before an erasure wrote
    after it (sinks/forget.py). A group with a row of that clock or later keeps it."""
    return _DELETE_STALE_REBUILT_SQL


def recompute_rebuilt(ch: ClickHouse, hashes: list[int], poll_s: float = 0.1) -> int:
    """Recompute the groups whose rollup hashes are ``hashes`` after ``activity_daily`` was
    rebuilt; returns the recompute's clock.

    Waits for the server's next second first, so this recompute's version is above every
    recompute that saw the rows before the erasure (module docstring).
    """
    wait_for_next_second(ch, poll_s)
    clock = server_clock(ch)
    ch.execute(_RECOMPUTE_SQL.replace("{where}", _REBUILT), {"clock": clock, "h": hashes})
    return clock


def wait_for_next_second(ch: ClickHouse, poll_s: float = 0.1) -> None:
    """Until the server's clock passes the current whole second: a recompute after an erasure
    then has a version above every recompute that could have seen the erased rows."""
    start = server_clock(ch)
    while server_clock(ch) <= start:
        time.sleep(poll_s)


def recompute_all(ch: ClickHouse) -> None:
    """Recompute every group (a repair, and what a fill written around the sink needs)."""
    ch.execute(_RECOMPUTE_SQL.replace("{where}", "1"), {"clock": server_clock(ch)})


# -- forget-learner: activity_learners rows left without statements ---------------------
# An erasure also deletes other learners' statements that name the erased one; such a
# learner may have nothing left in that cohort, yet its activity_learners row (no statement
# id to delete it by) would stay. Forget-learner rebuilds the rows of every (cohort,
# learner) whose statements it erases: delete, then insert again from `statements`.
LEARNER_KEY = f"concat({_COHORT_PART}, learner)"
_KEYS = f"has(CAST({{k:Array(String)}} AS Array(String)), {LEARNER_KEY})"
_LEARNER_KEYS_OF_IDS_SQL = (
    f"SELECT DISTINCT {LEARNER_KEY} FROM {{db}}.{T.STATEMENTS}"
    " WHERE statement_id IN (SELECT toUUID(arrayJoin({ids:Array(String)})))"
)
_LEARNERS_DELETE_SQL = f"ALTER TABLE {{db}}.{T.ACTIVITY_LEARNERS} DELETE WHERE {_KEYS}"
_LEARNERS_INSERT_SQL = (
    f"INSERT INTO {{db}}.{T.ACTIVITY_LEARNERS} SELECT school, course, cohort, learner, minState(timestamp),"
    f" maxState(timestamp) FROM {{db}}.{T.STATEMENTS} WHERE {_KEYS} GROUP BY school, course, cohort, learner"
)


def learner_keys_of(ch: ClickHouse, ids: list[str]) -> set[str]:
    """:data:`LEARNER_KEY` of the (cohort, learner) of each stored statement of ``ids``."""
    return {str(r[0]) for r in ch.query(_LEARNER_KEYS_OF_IDS_SQL, {"ids": ids})}


def learners_rebuild_sql() -> tuple[str, str]:
    """(delete, insert) rebuilding the activity_learners rows whose keys are ``{k:Array(String)}``."""
    return _LEARNERS_DELETE_SQL, _LEARNERS_INSERT_SQL
