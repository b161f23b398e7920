"""Daily activity rollup maintained by ClickHouse: dashboards never scan ``statements``.

A materialized view turns every block inserted into ``statements`` into aggregate states
in ``activity_daily`` (AggregatingMergeTree, per school/course/cohort/day/verb).

Why only set-like aggregates (``uniqExact``, ``min``, ``max``): a materialized view sees
*inserts*, not the table's deduplicated content. The sink writes a statement again after
a crash or a replay (by design: at-least-once delivery, exactly-once by key), and a
voided statement is written a second time with ``voided = 1``. A ``count()`` or ``sum()``
state would count every copy; a set of statement ids counts each statement once however
often it arrives, so the rollup stays equal to ``statements FINAL``. For the same reason
the backfill below can run any number of times, concurrently with the sinks.
Conditional counts use ``uniqExactIf`` states (their type names the condition, which
18.16 requires to match exactly). Read them with ``uniqExactMerge`` /
``uniqExactIfMerge`` / ``minMerge`` / ``maxMerge`` and ``GROUP BY`` (see reporting/README.md).
"""

from ..rollups import ROLLUP_SELECT as _SELECT
from . import Migration

MIGRATION = Migration(
    id="0003_rollups",
    forwards=(
        # One key per school/course/cohort/day/verb: a school's dashboard reads one key
        # range; totals over verbs or cohorts merge the id sets (exact unions).
        """
        CREATE TABLE IF NOT EXISTS {db}.activity_daily (
            school LowCardinality(String),
            course LowCardinality(String),
            cohort LowCardinality(String),
            day Date,
            verb_id LowCardinality(String),
            statements AggregateFunction(uniqExact, UUID),
            voided AggregateFunction(uniqExactIf, UUID, UInt8),
            learners AggregateFunction(uniqExact, String),
            completed AggregateFunction(uniqExactIf, UUID, UInt8),
            passed AggregateFunction(uniqExactIf, UUID, UInt8),
            failed AggregateFunction(uniqExactIf, UUID, UInt8),
            first_event AggregateFunction(min, DateTime64(3, 'UTC')),
            last_event AggregateFunction(max, DateTime64(3, 'UTC'))
        ) ENGINE = AggregatingMergeTree
        PARTITION BY toYYYYMM(day)
        ORDER BY (school, course, cohort, day, verb_id)
        """,
        "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.activity_daily_mv TO {db}.activity_daily AS " + _SELECT,
        # Backfill what `statements` held before the view existed (idempotent, see above).
        "INSERT INTO {db}.activity_daily " + _SELECT,
    ),
    backwards=(
        "DROP TABLE IF EXISTS {db}.activity_daily_mv",
        "DROP TABLE IF EXISTS {db}.activity_daily",
    ),
)

