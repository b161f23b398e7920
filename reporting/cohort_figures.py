"""The school page's per-cohort figures beyond counts: a 14-day trend, this week's active time, mastery.

Read for the cohorts of one page only (at most ``drilldown.MAX_PAGE``), from the rollups, in
the reader's scope. "This week" and the trend end on the school's newest event-time day with
daily engagement in scope (as the trends do), so replayed history reads as it was.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from schemas.clickhouse.engine import ClickHouse

from .scope import COHORT_KEY, IN_SCOPE, Scope, cohort_key

TREND_DAYS = 14
WEEK_DAYS = 7
_ON_PAGE = f"has(CAST({{page:Array(String)}} AS Array(String)), {COHORT_KEY})"

# The school's newest event-time day with daily engagement in scope (what trends.NEWEST_DAY_SQL
# gives for one school): the first row in descending key order, so the engine reads the school's
# key range from its end and stops at the first row in scope instead of scanning every day row
# (a teacher's cohort: 17 -> 4 ms at 10M). No row: no engagement in scope.
NEWEST_DAY_SQL = f"""
SELECT toUnixTimestamp(period_start)
FROM {{db}}.engagement_by_time
WHERE grain = 'day' AND school = {{school:String}} AND {IN_SCOPE}
ORDER BY period_start DESC
LIMIT 1
"""

# Per cohort on the page, in one scan of its days since ``since`` (engagement FINAL): per day the
# active learners and active time, and the distinct learners active since ``week`` (a distinct
# count over the week is not a sum of daily ones: each day's set of them, merged per cohort).
# FINAL leaves one row per (day, cohort, learner) (the sort key), so a day's count() is its
# distinct learners; copies do not change a set either.
COHORT_DAYS_SQL = f"""
SELECT course, cohort, groupArray(day), groupArray(learners), groupArray(active_ms), uniqExactMerge(week_learners)
FROM (
    SELECT course, cohort, toUnixTimestamp(period_start) AS day, count() AS learners, sum(active_ms) AS active_ms,
           uniqExactStateIf(learner, period_start >= toDateTime({{week:UInt32}})) AS week_learners
    FROM {{db}}.engagement_by_time FINAL
    WHERE school = {{school:String}} AND grain = 'day' AND {IN_SCOPE} AND {_ON_PAGE}
      AND period_start >= toDateTime({{since:UInt32}})
    GROUP BY course, cohort, period_start
)
GROUP BY course, cohort
"""

# Per cohort on the page: mean P(mastery) over the (learner, skill) estimates of its learners
# in its course (mastery has no cohort column: a cohort's learners come from daily engagement).
# All time and per cohort: `engagement`'s own order (cohort first) fits, not the time-first copy.
COHORT_MASTERY_SQL = f"""
SELECT e.course, e.cohort, avg(m.p_mastery), count()
FROM (
    SELECT DISTINCT course, cohort, learner
    FROM {{db}}.engagement
    WHERE school = {{school:String}} AND grain = 'day' AND {IN_SCOPE} AND {_ON_PAGE}
) AS e
INNER JOIN (
    SELECT course, learner, p_mastery FROM {{db}}.mastery FINAL WHERE school = {{school:String}}
) AS m ON m.course = e.course AND m.learner = e.learner
GROUP BY e.course, e.cohort
"""


def add_cohort_figures(ch: ClickHouse, scope: Scope, school: str, cohorts: list[dict]) -> str | None:
    """Fill ``trend`` ([day start in Unix seconds, active learners] per day of the newest 14),
    ``active_learners_7d``, ``active_ms_7d`` and ``mastery_mean`` (None without estimates) into
    each of ``cohorts`` (dicts with course and cohort); returns the newest day (YYYY-MM-DD) or None."""
    for c in cohorts:
        c.update(trend=[], active_learners_7d=0, active_ms_7d=0, mastery_mean=None)
    if not cohorts:
        return None
    newest = ch.query(NEWEST_DAY_SQL, {**scope.params(), "school": school})
    if not newest:
        return None
    newest_day = datetime.fromtimestamp(int(newest[0][0]), UTC)
    since = newest_day - timedelta(days=TREND_DAYS - 1)
    week_from = int((newest_day - timedelta(days=WEEK_DAYS - 1)).timestamp())
    params = {**scope.params(), "school": school, "since": int(since.timestamp()), "week": week_from,
              "page": sorted(cohort_key(school, c["course"], c["cohort"]) for c in cohorts)}  # fmt: skip
    by_key = {(c["course"], c["cohort"]): c for c in cohorts}
    for course, cohort, days, learners, active_ms, week_learners in ch.query(COHORT_DAYS_SQL, params):
        if (c := by_key.get((course, cohort))) is None:
            continue
        for day, n, ms in zip(days, learners, active_ms, strict=True):
            c["trend"].append([int(day), int(n)])
            if int(day) >= week_from:
                c["active_ms_7d"] += int(ms)
        c["trend"].sort()
        c["active_learners_7d"] = int(week_learners)
    for course, cohort, mean, pairs in ch.query(COHORT_MASTERY_SQL, params):
        if (c := by_key.get((course, cohort))) is not None and int(pairs):
            c["mastery_mean"] = float(mean)
    return newest_day.date().isoformat()
