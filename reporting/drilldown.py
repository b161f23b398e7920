"""From a school to its cohorts, from a cohort to its learners: the dashboard's drill-down answers.

Both read the rollups (``activity_totals``/``activity_learners``, ``engagement``, ``cohort_health``, ``alerts``),
never the raw statements, and only rows in the reader's scope (reporting/scope.py): the
HTTP layer answers 403 before asking for a school or cohort outside the scope, and the SQL
filters by the scope again, so a mistake in one does not show data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from schemas.clickhouse.engine import ClickHouse

from .cohort_figures import add_cohort_figures
from .mastery import COHORT_MASTERY_SQL, stalled_skills
from .names import names_of
from .scope import IN_SCOPE, Scope

# Per course x cohort of one school: statements and newest event (activity_totals FINAL: the
# exact counts of activity_daily's id sets, which count each statement once), learners
# (activity_learners: one row per cohort x learner), the latest health snapshot (cohort_health, latest
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
        SELECT t.course AS course, t.cohort AS cohort, t.statements AS statements,
               ifNull(l.learners, 0) AS learners, t.latest AS latest
        FROM (
            SELECT course, cohort, sum(statements) AS statements, max(last_event) AS latest
            FROM {db}.activity_totals FINAL
            WHERE school = {school:String} AND {in_scope} AND {matches}
            GROUP BY course, cohort
            ORDER BY course, cohort
            LIMIT {offset:UInt32}, {limit:UInt32}
        ) AS t
        LEFT JOIN (
            SELECT course, cohort, uniqExact(learner) AS learners
            FROM {db}.activity_learners
            WHERE school = {school:String} AND {in_scope} AND {matches}
            GROUP BY course, cohort
        ) AS l ON l.course = t.course AND l.cohort = t.cohort
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

# A search matches a cohort when its course or cohort name holds the text (any case).
_MATCHES = "(empty({q:String}) OR positionCaseInsensitiveUTF8(concat(course, ' ', cohort), {q:String}) > 0)"
SCHOOL_COHORTS_SQL = SCHOOL_COHORTS_SQL.replace("{matches}", _MATCHES)
# How many cohorts the search finds (the pages' total).
SCHOOL_COHORTS_COUNT_SQL = (
    "SELECT count() FROM (SELECT course, cohort FROM {db}.activity_totals WHERE school = {school:String} AND "
    + IN_SCOPE + " AND " + _MATCHES + " GROUP BY course, cohort)"
)
MAX_PAGE = 500

# The cohort's newest event-time day with engagement (the end of its "last 7 days") and its
# newest event (the event-time "now" a learner's inactivity is measured from).
COHORT_NEWEST_DAY_SQL = """
SELECT toString(max(toDate(period_start))), count(), toString(max(last_event))
FROM {db}.engagement
WHERE school = {school:String} AND course = {course:String} AND cohort = {cohort:String} AND grain = 'day'
"""

# Each learner of one cohort (daily engagement, latest versions via FINAL): when last seen
# (newest event), active time and sessions over the 7 event-time days ending on the
# cohort's newest day. The cohort median of that active time is taken over these rows
# (:func:`cohort_learners`, as the stream worker takes it: the mean of the middle two).
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


@dataclass(frozen=True)
class FlagRules:
    """When a learner is flagged: the stream worker's thresholds (streams.config.HealthThresholds)."""

    inactive_days: float = 7.0
    low_active_fraction: float = 0.25
    # Mastery stalled (reporting/mastery.py): attempts without a rise, practised within these days.
    stalled_attempts: int = 5
    stalled_within_days: float = 7.0


def school_cohorts(
    ch: ClickHouse, scope: Scope, school: str, search: str = "", offset: int = 0, limit: int = MAX_PAGE
) -> dict:
    """One page of the cohorts of ``school`` in ``scope`` (course or cohort name holding ``search``),
    with activity, latest health (None before the first snapshot), open alerts, and the 14-day
    trend, this week's active time and mean mastery (reporting/cohort_figures.py); ``total``: all pages."""
    params = {**scope.params(), "school": school, "q": search, "offset": max(0, offset),
              "limit": max(0, min(limit, MAX_PAGE))}  # fmt: skip
    rows = ch.query(SCHOOL_COHORTS_SQL, params)
    ((total,),) = ch.query(SCHOOL_COHORTS_COUNT_SQL, params)
    cohorts = [
        {"course": r[0], "cohort": r[1], "statements": int(r[2]), "learners": int(r[3]), "latest": str(r[4]),
         "share": float(r[6]) if r[5] else None, "health_learners": int(r[7]) if r[5] else None,
         "disengaged": int(r[8]) if r[5] else None, "open_alerts": int(r[9])}
        for r in rows
    ]  # fmt: skip
    through = add_cohort_figures(ch, scope, school, cohorts)
    return {"total": int(total), "offset": params["offset"], "limit": params["limit"], "through_day": through,
            "cohorts": cohorts}  # fmt: skip


