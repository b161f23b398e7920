"""How fast the dashboard's scoped API answers, next to the same figure from the raw statements.

Run as ``python -m benchmarks.bench_dashboard`` (``--statements N``, default 1,000,000;
``--repeat R``, default 15; ``--data DIR``: fill DIR once and reuse it in later runs with the
same N, with any newer migration applied on opening; ``--per-query``: each query of each answer
timed too; ``--raw-repeat R``: fewer runs of the raw peers, seconds each at 100M). Embedded ClickHouse (chDB) in a temporary directory gets the
migrations and N synthetic statements (``INSERT … SELECT`` from ``numbers``: 5 schools, 40
courses, 3 cohorts per course, 20,000 learners, 30 days), from which daily and hourly
``engagement``, ``mastery``, ``mastery_history`` (one estimate per statement), ``cohort_health``
and ``alerts`` rows are derived in SQL, and ``activity_totals`` is recomputed from
``activity_daily`` as the statements sink would (``engagement_hourly`` from ``engagement`` as the
engagement sink would). Then,
for each answer of the dashboard API (the functions its routes call, without HTTP) and each
kind of reader (network, one school, a teacher's one cohort), R timed runs give p50 and p95;
the "raw" columns time the same figure computed from ``statements FINAL`` with the same
scope filter, in the same run. Ratio = p95 / raw p95 (below 1: the rollups help).
The issue's aim: p95 ≤ 100 ms at 10M statements on this machine.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

_FILL = """
INSERT INTO {db}.statements (statement_id, school, course, cohort, learner, verb_id, object_id, object_type,
    registration, result_success, result_completion, result_score_scaled, result_score_raw, result_duration_ms,
    timestamp, stored, voided)
SELECT generateUUIDv4(), concat('school-', toString(number % 5)),
       concat('course-', toString(number % 5), '-', toString(intDiv(number, 5) % 8)),
       concat('k', toString(intDiv(number, 40) % 3)),
       lower(hex(cityHash64(number % 20000))),
       'http://adlnet.gov/expapi/verbs/answered', concat('https://x.example/q/', toString(number % 997)),
       'Activity', NULL, number % 2, NULL, (number % 100) / 100, NULL, 20000,
       toDateTime64('2026-03-01 00:00:00', 3, 'UTC') + toIntervalSecond(intDiv(number * 2592000, {n:UInt64})),
       now64(3), 0
FROM numbers({first:UInt64}, {count:UInt64})
"""
# Statements per INSERT of the fill: the rollup's materialized view holds one insert's id sets
# in memory (100M in one insert needed more than this machine's 24 GiB).
FILL_CHUNK = 5_000_000
# GROUP BYs of the derived rows spill to disk past this (they hold every learner x hour at 100M).
_SPILL = " SETTINGS max_bytes_before_external_group_by = 4000000000"
_ENGAGEMENT = """
INSERT INTO {db}.engagement
SELECT school, course, cohort, learner, '{grain}', {period}(timestamp) AS p, count(), 1, count() * 60000,
       max(timestamp), 1
FROM {db}.statements GROUP BY school, course, cohort, learner, p
""" + _SPILL
_MASTERY = """
INSERT INTO {db}.mastery
SELECT school, course, learner, concat('skill-', toString(cityHash64(learner) % 3)), avg(result_score_scaled), count(),
       sum(result_success), max(timestamp), 1
FROM {db}.statements GROUP BY school, course, learner
""" + _SPILL
# Every estimate kept over time (mastery_history): one per attempt, as the stream worker writes
# at most one per learner x skill and processing batch; attempts counted from the minutes
# since the first day (growing with time, as the worker's count does).
_MASTERY_HISTORY = """
INSERT INTO {db}.mastery_history
SELECT school, course, learner, concat('skill-', toString(cityHash64(learner) % 3)), result_score_scaled,
       toUInt32(intDiv(toUnixTimestamp(timestamp) - 1772323200, 60)) + 1 AS n, n, timestamp, n
FROM {db}.statements
"""
_HEALTH = """
INSERT INTO {db}.cohort_health
SELECT school, course, cohort, max(timestamp), uniqExact(learner), intDiv(uniqExact(learner), 4), 0.25, 3600000, 1
FROM {db}.statements GROUP BY school, course, cohort
"""
_ALERTS = """
INSERT INTO {db}.alerts
SELECT concat(school, course, cohort), school, course, cohort, 'fired', max(timestamp), max(timestamp),
       uniqExact(learner), 1, 0.5, 0.4, [], 1
