"""Pipeline bookkeeping: sink progress (LRS consistent-through, freshness) and erasures."""

from . import Migration

MIGRATION = Migration(
    id="0005_pipeline",
    forwards=(
        # One row per sink x topic partition, replaced on every commit (newest `updated`
        # wins). `caught_up_at`: the latest time at which the committed offset had reached
        # the partition's end offset measured at that time, i.e. every record Kafka had
        # acknowledged before `caught_up_at` is in ClickHouse. `partitions` = the topic's
        # partition count, so readers know when a partition has no row yet.
        """
        CREATE TABLE IF NOT EXISTS {db}.sink_progress (
            sink LowCardinality(String),
            topic LowCardinality(String),
            partition UInt32,
            partitions UInt32,
            committed_offset Int64,
            end_offset Int64,
            caught_up_at DateTime64(3, 'UTC'),
            newest_received DateTime64(3, 'UTC'),
            updated DateTime64(3, 'UTC')
        ) ENGINE = ReplacingMergeTree(updated)
        ORDER BY (sink, topic, partition)
        """,
        # Learners erased by `learnpulse forget-learner`; sinks drop their rows from then
        # on (Kafka still holds their records until retention ends, and a replay must not
        # bring them back).
        """
        CREATE TABLE IF NOT EXISTS {db}.forgotten_learners (
            learner String,
            forgotten_at DateTime64(3, 'UTC'),
            reason String
        ) ENGINE = ReplacingMergeTree(forgotten_at)
        ORDER BY learner
        """,
    ),
    backwards=(
        "DROP TABLE IF EXISTS {db}.forgotten_learners",
        "DROP TABLE IF EXISTS {db}.sink_progress",
    ),
)
