"""Every Prometheus metric learnpulse exports, named once.

Alert rules in ``deploy/prometheus/`` refer to these names; each process serves them on
``/metrics``. Labels stay low-cardinality (stage, topic, table, school — never learner).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Records read from Kafka by a consumer (sink or stream), by topic.
MESSAGES_IN = Counter("learnpulse_messages_in_total", "Kafka messages consumed", ["stage", "topic"])
# Records written: to Kafka by producers/streams, to ClickHouse by sinks (rows).
MESSAGES_OUT = Counter("learnpulse_messages_out_total", "Kafka messages produced", ["stage", "topic"])
STATEMENTS_OUT = Counter("learnpulse_statements_produced_total", "xAPI statements produced to Kafka", ["stage"])
# Producers (simulator, replay, bridge): statements Kafka did not acknowledge, statements
# refused by validation (by rule), the acknowledged rate over the last few seconds, and
# the event time of the latest statement produced (how far a replay/simulation has got).
STATEMENTS_FAILED = Counter("learnpulse_statements_failed_total", "xAPI statements Kafka did not acknowledge", ["stage"])
STATEMENTS_REJECTED = Counter(
    "learnpulse_statements_rejected_total", "Statements a producer refused as invalid", ["stage", "rule"]
)
PRODUCER_RATE = Gauge(
    "learnpulse_producer_statements_per_second", "Acknowledged statements per second, recent", ["stage"]
)
PRODUCER_EVENT_TIME = Gauge(
    "learnpulse_producer_event_time_seconds", "Event time (timestamp) of the latest statement produced", ["stage"]
)
ROWS_WRITTEN = Counter("learnpulse_rows_written_total", "Rows inserted into ClickHouse", ["table"])
# A process's ClickHouse connection moved to another replica of its URL (alt_hosts): the one
# it used did not answer (deploy/CLUSTER.md).
CLICKHOUSE_REPLICA_SWITCHES = Counter(
    "learnpulse_clickhouse_replica_switches_total", "ClickHouse connections moved to another replica"
)
# activity_totals groups a sink recomputed without waiting for its replica (a replica of the
# cluster was not active) and has not settled since (sinks/totals.py ReplicatedRecompute).
TOTALS_UNSETTLED_GROUPS = Gauge(
    "learnpulse_totals_unsettled_groups", "activity_totals groups recomputed while a replica was down, not yet settled"
)
# The same for engagement_hourly groups (sinks/hourly.py ReplicatedHourlyRecompute).
HOURLY_UNSETTLED_GROUPS = Gauge(
    "learnpulse_hourly_unsettled_groups", "engagement_hourly groups recomputed while a replica was down, not yet settled"
)
# Failures, by stage and a short kind ("clickhouse_unavailable", "deadletter", "delivery").
ERRORS = Counter("learnpulse_errors_total", "Errors by stage and kind", ["stage", "kind"])
DEADLETTERS = Counter("learnpulse_deadletter_total", "Records sent to the dead-letter topic", ["stage", "rule"])
BATCH_ROWS = Histogram(
    "learnpulse_sink_batch_rows",
    "Rows per ClickHouse insert",
    ["table"],
    buckets=(1, 10, 100, 1_000, 5_000, 10_000, 50_000, 100_000),
)
INSERT_SECONDS = Histogram("learnpulse_sink_insert_seconds", "Duration of one ClickHouse insert", ["table"])
# Where a sink's batch spends its time (sinks/consumer.py): filling, rows, insert, each
# after-insert step by name, commit, progress. What bounds Consistent-Through and the rollups' freshness.
BATCH_PHASE_SECONDS = Histogram(
    "learnpulse_sink_batch_phase_seconds",
    "Duration of one phase of a sink's batch",
    ["sink", "phase"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
# Messages between a consumer's committed offset and the partition end.
CONSUMER_LAG = Gauge("learnpulse_consumer_lag", "Consumer lag in messages", ["group", "topic", "partition"])
# Seconds between the LRS receiving a statement and the sink committing it.
FRESHNESS = Gauge("learnpulse_sink_freshness_seconds", "Receive-to-commit delay of the last batch", ["sink"])

# -- LRS gateway (producers/gateway) --
# HTTP requests to the Statements API by method and status, and their duration.
GATEWAY_REQUESTS = Counter("learnpulse_gateway_requests_total", "Statements API requests", ["method", "status"])
GATEWAY_REQUEST_SECONDS = Histogram(
    "learnpulse_gateway_request_seconds", "Statements API request duration", ["method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)  # fmt: skip
# Statements accepted (committed to Kafka) by the gateway.
GATEWAY_STATEMENTS = Counter("learnpulse_gateway_statements_total", "Statements accepted by the LRS gateway")
# Rejected credentials: "missing" (no/undecodable Basic header) or "invalid" (unknown key, wrong secret).
GATEWAY_AUTH_FAILURES = Counter("learnpulse_gateway_auth_failures_total", "Rejected LRS credentials", ["reason"])
# Requests the gateway refused to work on, by rule id: 429s (rate.address, rate.key, auth.rate.address,
# auth.rate.key, auth.locked-out, auth.busy; auth.lockout-started counts lock-outs begun), 413s
# (request.too-large, statement.too-large, batch.too-large) and 408 (request.timeout).
GATEWAY_REFUSALS = Counter("learnpulse_gateway_refusals_total", "Requests refused by a gateway limit", ["rule"])
# One Kafka transaction (group commit): its duration and how many requests it carried.
GATEWAY_COMMIT_SECONDS = Histogram(
    "learnpulse_gateway_commit_seconds", "Kafka transaction duration (begin to commit acknowledged)",
    buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)  # fmt: skip
GATEWAY_COMMIT_REQUESTS = Histogram(
    "learnpulse_gateway_commit_requests", "HTTP requests committed per Kafka transaction",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
)  # fmt: skip
# Kafka failures seen by the gateway: "transaction" (aborted), "timeout" (never started), "outcome_unknown".
GATEWAY_KAFKA_FAILURES = Counter("learnpulse_gateway_kafka_failures_total", "Gateway Kafka failures", ["kind"])
# Errors librdkafka reported to the lanes' producers (error_cb), by librdkafka's error name
# (_TRANSPORT, _ALL_BROKERS_DOWN, ...): most are retried by librdkafka and cost no request.
GATEWAY_KAFKA_CLIENT_ERRORS = Counter(
    "learnpulse_gateway_kafka_client_errors_total", "Errors librdkafka reported to the gateway's producers", ["error"]
)
# librdkafka's statistics of each lane (gateway.kafka_statistics_interval_ms), built at scrape
# time from its cumulative figures by producers/gateway/rdkafka_stats.py (a collector, so its
# totals are typed counters), all learnpulse_gateway_kafka_ with labels lane (transactional
# id) and broker: queued_messages, queued_bytes, messages_sent_total, sent_bytes_total,
# requests_total, request_retries_total, broker_errors_total{kind}, broker_disconnects_total,
# broker_up, broker_rtt_avg_seconds, broker_rtt_p99_seconds, transaction_state{state},
# idempotence_state{state}, producer_epochs_total.
# The accepted-id index (producers.lrsstore.statement_index): verdicts on offered ids
# (new / same / conflict / held: reserved by a write still waiting for Kafka), seconds per
# index transaction by operation (reserve / confirm / release), reservations taken over
# or freed after a gateway crash, and confirmations that failed after Kafka acknowledged.
GATEWAY_INDEX_VERDICTS = Counter("learnpulse_gateway_index_verdicts_total", "Offered statement ids by verdict", ["verdict"])
GATEWAY_INDEX_PRUNED = Counter(
    "learnpulse_gateway_index_pruned_total",
    "Accepted-id index entries whose stored statement was dropped once the statements sink had it",
)
GATEWAY_INDEX_SECONDS = Histogram(
    "learnpulse_gateway_index_seconds", "Accepted-id index transaction time", ["operation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
)  # fmt: skip
GATEWAY_INDEX_ORPHANS = Counter(
    "learnpulse_gateway_index_orphans_total", "Reservations of a crashed gateway freed or taken over", ["how"]
)
GATEWAY_INDEX_CONFIRM_FAILURES = Counter(
    "learnpulse_gateway_index_confirm_failures_total", "Statements Kafka acknowledged but the index could not confirm"
)

# -- LRS document resources (producers/gateway/documents.py) --
# Requests to State, Activity Profile, Agent Profile, /activities and /agents by resource,
# method and status, and their duration.
DOCUMENT_REQUESTS = Counter(
    "learnpulse_lrs_document_requests_total", "LRS document resource requests", ["resource", "method", "status"]
)
DOCUMENT_REQUEST_SECONDS = Histogram(
    "learnpulse_lrs_document_request_seconds", "LRS document resource request duration", ["resource", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)  # fmt: skip
# Documents written ("put", "merge") or deleted ("delete", "delete_many": documents removed).
DOCUMENT_CHANGES = Counter("learnpulse_lrs_documents_changed_total", "LRS documents written or deleted",
                           ["resource", "operation"])  # fmt: skip
# Refused writes: "precondition" (412), "missing_precondition" (409, a PUT without If-Match/
# If-None-Match on an existing document), "retried" (a merge re-read after a concurrent write).
DOCUMENT_CONFLICTS = Counter("learnpulse_lrs_document_conflicts_total", "LRS document concurrency conflicts",
                             ["resource", "kind"])  # fmt: skip
# CORS preflights answered: "granted" or "refused" (origin not allowed for any school).
CORS_PREFLIGHTS = Counter("learnpulse_gateway_cors_preflights_total", "CORS preflight requests", ["outcome"])

# -- streams (Faust worker) --
# Statements the stream processor applied, and those too late to change engagement figures.
STREAM_STATEMENTS = Counter("learnpulse_stream_statements_total", "Statements processed by the stream worker", ["agent"])
STREAM_LATE = Counter(
    "learnpulse_stream_late_statements_total", "Statements older than the learner's engagement horizon", ["agent"]
)
# Statements the stream processor had already applied (same statement id re-sent): changed nothing.
STREAM_DUPLICATES = Counter(
    "learnpulse_stream_duplicate_statements_total", "Statements skipped as copies of one already applied", ["agent"]
)
# Partitions of xapi.statements this worker holds since the group's last rebalance.
STREAM_ASSIGNED_PARTITIONS = Gauge(
    "learnpulse_stream_assigned_partitions", "Partitions of xapi.statements assigned to this stream worker"
)
# Per agent batch (``take_events``): how long processing it took, and the pause since the
# previous batch ended — Faust handing over the next records, an offset commit, or waiting
# for input (a pause while the consumer lag is above zero is a stall; issue 16 part 3: a
# commit must never stall the worker for seconds).
STREAM_BATCH_SECONDS = Histogram(
    "learnpulse_stream_batch_seconds", "Duration of processing one batch of a stream agent", ["agent"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
STREAM_BATCH_PAUSE_SECONDS = Histogram(
    "learnpulse_stream_batch_pause_seconds", "Time from the end of a stream agent's batch to the start of its next",
    ["agent"], buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
# Event-time watermark of each source partition of xapi.statements (epoch seconds).
STREAM_WATERMARK = Gauge("learnpulse_stream_watermark_seconds", "Event-time watermark per partition", ["partition"])
# Share of disengaged learners per cohort at the latest evaluated event time, and whether its alert is on.
COHORT_DISENGAGED_SHARE = Gauge(
    "learnpulse_cohort_disengaged_share", "Share of disengaged learners", ["school", "course", "cohort"]
)
COHORT_ALERT_ACTIVE = Gauge(
    "learnpulse_cohort_alert_active", "1 while a disengagement alert is fired", ["school", "course", "cohort"]
)

# -- alert notifier (sinks/notifier.py, `learnpulse notify`) --
# Alert records a target accepted (2xx), by target name and alert state (fired/resolved).
NOTIFIER_DELIVERED = Counter("learnpulse_notifier_delivered_total", "Alerts a target accepted", ["target", "state"])
# Failed deliveries by target and kind: "retryable" (no answer, 5xx, 408, 429: retried),
# "permanent" (other 4xx/3xx: dead-lettered), "resend" (a re-send of fired alerts to Alertmanager).
NOTIFIER_FAILED = Counter("learnpulse_notifier_failed_total", "Failed alert deliveries", ["target", "kind"])
# Retries scheduled after a transient failure (each one waits the backoff), by target.
NOTIFIER_RETRIES = Counter("learnpulse_notifier_retries_total", "Alert delivery retries", ["target"])
# Records not delivered: "duplicate"/"stale" (that state or a newer one was already handled
# for the cohort), "unrouted" (no target takes the school).
NOTIFIER_SKIPPED = Counter("learnpulse_notifier_skipped_total", "Alert records not delivered", ["reason"])
# Duration of one HTTP delivery attempt, by target.
NOTIFIER_REQUEST_SECONDS = Histogram(
    "learnpulse_notifier_request_seconds", "Alert delivery request duration", ["target"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)  # fmt: skip
# Fired alerts held (and re-sent) for Alertmanager until they resolve.
NOTIFIER_ACTIVE_ALERTS = Gauge("learnpulse_notifier_active_alerts", "Fired alerts kept alive in Alertmanager")

# -- Ingestion policies and the quarantine (issue 14) --
# Statements accepted although they break a rule their credential tolerates: one count per
# statement and rule, by stage (gateway, replay, bridge, quarantine-replay) and rule id.
STATEMENTS_TOLERATED = Counter(
    "learnpulse_statements_tolerated_total",
    "Statements accepted under a tolerant policy, per rule they break",
    ["stage", "rule"],
)
# Statements refused at the edge and kept in the quarantine (one per refused statement,
# by its first rule), and quarantine records that could not be kept (Kafka refused or
# the per-school bound was reached: "dropped" names why).
QUARANTINED = Counter("learnpulse_quarantined_total", "Refused statements kept in the quarantine", ["stage", "rule"])
QUARANTINE_DROPPED = Counter(
    "learnpulse_quarantine_dropped_total", "Refused statements the quarantine could not keep", ["stage", "reason"]
)
# Research SQL (POST /api/sql, `learnpulse sql`): queries by outcome ("ok", "truncated",
# "refused", "cancelled", "unavailable") and rule (a refusal's or a limit's rule id, else "").
SQL_QUERIES = Counter("learnpulse_sql_queries_total", "Research SQL queries by outcome and rule", ["outcome", "rule"])
SQL_SECONDS = Histogram("learnpulse_sql_query_seconds", "Duration of research SQL queries that ran")
# `learnpulse supervise`: restarts of the process it runs after it died (crash, SIGKILL, OOM).
SUPERVISOR_RESTARTS = Counter(
    "learnpulse_supervisor_restarts_total", "Restarts of a supervised process after it died", ["process"]
)
# Operators' sign-in to the dashboard (issue 17): attempts by outcome ("ok", "failed": wrong
# name or password, "locked": refused unchecked during a lock-out), and sign-outs.
OPERATOR_SIGNINS = Counter("learnpulse_operator_signins_total", "Operator sign-in attempts by outcome", ["outcome"])
OPERATOR_SIGNOUTS = Counter("learnpulse_operator_signouts_total", "Operator sign-outs")
