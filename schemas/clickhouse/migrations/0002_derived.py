"""Tables of the derived records (``schemas/records.py``), one per topic.

Every record carries a deterministic ``version`` that grows with each update of its key,
so each table is a ``ReplacingMergeTree(version)`` sorted by exactly the record's key: a
replayed record lands on its own key with the same version (a no-op), an update replaces
the older row, and an old record arriving late never wins. Reads that count use ``FINAL``
or ``argMax(..., version)``.
"""

from . import Migration

MIGRATION = Migration(
    id="0002_derived",
    forwards=(
        # learnpulse.activity: statements per learner x course x event-time hour so far.
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
        # learnpulse.engagement: one row per learner x course x grain x period. Sorted for the
        # dashboard and cohort queries (school, course, cohort, grain, period) with the
        # learner last, which also makes the key the record's identity.
        """
        CREATE TABLE IF NOT EXISTS {db}.engagement (
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
        ORDER BY (school, course, cohort, grain, period_start, learner)
        """,
        # learnpulse.mastery: the latest BKT estimate per learner x skill (in a course).
        # Current state, not history, so no time partition: it stays small.
        """
        CREATE TABLE IF NOT EXISTS {db}.mastery (
            school LowCardinality(String),
            course LowCardinality(String),
            learner String,
            skill LowCardinality(String),
            p_mastery Float64,
            observations UInt32,
            correct UInt32,
            event_time DateTime64(3, 'UTC'),
            version UInt64
        ) ENGINE = ReplacingMergeTree(version)
        ORDER BY (school, course, skill, learner)
        """,
        # learnpulse.cohort_health: one snapshot per cohort and event time (a history, so a
        # cohort's trend is one key range).
        """
        CREATE TABLE IF NOT EXISTS {db}.cohort_health (
            school LowCardinality(String),
            course LowCardinality(String),
            cohort LowCardinality(String),
            at DateTime64(3, 'UTC'),
            learners UInt32,
            disengaged UInt32,
            share Float64,
            median_active_ms_7d UInt64,
            version UInt64
        ) ENGINE = ReplacingMergeTree(version)
        PARTITION BY toYYYYMM(at)
        ORDER BY (school, course, cohort, at)
        """,
        # learnpulse.alerts: one row per alert episode and state ("fired", "resolved"), so
        # both transitions stay visible; the current state of an episode is the row with
        # the highest version.
        """
        CREATE TABLE IF NOT EXISTS {db}.alerts (
            alert_id String,
            school LowCardinality(String),
            course LowCardinality(String),
            cohort LowCardinality(String),
            state LowCardinality(String),
            at DateTime64(3, 'UTC'),
            fired_at DateTime64(3, 'UTC'),
            learners UInt32,
            disengaged UInt32,
            share Float64,
            threshold Float64,
            disengaged_learners Array(String),
            version UInt64
        ) ENGINE = ReplacingMergeTree(version)
        ORDER BY (school, course, cohort, alert_id, state)
        """,
    ),
    backwards=(
        "DROP TABLE IF EXISTS {db}.alerts",
        "DROP TABLE IF EXISTS {db}.cohort_health",
        "DROP TABLE IF EXISTS {db}.mastery",
        "DROP TABLE IF EXISTS {db}.engagement",
        "DROP TABLE IF EXISTS {db}.learner_activity_hourly",
    ),
)
