"""From a school to its cohorts, from a cohort to its learners: the dashboard's drill-down answers.

Both read the rollups (``activity_daily``, ``engagement``, ``cohort_health``, ``alerts``),
never the raw statements, and only rows in the reader's scope (reporting/scope.py): the
HTTP layer answers 403 before asking for a school or cohort outside the scope, and the SQL
filters by the scope again, so a mistake in one does not show data.
"""

from __future__ import annotations

from schemas.clickhouse.engine import ClickHouse

from .scope import IN_SCOPE, Scope

# Per course x cohort of one school: statements, learners and newest event (activity_daily;
# id sets count each statement once), the latest health snapshot (cohort_health, latest
# row by event time then version) and how many disengagement alerts are open (an episode
# whose latest state is "fired"). A cohort without a snapshot yet has NULL health figures.
SCHOOL_COHORTS_SQL = """
SELECT x.course, x.cohort, x.statements, x.learners, toString(x.latest),
       x.has_health, x.share, x.health_learners, x.disengaged, al.open_alerts
FROM (
    SELECT a.course AS course, a.cohort AS cohort, a.statements AS statements, a.learners AS learners,
           a.latest AS latest, h.has_health AS has_health, h.share AS share, h.learners AS health_learners,
           h.disengaged AS disengaged
    FROM (
        SELECT course, cohort, uniqExactMerge(statements) AS statements, uniqExactMerge(learners) AS learners,
               maxMerge(last_event) AS latest
        FROM {db}.activity_daily
        WHERE school = {school:String} AND {in_scope}
        GROUP BY course, cohort
    ) AS a
    LEFT JOIN (
        SELECT course, cohort, 1 AS has_health, argMax(share, (at, version)) AS share,
               argMax(learners, (at, version)) AS learners, argMax(disengaged, (at, version)) AS disengaged
        FROM {db}.cohort_health
        WHERE school = {school:String} AND {in_scope}
        GROUP BY course, cohort
    ) AS h ON h.course = a.course AND h.cohort = a.cohort
) AS x
LEFT JOIN (
    SELECT course, cohort, countIf(state = 'fired') AS open_alerts
    FROM (
        SELECT course, cohort, alert_id, argMax(state, version) AS state
        FROM {db}.alerts
        WHERE school = {school:String} AND {in_scope}
        GROUP BY course, cohort, alert_id
    )
    GROUP BY course, cohort
) AS al ON al.course = x.course AND al.cohort = x.cohort
ORDER BY x.course, x.cohort
""".replace("{in_scope}", IN_SCOPE)

# The cohort's newest event-time day with engagement: the end of its "last 7 days".
COHORT_NEWEST_DAY_SQL = """
SELECT toString(max(toDate(period_start))), count()
FROM {db}.engagement
WHERE school = {school:String} AND course = {course:String} AND cohort = {cohort:String} AND grain = 'day'
"""

# Each learner of one cohort (daily engagement, latest versions via FINAL): when last seen
# (newest event), active time and sessions over the 7 event-time days ending on the
# cohort's newest day. The cohort median of that active time is taken over these rows
# (:func:`cohort_learners`: the middle learner's figure, the upper one of two).
COHORT_LEARNERS_SQL = """
SELECT learner, toString(max(last_event)) AS last_seen,
       sumIf(active_ms, toDate(period_start) > toDate({newest:Date}) - 7) AS active_ms_7d,
       sumIf(sessions, toDate(period_start) > toDate({newest:Date}) - 7) AS sessions_7d
FROM {db}.engagement FINAL
WHERE school = {school:String} AND course = {course:String} AND cohort = {cohort:String}
  AND grain = 'day' AND {in_scope}
GROUP BY learner
ORDER BY learner
""".replace("{in_scope}", IN_SCOPE)


def school_cohorts(ch: ClickHouse, scope: Scope, school: str) -> list[dict]:
    """The cohorts of ``school`` in ``scope``, with activity, latest health (None before the first) and open alerts."""
    rows = ch.query(SCHOOL_COHORTS_SQL, {**scope.params(), "school": school})
    return [
        {"course": r[0], "cohort": r[1], "statements": int(r[2]), "learners": int(r[3]), "latest": str(r[4]),
         "share": float(r[6]) if r[5] else None, "health_learners": int(r[7]) if r[5] else None,
         "disengaged": int(r[8]) if r[5] else None, "open_alerts": int(r[9])}
        for r in rows
    ]  # fmt: skip


def cohort_learners(ch: ClickHouse, scope: Scope, school: str, course: str, cohort: str) -> dict:
    """The learners (pseudonyms) of one cohort in ``scope``, their last activity and 7-day active time vs the median."""
    where = {"school": school, "course": course, "cohort": cohort}
    ((newest, days),) = ch.query(COHORT_NEWEST_DAY_SQL, where)
    rows = ch.query(COHORT_LEARNERS_SQL, {**scope.params(), **where, "newest": newest}) if int(days) else []
    active = sorted(int(r[2]) for r in rows)
    median = active[len(active) // 2] if active else None
    return {
        **where, "through_day": newest if rows else None, "median_active_ms_7d": median,
        "learners": [{"learner": r[0], "last_seen": str(r[1]), "active_ms_7d": int(r[2]), "sessions_7d": int(r[3]),
                      "vs_median": round(int(r[2]) / median, 3) if median else None} for r in rows],
    }  # fmt: skip