FROM {db}.statements WHERE cohort = 'k0' GROUP BY school, course, cohort
"""

# The same figures from the raw statements (what the rollups save), scoped the same way.
RAW_SUMMARY = ("SELECT school, count(), uniqExact(learner), uniqExact(course), max(timestamp) "
               "FROM {db}.statements FINAL WHERE {in_scope} GROUP BY school")  # fmt: skip
RAW_COHORTS = ("SELECT course, cohort, count(), uniqExact(learner), max(timestamp) FROM {db}.statements FINAL "
               "WHERE school = {school:String} AND {in_scope} GROUP BY course, cohort ORDER BY course, cohort")  # fmt: skip
RAW_LEARNERS = ("SELECT learner, max(timestamp), count() FROM {db}.statements FINAL WHERE school = {school:String} "
                "AND course = {course:String} AND cohort = {cohort:String} AND {in_scope} GROUP BY learner")  # fmt: skip
RAW_TRENDS = ("SELECT school, toStartOfDay(timestamp) AS d, count(), uniqExact(learner) FROM {db}.statements FINAL "
              "WHERE {in_scope} AND timestamp >= toDateTime64('2026-03-24 00:00:00', 3, 'UTC') GROUP BY school, d")  # fmt: skip
RAW_LEARNER = ("SELECT toDate(timestamp) AS d, count() FROM {db}.statements FINAL WHERE school = {school:String} AND "
               "course = {course:String} AND cohort = {cohort:String} AND learner = {learner:String} AND {in_scope} "
               "GROUP BY d ORDER BY d")  # fmt: skip


def fill(ch, statements: int) -> None:
    """``statements`` synthetic statements and their derived rows (module docstring)."""
    from sinks.hourly import recompute_all_hours
    from sinks.totals import recompute_all

    started = time.monotonic()
    if ch.query("SELECT count() FROM {db}.statements")[0][0]:
        raise SystemExit("the data directory holds statements of another, unfinished fill: give an empty one")
    for first in range(0, statements, FILL_CHUNK):
        count = min(FILL_CHUNK, statements - first)
        ch.execute(_FILL, {"n": statements, "first": first, "count": count})
    for grain, period in (("day", "toStartOfDay"), ("hour", "toStartOfHour")):
        ch.execute(_ENGAGEMENT.replace("{grain}", grain).replace("{period}", period))
    for sql in (_MASTERY, _MASTERY_HISTORY, _HEALTH, _ALERTS):
        ch.execute(sql)
    # The fill bypasses the sinks: recompute the totals as their after-insert steps would
    # (activity_learners is fed by its materialized view, as from the sink).
    recompute_all(ch)
    recompute_all_hours(ch)
    print(f"filled {statements:,} statements and their derived rows in {time.monotonic() - started:.0f} s",
          flush=True)  # fmt: skip


def timed(fn, repeat: int) -> tuple[float, float]:
    fn()  # warm-up
    ms = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ms.append((time.perf_counter() - t) * 1000)
    ms.sort()
    return ms[len(ms) // 2], ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_dashboard", description=__doc__)
    ap.add_argument("--statements", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--raw-repeat", type=int, help="timed runs of each raw peer (default: --repeat; at 100M one takes seconds)")
    ap.add_argument("--per-query", action="store_true", help="also time each query the answers run (p50/p95 ms)")
    ap.add_argument("--data", type=Path, help="keep the filled chDB here and reuse it when it holds the same N")
    args = ap.parse_args(argv)

    from learnpulse.pipeline import open_clickhouse
    from learnpulse.settings import ClickHouseSettings, Settings
    from reporting.alerts import alert_history
    from reporting.dashboard import dashboard_state
    from reporting.drilldown import cohort_learners, school_cohorts
    from reporting.learner import learner_timeline
    from reporting.scope import EVERY_SCHOOL, IN_SCOPE, Scope
    from reporting.summary import school_summaries
    from reporting.trends import TrendRange, school_trends

    with contextlib.ExitStack() as stack:
        home = args.data or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-dashboard-")))
        filled = home / f"filled-{args.statements}"
        ch = open_clickhouse(Settings(home=home, clickhouse=ClickHouseSettings(url=f"chdb://{home / 'chdb'}")))
        if filled.exists():
            print(f"reusing {args.statements:,} statements in {home}", flush=True)
        else:
            fill(ch, args.statements)
            filled.touch()
        school, course, cohort = "school-1", "course-1-0", "k0"
        ((learner,),) = ch.query("SELECT any(learner) FROM {db}.statements WHERE school = {s:String} AND "
                                 "course = {c:String} AND cohort = {k:String}", {"s": school, "c": course, "k": cohort})  # fmt: skip
        scopes = {"network": EVERY_SCHOOL, "school": Scope.of_schools([school]),
                  "teacher": Scope.of_cohorts([(school, course, cohort)])}  # fmt: skip
        where = {"school": school, "course": course, "cohort": cohort, "learner": learner}

        def raw(sql: str, scope):
            text = sql.replace("{in_scope}", IN_SCOPE)
            return lambda: ch.query(text, {**scope.params(), **where})

        rows, per_query = [], []
        for kind, scope in scopes.items():
            figures = [
                ("/api/summary", lambda s=scope: school_summaries(ch, s), raw(RAW_SUMMARY, scope)),
                ("/api/state", lambda s=scope: dashboard_state(ch, s), raw(RAW_SUMMARY, scope)),
                ("/api/schools/{school}", lambda s=scope: school_cohorts(ch, s, school), raw(RAW_COHORTS, scope)),
                ("/api/cohorts/{…}", lambda s=scope: cohort_learners(ch, s, school, course, cohort),
                 raw(RAW_LEARNERS, scope)),
                ("/api/cohorts/{…}/learners/{l}", lambda s=scope: learner_timeline(ch, s, school, course, cohort, learner),
                 raw(RAW_LEARNER, scope)),
                ("/api/trends", lambda s=scope: school_trends(ch, s, TrendRange()), raw(RAW_TRENDS, scope)),
                ("/api/alerts", lambda s=scope: alert_history(ch, s), None),
            ]  # fmt: skip
            for name, fn, peer in figures:
                if args.per_query:
                    per_query.extend((name, kind, *q) for q in each_query(ch, fn, args.repeat))
                p50, p95 = timed(fn, args.repeat)
                r50, r95 = timed(peer, args.raw_repeat or args.repeat) if peer else (None, None)
                rows.append((name, kind, p50, p95, r50, r95))
        ch.close()

    raw_runs = f", raw {args.raw_repeat}" if args.raw_repeat else ""
    print(f"\ndashboard API over {args.statements:,} statements (chDB, {args.repeat} runs each{raw_runs}; ms)")
    print(f"{'answer':<32} {'reader':<8} {'p50':>8} {'p95':>8} {'raw p50':>9} {'raw p95':>9} {'ratio':>6}")
    for name, kind, p50, p95, r50, r95 in rows:
        peer = f"{r50:9.1f} {r95:9.1f} {p95 / r95:6.2f}" if r95 else f"{'–':>9} {'–':>9} {'–':>6}"
        print(f"{name:<32} {kind:<8} {p50:8.1f} {p95:8.1f} {peer}")
    if per_query:
        print("\neach query of each answer (the first words of its SQL; ms)")
        print(f"{'answer':<32} {'reader':<8} {'p50':>8} {'p95':>8}  query")
        for name, kind, sql, p50, p95 in per_query:
            print(f"{name:<32} {kind:<8} {p50:8.1f} {p95:8.1f}  {sql}")
    return 0


def each_query(ch, fn, repeat: int) -> list[tuple[str, float, float]]:
    """p50/p95 of each query ``fn`` runs, in the order it runs them (timed around ``ch.query``)."""
    runs: list[list[tuple[str, float]]] = []
    query = ch.query

    def timed_query(sql, params=None):
        t = time.perf_counter()
        try:
            return query(sql, params)
        finally:
            runs[-1].append((" ".join(sql.split())[:70], (time.perf_counter() - t) * 1000))

    ch.query = timed_query
    try:
        for _ in range(repeat + 1):
            runs.append([])
            fn()
    finally:
        del ch.query
    out = []
    for i, (sql, _ms) in enumerate(runs[-1]):
        ms = sorted(r[i][1] for r in runs[1:] if len(r) > i)
        out.append((sql, ms[len(ms) // 2], ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))]))
    return out


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
