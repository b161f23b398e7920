"""``learner_names``: the per-school directory staff read (school, pseudonym) -> display name.

Written by the statements sink in the same batch as the statement rows (one row per
envelope whose actor has a readable name, ``schemas.identity.display_name``), so a replay
rewrites the same rows and nothing needs parsing JSON inside ClickHouse (18.16 could not).
ReplacingMergeTree(version) keyed by (school, learner): copies and older names collapse to
the row of the newest statement; ``version`` = statement timestamp in ms since 1900 << 20 | 20 bits
of the statement id, so two statements of one millisecond still have one winner whatever the
order they were written in. Readers take ``argMax(name, version)`` (no trust in merges).

Names are personal data: the table is not a research table (no researcher grant, refused by
the research SQL checker), read only by the operators' app for the schools in an
operator's scope, and ``forget-learner`` erases it (it has a ``learner`` column).
Statements stored before this migration add no name until the learner's next statement.
"""

from . import Migration

MIGRATION = Migration(
    id="0018_learner_names",
    forwards=(
        """
        CREATE TABLE IF NOT EXISTS {db}.learner_names (
            school LowCardinality(String),
            learner String,
            name String,
            version UInt64,
            statement_id UUID
        ) ENGINE = ReplacingMergeTree(version)
        ORDER BY (school, learner)
        """,
    ),
    backwards=("DROP TABLE IF EXISTS {db}.learner_names",),
)
