"""``engagement_hourly``: the hourly engagement of each cohort, finalized, for the sparkline.

The dashboard's sparkline (statements per event-time hour over the newest 24 hours) summed
``engagement_by_time FINAL`` over every learner's hour rows of those 24 hours (one per
learner x cohort x hour: 32 ms p50, 77 ms p95 at 10M statements, 327 ms at 100M). This
table holds one row per (school, course, cohort, hour) with the exact figures of that
cohort's hour as ``engagement`` holds them now:

- ``statements``, ``sessions``, ``active_ms``: the sums over the group's engagement rows
  (``FINAL``: each learner's newest version); summable over cohorts and hours, as the
  engagement rows are;
- ``learners``: how many learners have engagement in that cohort and hour (exact for the
  group; *not* summable over hours or cohorts: a learner active in two counts twice).

Like ``activity_totals`` (0020) it is written only by a recompute
``INSERT ... SELECT ... FROM engagement_by_time FINAL WHERE <groups>`` (sinks/hourly.py),
never by a materialized view (a view sees inserted rows, not which version is the newest):
the engagement sink after each batch, ``forget-learner`` after an erasure, and the
backfill below. ``ReplacingMergeTree(version)``: ``version`` = the server's clock in whole
seconds in the high 32 bits, the sum of the group's engagement row versions plus its row
count in the low 32 bits (a later view of the group under inserts has a larger sum); read
with ``FINAL``. No ``learner`` column: nothing here names anyone.
"""

from ..rollups import hourly_select
from . import Migration

MIGRATION = Migration(
    id="0023_engagement_hourly",
    forwards=(
        """
        CREATE TABLE IF NOT EXISTS {db}.engagement_hourly (
            school LowCardinality(String),
            course LowCardinality(String),
            cohort LowCardinality(String),
            period_start DateTime('UTC'),
            statements UInt64,
            sessions UInt64,
            active_ms UInt64,
            learners UInt64,
            version UInt64
        ) ENGINE = ReplacingMergeTree(version)
        PARTITION BY toYYYYMM(period_start)
        ORDER BY (school, period_start, course, cohort)
        """,
        "INSERT INTO {db}.engagement_hourly " + hourly_select("now()", "1"),
    ),
    backwards=("DROP TABLE IF EXISTS {db}.engagement_hourly",),
)
