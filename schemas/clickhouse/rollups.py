"""The daily activity rollup's SELECT: one definition for its migration and for its repair.

Migration ``0003_rollups`` builds ``activity_daily`` (and its materialized view) from
:data:`ROLLUP_SELECT`; an erasure (``sinks/forget.py``) rebuilds the groups it touched
with :func:`rebuild_sql`. Changing the SELECT changes 0003's checksum, so the migration
runner stops on drift: a new rollup needs a new migration, not an edit here.
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
_GROUP_OF_ROLLUP = "cityHash64(school, course, cohort, toString(day))"
_SOURCE = "FROM {db}.statements\n"


def rebuild_sql() -> tuple[str, str]:
    """(delete, insert) rebuilding the rollup groups whose :data:`GROUP_OF_STATEMENT` hashes are ``{h:Array(UInt64)}``."""
    insert = "INSERT INTO {db}.activity_daily " + ROLLUP_SELECT.replace(
        _SOURCE, f"FROM {{db}}.statements WHERE has({{h:Array(UInt64)}}, {GROUP_OF_STATEMENT})\n"
    )
    delete = f"ALTER TABLE {{db}}.activity_daily DELETE WHERE has({{h:Array(UInt64)}}, {_GROUP_OF_ROLLUP})"
    return delete, insert


__all__ = ["GROUP_OF_STATEMENT", "ROLLUP_SELECT", "rebuild_sql"]
