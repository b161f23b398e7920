"""Live per-school figures for the terminal view and the dashboard API."""

from __future__ import annotations

from dataclasses import dataclass

from schemas.clickhouse.engine import ClickHouse

from .scope import IN_SCOPE, Scope

# Statements, learners and courses per school from the rollups (never a scan of
# `statements`): activity_totals holds the exact, finalized counts of each activity_daily
# group (its id sets count each statement once however often it was written; the latest
# recompute per group wins under FINAL), so these equal `count() FROM statements FINAL`;
# distinct learners come from activity_learners (one row per school/course/cohort/learner).
# Only rows in the reader's scope (reporting/scope.py) are read.
SCHOOL_SUMMARY_SQL = """
SELECT s.school, s.statements, s.learners, s.courses, toString(s.latest), ifNull(a.active, 0)
FROM (
    SELECT t.school AS school, t.statements AS statements, ifNull(l.learners, 0) AS learners,
           t.courses AS courses, t.latest AS latest
    FROM (
        SELECT school, sum(statements) AS statements, uniqExact(course) AS courses, max(last_event) AS latest
        FROM {db}.activity_totals FINAL
        WHERE {in_scope}
        GROUP BY school
    ) AS t
    LEFT JOIN (
        SELECT school, uniqExact(learner) AS learners
        FROM {db}.activity_learners
        WHERE {in_scope}
        GROUP BY school
    ) AS l ON l.school = t.school
) AS s
LEFT JOIN (
    -- learners active in the newest event-time hour of each school (hourly engagement; its
    -- hours per school in engagement_periods; a distinct count needs no FINAL)
    SELECT school, uniqExact(learner) AS active
    FROM {db}.engagement_by_time
    WHERE grain = 'hour' AND {in_scope}
      AND (school, period_start) IN (
          SELECT school, max(period_start) FROM {db}.engagement_periods WHERE grain = 'hour' GROUP BY school
      )
    GROUP BY school
) AS a ON a.school = s.school
ORDER BY s.school
""".replace("{in_scope}", IN_SCOPE)


@dataclass(frozen=True)
class SchoolSummary:
    school: str
    statements: int
    learners: int
    courses: int
    latest: str
    active_last_hour: int


def school_summaries(ch: ClickHouse, scope: Scope) -> list[SchoolSummary]:
    """Each school ``scope`` touches, counting only its rows in ``scope``."""
    return [
        SchoolSummary(r[0], int(r[1]), int(r[2]), int(r[3]), str(r[4]), int(r[5]))
        for r in ch.query(SCHOOL_SUMMARY_SQL, scope.params())
    ]
