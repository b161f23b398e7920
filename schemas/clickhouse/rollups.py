"""The daily activity rollup's SELECT: one definition for its migration and for its repair.

Migration ``0003_rollups`` builds ``activity_daily`` (and its materialized view) from
:data:`ROLLUP_SELECT`; an erasure (``sinks/forget.py``) rebuilds the groups it touched
with :func:`rebuild_sql`. Changing the SELECT changes 0003's checksum, so the migration
runner stops on drift: a new rollup needs a new migration, not an edit here. The same holds
for :func:`totals_select` (migration 0020's backfill, and the recomputes of sinks/totals.py)
and :func:`hourly_select` (migration 0023's backfill, and the recomputes of sinks/hourly.py).
"""

from __future__ import annotations

ROLLUP_SELECT = """
    SELECT
        school, course, cohort, toDate(timestamp) AS day, verb_id,
        uniqExactState(statement_id) AS statements,
        uniqExactIfState(statement_id, voided = 1) AS voided,
        uniqExactState(learner) AS learners,
        uniqExactIfState(statement_id, ifNull(result_completion, 0) = 1) AS completed,
        uniqExactIfState(statement_id, ifNull(result_success, 2) = 1) AS passed,
        uniqExactIfState(statement_id, ifNull(result_success, 2) = 0) AS failed,
        minState(timestamp) AS first_event,
        maxState(timestamp) AS last_event
    FROM {db}.statements
    GROUP BY school, course, cohort, day, verb_id
"""

# The rollup's grouping (school, course, cohort, day) as one hash, on both sides.
GROUP_OF_STATEMENT = "cityHash64(school, course, cohort, toString(toDate(timestamp)))"
GROUP_OF_ROLLUP = "cityHash64(school, course, cohort, toString(day))"
_SOURCE = "FROM {db}.statements\n"


def rebuild_sql() -> tuple[str, str]:
    """(delete, insert) rebuilding the rollup groups whose :data:`GROUP_OF_STATEMENT` hashes are ``{h:Array(UInt64)}``."""
    insert = "INSERT INTO {db}.activity_daily " + ROLLUP_SELECT.replace(
        _SOURCE, f"FROM {{db}}.statements WHERE has({{h:Array(UInt64)}}, {GROUP_OF_STATEMENT})\n"
    )
    delete = f"ALTER TABLE {{db}}.activity_daily DELETE WHERE has({{h:Array(UInt64)}}, {GROUP_OF_ROLLUP})"
    return delete, insert


TOTAL_COUNTS = ("statements", "voided", "learners", "completed", "passed", "failed")


def totals_select(clock: str, where: str) -> str:
    """SELECT of ``activity_totals`` rows (migration 0020): the exact counts of the
    ``activity_daily`` groups matching ``where``, finalized, versioned by ``clock`` (an SQL
    expression of the server's clock in seconds) and the group's content size (sinks/totals.py)."""
    version = f"bitShiftLeft(toUInt64({clock}), 32) + least({' + '.join(TOTAL_COUNTS)}, toUInt64(4294967295))"
    return f"""
    SELECT school, course, cohort, day, verb_id, {", ".join(TOTAL_COUNTS)}, first_event, last_event,
           {version} AS version
    FROM (
        SELECT school, course, cohort, day, verb_id,
               uniqExactMerge(statements) AS statements, uniqExactIfMerge(voided) AS voided,
               uniqExactMerge(learners) AS learners, uniqExactIfMerge(completed) AS completed,
               uniqExactIfMerge(passed) AS passed, uniqExactIfMerge(failed) AS failed,
               minMerge(first_event) AS first_event, maxMerge(last_event) AS last_event
        FROM {{db}}.activity_daily
        WHERE {where}
        GROUP BY school, course, cohort, day, verb_id
    )
"""


def hourly_select(clock: str, where: str) -> str:
    """SELECT of ``engagement_hourly`` rows (migration 0023): the exact hourly figures of the
    (school, course, cohort, hour) groups of ``engagement_by_time`` matching ``where`` (each
    learner's newest version: ``FINAL``), versioned by ``clock`` (seconds) and the sum of the
    group's row versions plus its row count (sinks/hourly.py)."""
    version = f"bitShiftLeft(toUInt64({clock}), 32) + least(sum(version) + count(), toUInt64(4294967295))"
    return f"""
    SELECT school, course, cohort, period_start, sum(statements) AS statements, sum(sessions) AS sessions,
           sum(active_ms) AS active_ms, count() AS learners, {version} AS version
    FROM {{db}}.engagement_by_time FINAL
    WHERE grain = 'hour' AND {where}
    GROUP BY school, course, cohort, period_start
"""


__all__ = [
    "GROUP_OF_ROLLUP", "GROUP_OF_STATEMENT", "ROLLUP_SELECT", "TOTAL_COUNTS", "hourly_select", "rebuild_sql", "totals_select",
]  # fmt: skip
