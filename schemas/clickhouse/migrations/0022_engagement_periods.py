"""``engagement_periods``: which event-time days and hours each school has engagement in.

The dashboard's "newest day" and "newest hour" of a school (summary, /api/state) were a
``max(period_start)`` over every hourly row of ``engagement_by_time`` (one per learner x
cohort x hour: about as many rows as statements, 35–55 ms at 10M). This table keeps one row
per (grain, school, period): the same maxima over a few thousand rows.

Exact by construction: a row says "``engagement`` has a row of this grain, school and
period". A materialized view on ``engagement`` writes one for every row written there, so a
replayed, copied or newer-version engagement row adds the same key again
(``ReplacingMergeTree``: copies collapse, and ``max``/``IN`` never count them). Rows leave
only when ``forget-learner`` erases the last engagement row of a period: it then deletes
the periods left without engagement rows (``sinks/forget.py``). No ``learner`` column:
nothing here names anyone. The backfill copies what ``engagement`` holds now (idempotent).
"""

from . import Migration

_SELECT = "SELECT DISTINCT grain, school, period_start FROM {db}.engagement"

MIGRATION = Migration(
    id="0022_engagement_periods",
    forwards=(
        """
        CREATE TABLE IF NOT EXISTS {db}.engagement_periods (
            grain LowCardinality(String),
            school LowCardinality(String),
            period_start DateTime('UTC')
        ) ENGINE = ReplacingMergeTree
        PARTITION BY toYYYYMM(period_start)
        ORDER BY (grain, school, period_start)
        """,
        "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.engagement_periods_mv TO {db}.engagement_periods AS " + _SELECT,
        "INSERT INTO {db}.engagement_periods " + _SELECT,
    ),
    backwards=(
        "DROP TABLE IF EXISTS {db}.engagement_periods_mv",
        "DROP TABLE IF EXISTS {db}.engagement_periods",
    ),
)
