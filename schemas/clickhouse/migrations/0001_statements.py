"""Statements: pseudonymous analytics rows, the raw JSON as stored, and voids.

Exactly-once by key, not by delivery: the sink may write a statement more than once
(replays after a crash, a rebalance, a replay of the topic from offset 0), so every
table here is a ReplacingMergeTree whose sorting key identifies the statement. Copies
collapse when parts merge; until then readers that count use ``FINAL`` or
``GROUP BY``/``argMax`` (see ``reporting/README.md``).
"""

from . import Migration

MIGRATION = Migration(
    id="0001_statements",
    forwards=(
        # ORDER BY (school, course, day, learner, statement_id):
        # - every reader is scoped to a school (row policies, dashboards), and research and
        #   dashboard queries then filter by course and a time range: those three prefix
        #   columns turn nearly every query into a primary-key range scan;
        # - learner next keeps one learner's statements of a day contiguous (per-learner
        #   trajectories, sessions, erasure);
        # - statement_id last makes the key unique per statement, which is what
        #   ReplacingMergeTree collapses on. A copy of a statement always has the same
        #   school/course/timestamp/learner (statements are immutable, xAPI Data §2.2), so
        #   it lands in the same monthly partition and the same key.
        # ReplacingMergeTree(voided): the sink re-inserts a statement with voided = 1 when a
        # voiding statement names it; the higher version wins, whatever the arrival order.
        # LowCardinality for columns with a few hundred distinct values per part (schools,
        # courses, cohorts, verbs, object types); learner and object_id stay String (tens of
        # thousands of values, where dictionaries stop paying).
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
            result_score_raw Nullable(Float64),
            result_duration_ms Nullable(UInt64),
            timestamp DateTime64(3, 'UTC'),
            stored DateTime64(3, 'UTC'),
            voided UInt8,
            INDEX statement_id_bf statement_id TYPE bloom_filter(0.01) GRANULARITY 4,
            INDEX verb_set verb_id TYPE set(64) GRANULARITY 4
        ) ENGINE = ReplacingMergeTree(voided)
        PARTITION BY toYYYYMM(timestamp)
        ORDER BY (school, course, toDate(timestamp), learner, statement_id)
        SETTINGS index_granularity = 8192, non_replicated_deduplication_window = 100
        """,
        # The statement exactly as stored, for LRS reads (reporting/lrs.py pages it by
        # (school, stored, statement_id), the sorting key) and xapi_events_all. Names and
        # mail addresses live here, so it is never granted to researchers.
        """
        CREATE TABLE IF NOT EXISTS {db}.statements_raw (
            school LowCardinality(String),
            statement_id UUID,
            stored DateTime64(3, 'UTC'),
            timestamp DateTime64(3, 'UTC'),
            learner String,
            learners Array(String),
            raw String CODEC(ZSTD(3)),
            INDEX statement_id_bf statement_id TYPE bloom_filter(0.01) GRANULARITY 4
        ) ENGINE = ReplacingMergeTree
        PARTITION BY toYYYYMM(stored)
        ORDER BY (school, stored, statement_id)
        SETTINGS index_granularity = 8192, non_replicated_deduplication_window = 100
        """,
        # Voided id -> voiding id. Small (voids are rare), keyed for "is this id voided?"
        # look-ups by the sink and anti-joins by readers.
        """
        CREATE TABLE IF NOT EXISTS {db}.statement_voids (
            school LowCardinality(String),
            voided_statement_id UUID,
            voiding_statement_id UUID,
            stored DateTime64(3, 'UTC')
        ) ENGINE = ReplacingMergeTree
        ORDER BY (school, voided_statement_id, voiding_statement_id)
        """,
    ),
    backwards=(
        "DROP TABLE IF EXISTS {db}.statement_voids",
        "DROP TABLE IF EXISTS {db}.statements_raw",
        "DROP TABLE IF EXISTS {db}.statements",
    ),
)
