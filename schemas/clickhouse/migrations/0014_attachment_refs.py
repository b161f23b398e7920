"""``lrs_attachment_refs``: which statement names which attachment (by SHA-2), per school.

``lrs_attachments`` keeps one content per (school, sha2), written by the gateway before the
statement reaches Kafka, and has no link to statements or learners. The statements sink
writes one row here per attachment a statement (or its SubStatement) declares, so an
erasure finds the attachments of a learner's statements and removes a content once no
other statement refers to it (``sinks/forget.py``). Statements stored before this
migration have no rows here; the erasure also reads their raw JSON.
"""

from . import Migration

MIGRATION = Migration(
    id="0014_attachment_refs",
    forwards=(
        """
        CREATE TABLE IF NOT EXISTS {db}.lrs_attachment_refs (
            school LowCardinality(String),
            sha2 String,
            statement_id UUID
        ) ENGINE = ReplacingMergeTree
        ORDER BY (school, sha2, statement_id)
        """,
    ),
    backwards=("DROP TABLE IF EXISTS {db}.lrs_attachment_refs",),
)
