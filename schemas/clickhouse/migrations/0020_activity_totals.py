"""``activity_totals`` and ``activity_learners``: exact activity figures the dashboard reads
without merging id sets.

``activity_daily`` (0003) keeps exact id *sets* per school/course/cohort/day/verb because the
sinks write a statement again after a crash or replay and write a voided statement a second
time: a set counts each statement once. Reading it means merging every set in range (10M
ids at 10M statements). These two tables carry the same exact figures in a form that reads
in milliseconds:

- ``activity_totals``: the *finalized* counts of each ``activity_daily`` group (plain UInt64,
  first/last event), ``ReplacingMergeTree(version)``. It is written only by a recompute
  ``INSERT ... SELECT uniqExactMerge(...) FROM activity_daily WHERE <groups>`` (never by a
  materialized view, which would see inserts, not content): the statements sink after each
  batch (``sinks/totals.py``), ``forget-learner`` after it rebuilds groups, and the backfill
  below. A row is the exact content of its group as one recompute saw it; ``version`` orders
  recomputes so the one that saw the most wins (``sinks/totals.py``). Read with ``FINAL``
  (or ``argMax(…, version)``).
- ``activity_learners``: one row per school/course/cohort/learner with min/max event states,
  fed by a materialized view on ``statements``. Copies of a statement add the same key and
  the same min/max: idempotent, like the id sets. Distinct learners in a scope are
  ``uniqExact(learner)`` over these rows, not a merge of per-group learner sets.
  Pseudonymous; erased by ``forget-learner`` (it has a ``learner`` column).

The backfills copy what ``activity_daily`` and ``statements`` hold now (idempotent: the same
keys; the totals' version is the backfill's clock, so any later recompute wins).
"""

from ..rollups import totals_select
from . import Migration

_LEARNERS_SELECT = """
    SELECT school, course, cohort, learner, minState(timestamp) AS first_event, maxState(timestamp) AS last_event
    FROM {db}.statements
    GROUP BY school, course, cohort, learner
"""

MIGRATION = Migration(
    id="0020_activity_totals",
    forwards=(
        """
        CREATE TABLE IF NOT EXISTS {db}.activity_totals (
            school LowCardinality(String),
            course LowCardinality(String),
            cohort LowCardinality(String),
            day Date,
            verb_id LowCardinality(String),
            statements UInt64,
            voided UInt64,
            learners UInt64,
            completed UInt64,
            passed UInt64,
            failed UInt64,
            first_event DateTime64(3, 'UTC'),
            last_event DateTime64(3, 'UTC'),
            version UInt64
        ) ENGINE = ReplacingMergeTree(version)
        PARTITION BY toYYYYMM(day)
        ORDER BY (school, course, cohort, day, verb_id)
        """,
        """
        CREATE TABLE IF NOT EXISTS {db}.activity_learners (
            school LowCardinality(String),
            course LowCardinality(String),
            cohort LowCardinality(String),
            learner String,
            first_event AggregateFunction(min, DateTime64(3, 'UTC')),
            last_event AggregateFunction(max, DateTime64(3, 'UTC'))
        ) ENGINE = AggregatingMergeTree
        ORDER BY (school, course, cohort, learner)
        """,
        "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.activity_learners_mv TO {db}.activity_learners AS "
        + _LEARNERS_SELECT,
        "INSERT INTO {db}.activity_learners " + _LEARNERS_SELECT,
        "INSERT INTO {db}.activity_totals " + totals_select("now()", "1"),
    ),
    backwards=(
        "DROP TABLE IF EXISTS {db}.activity_learners_mv",
        "DROP TABLE IF EXISTS {db}.activity_learners",
        "DROP TABLE IF EXISTS {db}.activity_totals",
    ),
)
