"""Statements (pseudonymous analytics + raw for LRS reads) and per-learner hourly activity."""

from . import Migration

MIGRATION = Migration(
    id="0001_statements",
    forwards=(
        # One row per statement id. Sorted for the dashboard and research queries, which
        # filter by school then course then a time range; learner next so per-learner
        # scans in a course are contiguous; statement_id last makes the key unique, so
        # ReplacingMergeTree collapses a statement written twice (replay, retried batch).
        # A duplicate always has the same school/course/timestamp, so it lands in the
        # same partition and sort position.
        """
        CREATE TABLE IF NOT EXISTS {db}.statements (
            statement_id UUID,
            school LowCardinality(String),
            course LowCardinality(String),
            cohort LowCardinality(String),
            learner String,
            verb_id LowCardinality(String),
            object_id String,
            object_type LowCardinality(String),
            registration Nullable(UUID),
            result_success Nullable(UInt8),
            result_completion Nullable(UInt8),
            result_score_scaled Nullable(Float64),
            result_duration_ms Nullable(UInt64),
            timestamp DateTime64(3, 'UTC'),
            stored DateTime64(3, 'UTC'),
            received DateTime64(3, 'UTC')
        ) ENGINE = ReplacingMergeTree
        PARTITION BY toYYYYMM(timestamp)
        ORDER BY (school, course, toDate(timestamp), learner, statement_id)
        SETTINGS index_granularity = 8192, non_replicated_deduplication_window = 1000
        """,
        # The statement exactly as stored, for LRS reads; not granted to researchers.
        """
        CREATE TABLE IF NOT EXISTS {db}.statements_raw (
            school LowCardinality(String),
            statement_id UUID,
            stored DateTime64(3, 'UTC'),
            raw String CODEC(ZSTD(3))
        ) ENGINE = ReplacingMergeTree
        PARTITION BY toYYYYMM(stored)
        ORDER BY (school, stored, statement_id)
        SETTINGS index_granularity = 8192, non_replicated_deduplication_window = 1000
        """,
        # Latest version per (learner, course, hour) wins.
        """
        CREATE TABLE IF NOT EXISTS {db}.learner_activity_hourly (
            school LowCardinality(String),
            course LowCardinality(String),
            cohort LowCardinality(String),
            learner String,
            hour DateTime('UTC'),
            statements UInt32,
            version UInt64
        ) ENGINE = ReplacingMergeTree(version)
        PARTITION BY toYYYYMM(hour)
        ORDER BY (school, course, hour, learner)
        """,
    ),
    backwards=(
        "DROP TABLE IF EXISTS {db}.learner_activity_hourly",
        "DROP TABLE IF EXISTS {db}.statements_raw",
        "DROP TABLE IF EXISTS {db}.statements",
    ),
)
