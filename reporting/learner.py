"""One learner of one cohort: a daily timeline of sessions, active time and statements, the
newest statements, the current mastery per skill and each skill's estimates over time
(``mastery_history``, superseded points dropped: reporting/mastery.py); the learner's display name from the
school's directory (reporting/names.py) when there is one.

The reader must be allowed the cohort (the HTTP layer answers 403 first); every query also
filters by the scope and by the cohort, so a learner is only shown through a cohort they
belong to.
"""

from __future__ import annotations

from schemas.clickhouse.engine import ClickHouse

from .mastery import current_series, history_rows
from .names import names_of
from .scope import IN_SCOPE, LEARNER_OF_COURSE_IN_SCOPE, Scope

_COHORT = "school = {school:String} AND course = {course:String} AND cohort = {cohort:String} AND learner = {learner:String}"

# Per event-time day (daily engagement, latest versions): statements, sessions started, active time.
LEARNER_DAYS_SQL = (
    "SELECT toString(toDate(period_start)), statements, sessions, active_ms, toString(last_event) "
    "FROM {db}.engagement FINAL WHERE grain = 'day' AND " + _COHORT + " AND " + IN_SCOPE + " ORDER BY period_start"
)
# The newest statements (not voided), newest first.
LEARNER_STATEMENTS_SQL = (
    "SELECT toString(timestamp), verb_id, object_id, result_success, result_score_scaled "
    "FROM {db}.statements FINAL WHERE voided = 0 AND " + _COHORT + " AND " + IN_SCOPE
    + " ORDER BY timestamp DESC LIMIT {limit:UInt32}"
)
# Current BKT estimate per skill of the course (mastery has no cohort column: scoped by learner).
LEARNER_MASTERY_SQL = (
    "SELECT skill, p_mastery, observations, correct, toString(event_time) FROM {db}.mastery FINAL "
    "WHERE school = {school:String} AND course = {course:String} AND learner = {learner:String} AND "
    + LEARNER_OF_COURSE_IN_SCOPE + " ORDER BY skill"
)
MAX_STATEMENTS = 200


def learner_timeline(
    ch: ClickHouse, scope: Scope, school: str, course: str, cohort: str, learner: str, limit: int = 100
) -> dict | None:
    """The learner's figures in that cohort, or None when the learner has none there (in ``scope``)."""
    params = {**scope.params(), "school": school, "course": course, "cohort": cohort, "learner": learner,
              "limit": max(1, min(limit, MAX_STATEMENTS))}  # fmt: skip
    days = ch.query(LEARNER_DAYS_SQL, params)
    statements = ch.query(LEARNER_STATEMENTS_SQL, params)
    if not days and not statements:
        return None
    mastery = ch.query(LEARNER_MASTERY_SQL, params)
    history = history_rows(ch, {**params, "learners": [learner]})
    return {
        "school": school, "course": course, "cohort": cohort, "learner": learner,
        "name": names_of(ch, scope, school, [learner]).get(learner),
        "days": [{"day": r[0], "statements": int(r[1]), "sessions": int(r[2]), "active_ms": int(r[3]),
                  "last_event": r[4]} for r in days],
        "statements": [{"timestamp": r[0], "verb": r[1], "object": r[2],
                        "success": None if r[3] is None else bool(r[3]), "score_scaled": r[4]} for r in statements],
        "mastery": [{"skill": r[0], "p_mastery": float(r[1]), "observations": int(r[2]), "correct": int(r[3]),
                     "updated": r[4]} for r in mastery],
        "mastery_history": [
            {"skill": skill, "points": [{"at_ms": p.at_ms, "p_mastery": p.p_mastery, "observations": p.observations}
                                        for p in current_series(points)]}
            for (_learner, skill), points in sorted(history.items())
        ],
    }  # fmt: skip
