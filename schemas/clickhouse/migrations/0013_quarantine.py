"""``quarantine``: statements refused at the edge, with their reasons (schemas/quarantine.py).

One row per quarantine record, keyed (school, received, record_id): a replay re-inserts
the record with its new ``state`` and a higher ``version``, and ReplacingMergeTree keeps
the latest (readers use FINAL). ``received_ms`` repeats ``received`` as epoch ms, which
every server reads alike (18.16 has no DateTime64). The TTL bounds what is kept per school in time; the
producers bound it in rate (``QuarantineWriter``). The raw body may hold names and mail
addresses: like ``statements_raw``, never granted to researchers.
"""

from . import Migration

MIGRATION = Migration(
    id="0013_quarantine",
    forwards=(
        """
        CREATE TABLE IF NOT EXISTS {db}.quarantine (
            school LowCardinality(String),
            received DateTime64(3, 'UTC'),
            record_id UUID,
            received_ms Int64,
            credential String,
            stage LowCardinality(String),
            xapi_version LowCardinality(String),
            state LowCardinality(String),
            rules Array(LowCardinality(String)),
            paths Array(String),
            messages Array(String),
            body String CODEC(ZSTD(3)),
            body_bytes UInt32,
            truncated UInt8,
            version UInt64
        ) ENGINE = ReplacingMergeTree(version)
        PARTITION BY toYYYYMM(received)
        ORDER BY (school, received, record_id)
        TTL toDateTime(received) + INTERVAL 30 DAY
        SETTINGS index_granularity = 8192
        """,
    ),
    backwards=("DROP TABLE IF EXISTS {db}.quarantine",),
)
