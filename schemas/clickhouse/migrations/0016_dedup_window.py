"""A deduplication window on every table a sink writes: a retried insert adds nothing.

The sinks give every insert a deduplication token made from the content of the Kafka
records it came from (``sinks/consumer.py``). When an insert's answer is lost (network,
server restart) the sink retries it with the same token; ClickHouse drops the retry if the
first attempt was written, but only on a table that keeps the tokens of its last blocks
(``non_replicated_deduplication_window``). ``statements`` and ``statements_raw`` have had
it since 0001. Replays in other batch boundaries carry other tokens; the tables' keys
collapse those (see 0001). Servers before 19 have no such setting: there the statements
render to nothing and retries are collapsed by key only (``schemas/clickhouse/ddl.py``).
"""

from . import Migration

WINDOW = 100
TABLES = (
    "statement_voids", "lrs_statements", "lrs_statement_ids", "lrs_voids", "lrs_agents", "lrs_activities",
    "lrs_attachment_refs", "engagement", "mastery", "cohort_health", "alerts", "quarantine",
)  # fmt: skip

MIGRATION = Migration(
    id="0016_dedup_window",
    forwards=tuple(
        f"ALTER TABLE {{db}}.{t} MODIFY SETTING non_replicated_deduplication_window = {WINDOW}" for t in TABLES
    ),
    backwards=tuple(f"ALTER TABLE {{db}}.{t} RESET SETTING non_replicated_deduplication_window" for t in TABLES),
)
