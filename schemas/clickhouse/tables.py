"""Table names and the column lists the sinks insert; the DDL lives in ``migrations/``.

Column tuples are in the order of the row tuples built by ``sinks/rows.py``; a test checks
each against ``system.columns`` of a migrated database on both engines.
"""

from __future__ import annotations

# -- statements (migration 0001) -------------------------------------------------------
# One row per statement id: pseudonymous analytics columns (researchers read this).
# ``violations`` (migration 0012): rule ids a tolerant ingestion policy let through.
STATEMENTS = "statements"
STATEMENT_COLUMNS = (
    "statement_id", "school", "course", "cohort", "learner", "verb_id", "object_id", "object_type",
    "registration", "result_success", "result_completion", "result_score_scaled", "result_score_raw",
    "result_duration_ms", "timestamp", "stored", "voided", "violations",
)  # fmt: skip
# Position of columns the sink reads back from its own rows.
STATEMENT_ID_INDEX = STATEMENT_COLUMNS.index("statement_id")
STATEMENT_VOIDED_INDEX = STATEMENT_COLUMNS.index("voided")

# The statement exactly as stored (LRS reads, Aspects/Ralph view); never granted to
# researchers. ``learners`` = pseudonyms of every agent the statement names (actor,
# object, context instructor/team, authority, SubStatement), for erasure.
STATEMENTS_RAW = "statements_raw"
RAW_COLUMNS = ("school", "statement_id", "stored", "timestamp", "learner", "learners", "raw")

# One row per (voided statement, voiding statement), written when a voiding statement
# (verb http://adlnet.gov/expapi/verbs/voided, object StatementRef) is stored.
STATEMENT_VOIDS = "statement_voids"
VOID_COLUMNS = ("school", "voided_statement_id", "voiding_statement_id", "stored")

# Statements refused at the edge with their reasons (migration 0014, schemas/quarantine.py).
QUARANTINE = "quarantine"
QUARANTINE_COLUMNS = (
    "school", "received", "record_id", "received_ms", "credential", "stage", "xapi_version", "state", "rules", "paths",
    "messages", "body", "body_bytes", "truncated", "version", "learners",
)  # fmt: skip

# -- derived records (migration 0002), one table per topic of schemas/records.py -------
ENGAGEMENT = "engagement"
ENGAGEMENT_COLUMNS = (
    "school", "course", "cohort", "learner", "grain", "period_start", "statements", "sessions", "active_ms",
    "last_event", "version",
)  # fmt: skip

# The same rows sorted time-first (migration 0021), copied by ClickHouse from `engagement`
# (materialized view): the dashboard's newest-period and range reads.
ENGAGEMENT_BY_TIME = "engagement_by_time"
ENGAGEMENT_BY_TIME_MV = "engagement_by_time_mv"
# Which days and hours each school has engagement in (migration 0022, materialized view on
# `engagement`): the dashboard's newest day and hour per school without a scan of every row.
ENGAGEMENT_PERIODS = "engagement_periods"
ENGAGEMENT_PERIODS_MV = "engagement_periods_mv"
# Finalized engagement per (school, course, cohort, hour) (migration 0023): the dashboard's
# sparkline; recomputed from engagement_by_time by the engagement sink (sinks/hourly.py).
ENGAGEMENT_HOURLY = "engagement_hourly"

MASTERY = "mastery"
MASTERY_COLUMNS = (
    "school", "course", "learner", "skill", "p_mastery", "observations", "correct", "event_time", "version",
)  # fmt: skip

# Every estimate written to `mastery`, kept per event time (migration 0019; mastery sink).
MASTERY_HISTORY = "mastery_history"
MASTERY_HISTORY_COLUMNS = MASTERY_COLUMNS

COHORT_HEALTH = "cohort_health"
COHORT_HEALTH_COLUMNS = (
    "school", "course", "cohort", "at", "learners", "disengaged", "share", "median_active_ms_7d", "version",
)  # fmt: skip

ALERTS = "alerts"
ALERT_COLUMNS = (
    "alert_id", "school", "course", "cohort", "state", "at", "fired_at", "learners", "disengaged", "share",
    "threshold", "disengaged_learners", "version",
)  # fmt: skip

# Acknowledgements of alert episodes by operators (migration 0017; dashboard, not research).
ALERT_ACKNOWLEDGEMENTS = "alert_acknowledgements"
ALERT_ACK_COLUMNS = ("alert_id", "school", "course", "cohort", "operator", "note", "at")

# Per-school directory of learners' display names for staff (migration 0018): the latest
# statement's actor name (schemas.identity.display_name) per (school, learner); written by
# the statements sink with the statement rows. Never a research table: names are people.
LEARNER_NAMES = "learner_names"
LEARNER_NAME_COLUMNS = ("school", "learner", "name", "version", "statement_id")

# -- rollups (migration 0003): maintained by ClickHouse from `statements` ---------------
ACTIVITY_DAILY = "activity_daily"
ACTIVITY_DAILY_MV = "activity_daily_mv"
# Finalized exact counts per activity_daily group and learners per cohort (migration 0020):
# what the dashboard reads; activity_totals is recomputed from activity_daily (sinks/totals.py).
ACTIVITY_TOTALS = "activity_totals"
ACTIVITY_LEARNERS = "activity_learners"

# -- compatibility views (migration 0004) ----------------------------------------------
XAPI_EVENTS_ALL = "xapi_events_all"
STATEMENTS_CURRENT = "statements_current"

# -- pipeline bookkeeping (migration 0005) ---------------------------------------------
SINK_PROGRESS = "sink_progress"
PROGRESS_COLUMNS = (
    "sink", "topic", "partition", "partitions", "committed_offset", "end_offset", "caught_up_at",
    "newest_received", "updated", "caught_up_ms",  # migration 0024: caught_up_at in ms on every server
)  # fmt: skip
# The version that picks a partition's latest progress row (``argMax(column, PROGRESS_LATEST)``):
# the newest ``updated``, and of rows written in the same instant (whole seconds on
# clickhouse-server 18.16; a sink publishes after a commit and again on its interval) the
# furthest one, not whichever row argMax met first.
PROGRESS_LATEST = "(updated, committed_offset, caught_up_ms, caught_up_at)"
FORGOTTEN_LEARNERS = "forgotten_learners"
FORGOTTEN_COLUMNS = ("learner", "forgotten_at", "reason")

# Tables researchers may read (pseudonymous analytics only); see schemas/clickhouse/access.py.
RESEARCH_TABLES = (
    STATEMENTS, STATEMENT_VOIDS, ENGAGEMENT, ENGAGEMENT_BY_TIME, ENGAGEMENT_PERIODS, ENGAGEMENT_HOURLY, MASTERY, MASTERY_HISTORY, COHORT_HEALTH, ALERTS,
    ACTIVITY_DAILY, ACTIVITY_TOTALS, ACTIVITY_LEARNERS, STATEMENTS_CURRENT,
)  # fmt: skip
# Tables a school's own users may read, each filtered to their school by a row policy.
SCHOOL_TABLES = (
    STATEMENTS, STATEMENT_VOIDS, ENGAGEMENT, ENGAGEMENT_BY_TIME, ENGAGEMENT_PERIODS, ENGAGEMENT_HOURLY, MASTERY, MASTERY_HISTORY, COHORT_HEALTH, ALERTS,
    ACTIVITY_DAILY, ACTIVITY_TOTALS, ACTIVITY_LEARNERS,
)  # fmt: skip
