"""``mastery_history``: every BKT estimate the pipeline wrote, kept over time.

``mastery`` keeps only the current estimate per learner × skill (ReplacingMergeTree keyed
without time). The mastery sink writes each estimate into this table too, in the same
batch: one row per estimate the stream worker emitted (it emits one per learner × skill
whose estimate changed in a processing batch), keyed by ``(school, course, learner,
skill, event_time)`` with ``version`` as the replacing version. So

- a retried insert (same deduplication token, ``non_replicated_deduplication_window``) adds
  nothing; where the server keeps no tokens (18.16) and for replays in other batch
  boundaries, the copies have the same key and collapse (readers use ``FINAL`` or
  ``argMax(…, version)``);
- a later version at the same event time (a late or voided observation recomputed the
  estimate) replaces the earlier one: the history holds, per event time, the newest
  estimate the pipeline made for that time.

Pseudonymous like ``mastery``: a research table and a school table (row policies); erased by
``forget-learner`` (it has a ``learner`` column). The backfill copies the current estimates
already in ``mastery`` (idempotent: same keys). On 18.16 ``event_time`` keeps whole seconds,
so two estimates within one second are one point there.
"""

from . import Migration

_COLUMNS = "school, course, learner, skill, p_mastery, observations, correct, event_time, version"

MIGRATION = Migration(
    id="0019_mastery_history",
    forwards=(
        """
        CREATE TABLE IF NOT EXISTS {db}.mastery_history (
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
        PARTITION BY toYYYYMM(event_time)
        ORDER BY (school, course, learner, skill, event_time)
        SETTINGS index_granularity = 8192, non_replicated_deduplication_window = 100
        """,
        f"INSERT INTO {{db}}.mastery_history ({_COLUMNS}) SELECT {_COLUMNS} FROM {{db}}.mastery FINAL",
    ),
    backwards=("DROP TABLE IF EXISTS {db}.mastery_history",),
)
