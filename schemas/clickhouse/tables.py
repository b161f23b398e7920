"""Table names and the column lists the sinks insert; the DDL lives in ``migrations/``."""

from __future__ import annotations

STATEMENTS = "statements"
STATEMENT_COLUMNS = (
    "statement_id", "school", "course", "cohort", "learner", "verb_id", "object_id", "object_type",
    "registration", "result_success", "result_completion", "result_score_scaled", "result_duration_ms",
    "timestamp", "stored", "received",
)  # fmt: skip

STATEMENTS_RAW = "statements_raw"
RAW_COLUMNS = ("school", "statement_id", "stored", "raw")

LEARNER_ACTIVITY_HOURLY = "learner_activity_hourly"
ACTIVITY_COLUMNS = ("school", "course", "cohort", "learner", "hour", "statements", "version")
