"""LRS read index: what GET /statements filters on, and attachment contents.

The statement JSON itself stays in ``statements_raw`` (one source of truth for reads,
byte-for-byte); these tables only answer *which* statements match, in which order.
Rows come from :func:`sinks.lrs_rows.lrs_rows` (the statements sink writes them in the
same batch as ``statements_raw``, before committing its offsets) and, for attachments,
from the gateway (content is stored before the statement is sent to Kafka).

Times are ``stored_ms Int64`` (epoch ms), not DateTime64: ordering and ``since``/``until``
must keep millisecond precision on every server, and 18.16 has no DateTime64.
Every table is a ReplacingMergeTree keyed so that a replayed envelope adds nothing.
Agents are indexed by ``sha256(canonical IFI)``, so no mail address sits in the index.
None of these tables is for researchers (they reveal who did what): grant them only to
the pipeline's writer and the LRS reader.
"""

from . import Migration

MIGRATION = Migration(
    id="0010_lrs_index",
    forwards=(
        # The page order of GET /statements: (school, stored, id). ref: the StatementRef
        # target (has_ref=1), for the StatementRef filter rule (Communication §2.1.3.s3).
        """
        CREATE TABLE IF NOT EXISTS {db}.lrs_statements (
            school LowCardinality(String),
            stored_ms Int64,
            statement_id UUID,
            verb_id String,
            registration String,
            has_ref UInt8,
            ref_id UUID,
            voiding UInt8
        ) ENGINE = ReplacingMergeTree
        PARTITION BY toYYYYMM(toDateTime(intDiv(stored_ms, 1000)))
        ORDER BY (school, stored_ms, statement_id)
        """,
        # Point look-ups by id: conflict checks on write, GET ?statementId=.
        """
        CREATE TABLE IF NOT EXISTS {db}.lrs_statement_ids (
            school LowCardinality(String),
            statement_id UUID,
            stored_ms Int64,
            voiding UInt8
        ) ENGINE = ReplacingMergeTree
        ORDER BY (school, statement_id)
        """,
        # Voided statement id -> the voiding statement (Data §2.3.2). A voiding statement
        # may arrive before its target; the target is voided from the moment it exists.
        """
        CREATE TABLE IF NOT EXISTS {db}.lrs_voids (
            school LowCardinality(String),
            voided_id UUID,
            voiding_id UUID,
            stored_ms Int64
        ) ENGINE = ReplacingMergeTree
        ORDER BY (school, voided_id, voiding_id)
        """,
        # agent = sha256 hex of the canonical IFI; direct=1: actor or object (or a member
        # of a Group there), direct=0: only authority/instructor/team/context agents or a
        # SubStatement (the related_agents=true matches).
        """
        CREATE TABLE IF NOT EXISTS {db}.lrs_agents (
            school LowCardinality(String),
            agent String,
            statement_id UUID,
            direct UInt8
        ) ENGINE = ReplacingMergeTree
        ORDER BY (school, agent, statement_id, direct)
        """,
        # direct=1: the statement's object; direct=0: context activities or a SubStatement
        # (the related_activities=true matches).
        """
        CREATE TABLE IF NOT EXISTS {db}.lrs_activities (
            school LowCardinality(String),
            activity_id String,
            statement_id UUID,
            direct UInt8
        ) ENGINE = ReplacingMergeTree
        ORDER BY (school, activity_id, statement_id, direct)
        """,
        # Attachment contents by SHA-2, per school; base64 text so that every driver and
        # output format carries binary data unchanged.
        """
        CREATE TABLE IF NOT EXISTS {db}.lrs_attachments (
            school LowCardinality(String),
            sha2 String,
            content_type String,
            content_b64 String CODEC(ZSTD(3)),
            stored_ms Int64
        ) ENGINE = ReplacingMergeTree
        ORDER BY (school, sha2)
        """,
    ),
    backwards=(
        "DROP TABLE IF EXISTS {db}.lrs_attachments",
        "DROP TABLE IF EXISTS {db}.lrs_activities",
        "DROP TABLE IF EXISTS {db}.lrs_agents",
        "DROP TABLE IF EXISTS {db}.lrs_voids",
        "DROP TABLE IF EXISTS {db}.lrs_statement_ids",
        "DROP TABLE IF EXISTS {db}.lrs_statements",
    ),
)
