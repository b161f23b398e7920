"""``engagement_by_time``: the rows of ``engagement``, sorted time-first for the dashboard.

``engagement`` is sorted (school, course, cohort, grain, period_start, learner): right for
one cohort's learners, but the dashboard's "newest day", "newest hour", "last 7 days",
"last 24 hours" and the trends' ranges span every course and cohort, so there the primary
key cannot skip anything and ``FINAL`` merges the whole table (seconds at 10M statements).
This table holds the same rows sorted (grain, school, period_start, course, cohort,
learner): a grain and a period range (per school) are a few key ranges, and ``FINAL``
merges only those.

The same identity as ``engagement`` (every key column, another order) and the same
``ReplacingMergeTree(version)``: a replayed row with the same version is a no-op, a higher
version replaces, a copy never counts twice (readers use ``FINAL`` or argMax by version).
A materialized view copies every block written to ``engagement`` (by the sink, a backfill
or a test), so the two never differ in content; a retried or replayed block is a copy
that collapses here as it does there. ``forget-learner`` erases from both (it deletes from
every MergeTree table with a ``learner`` column). The backfill copies what ``engagement``
held before the view existed (idempotent: same keys and versions).
"""

from . import Migration

_COLUMNS = "school, course, cohort, learner, grain, period_start, statements, sessions, active_ms, last_event, version"

MIGRATION = Migration(
    id="0021_engagement_by_time",
    forwards=(
        """
        CREATE TABLE IF NOT EXISTS {db}.engagement_by_time (
            school LowCardinality(String),
            course LowCardinality(String),
            cohort LowCardinality(String),
            learner String,
            grain LowCardinality(String),
            period_start DateTime('UTC'),
            statements UInt32,
            sessions UInt32,
            active_ms UInt64,
            last_event DateTime64(3, 'UTC'),
            version UInt64
        ) ENGINE = ReplacingMergeTree(version)
        PARTITION BY toYYYYMM(period_start)
        ORDER BY (grain, school, period_start, course, cohort, learner)
        SETTINGS index_granularity = 8192, non_replicated_deduplication_window = 100
        """,
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.engagement_by_time_mv TO {{db}}.engagement_by_time AS "
        f"SELECT {_COLUMNS} FROM {{db}}.engagement",
        f"INSERT INTO {{db}}.engagement_by_time ({_COLUMNS}) SELECT {_COLUMNS} FROM {{db}}.engagement",
    ),
    backwards=(
        "DROP TABLE IF EXISTS {db}.engagement_by_time_mv",
        "DROP TABLE IF EXISTS {db}.engagement_by_time",
    ),
)
