"""Drop ``learner_activity_hourly``: its topic (``learnpulse.activity``) is no longer produced.

The same figure, per learner × course × event hour, is ``engagement`` with
``grain = 'hour'`` (``statements``: each statement id once, where the activity record
counted copies of a replayed envelope again).
"""

from . import Migration

MIGRATION = Migration(
    id="0011_drop_learner_activity",
    forwards=("DROP TABLE IF EXISTS {db}.learner_activity_hourly",),
    backwards=(
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
)