def median(values: list[int]) -> int:
    """The stream worker's median (streams/health/logic.py): the middle value, the mean of two (rounded down)."""
    if not values:
        return 0
    v = sorted(values)
    m = len(v) // 2
    return v[m] if len(v) % 2 else (v[m - 1] + v[m]) // 2


def _epoch_ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def cohort_learners(
    ch: ClickHouse, scope: Scope, school: str, course: str, cohort: str, rules: FlagRules = FlagRules()
) -> dict:
    """The learners of one cohort in ``scope`` (pseudonym, and ``name`` from the school's directory
    or None): last seen, 7-day active time against the cohort median, and why a learner is
    flagged (``flags``: rule ids with the figure that broke it)."""
    where = {"school": school, "course": course, "cohort": cohort}
    ((newest_day, days, newest_event),) = ch.query(COHORT_NEWEST_DAY_SQL, where)
    rows = ch.query(COHORT_LEARNERS_SQL, {**scope.params(), **where, "newest": newest_day}) if int(days) else []
    med = median([int(r[2]) for r in rows])
    now_ms = _epoch_ms(str(newest_event)) if rows else 0
    names = names_of(ch, scope, school, (str(r[0]) for r in rows)) if rows else {}
    now_mastery, stalls = _mastery_of(ch, scope, school, course, [str(r[0]) for r in rows], now_ms, rules)
    learners = []
    for r in rows:
        active, seen_ms = int(r[2]), _epoch_ms(str(r[1]))
        idle_days = round((now_ms - seen_ms) / 86_400_000, 2)
        flags = []
        if idle_days >= rules.inactive_days:
            flags.append({"rule": "inactive", "days": idle_days, "threshold_days": rules.inactive_days})
        if active < rules.low_active_fraction * med:
            flags.append({"rule": "low_active_time", "fraction_of_median": round(active / med, 3),
                          "threshold_fraction": rules.low_active_fraction})  # fmt: skip
        if stalls.get(str(r[0])):
            flags.append({"rule": "mastery_stalled", "skills": stalls[str(r[0])],
                          "threshold_attempts": rules.stalled_attempts, "within_days": rules.stalled_within_days})  # fmt: skip
        learners.append({"learner": r[0], "name": names.get(str(r[0])), "last_seen": str(r[1]), "days_since_seen": idle_days, "active_ms_7d": active,
                         "sessions_7d": int(r[3]), "vs_median": round(active / med, 3) if med else None,
                         "mastery": now_mastery.get(str(r[0]), {}), "flags": flags})  # fmt: skip
    return {
        **where, "through_day": newest_day if rows else None, "newest_event": str(newest_event) if rows else None,
        "median_active_ms_7d": med if rows else None, "learners": learners,
        "skills": sorted({skill for m in now_mastery.values() for skill in m}),
    }  # fmt: skip


def _mastery_of(
    ch: ClickHouse, scope: Scope, school: str, course: str, learners: list[str], now_ms: int, rules: FlagRules
) -> tuple[dict[str, dict[str, float]], dict[str, list[dict]]]:
    """Each learner's current P(mastery) per skill of the course (the heatmap), and the skills whose
    mastery is stalled (reporting/mastery.py) with the rule's figures."""
    if not learners:
        return {}, {}
    params = {**scope.params(), "school": school, "course": course, "learners": learners}
    now: dict[str, dict[str, float]] = {}
    for learner, skill, p in ch.query(COHORT_MASTERY_SQL, params):
        now.setdefault(str(learner), {})[str(skill)] = float(p)
    stalls = stalled_skills(ch, params, now_ms, rules.stalled_attempts, rules.stalled_within_days)
    return now, stalls
