"""``alert_acknowledgements``: who acknowledged a disengagement alert episode, when, with what note.

Written by the dashboard (an operator acknowledges an alert of a cohort in their scope),
read by its alerts page. Staff names and notes, no learner: not a research table.
"""

from . import Migration

MIGRATION = Migration(
    id="0017_alert_acknowledgements",
    forwards=(
        """
        CREATE TABLE IF NOT EXISTS {db}.alert_acknowledgements (
            alert_id String,
            school LowCardinality(String),
            course LowCardinality(String),
            cohort LowCardinality(String),
            operator String,
            note String,
            at DateTime64(3, 'UTC')
        ) ENGINE = MergeTree
        ORDER BY (school, alert_id, at)
        """,
    ),
    backwards=("DROP TABLE IF EXISTS {db}.alert_acknowledgements",),
)
