"""``sink_progress.caught_up_ms``: the caught-up instant in milliseconds on every server.

``caught_up_at`` is ``DateTime64(3)``, which clickhouse-server 18.16 keeps as whole seconds
(``schemas/clickhouse/ddl.py``): there the LRS's ``X-Experience-API-Consistent-Through``
fell up to a second behind what the statements sink had written, half a second on average.
Readers take ``caught_up_ms`` where it is set and ``caught_up_at`` for rows written before
(0 there); ``caught_up_at`` is still written, for readers of the table as it was.
"""

from . import Migration

MIGRATION = Migration(
    id="0024_progress_ms",
    forwards=("ALTER TABLE {db}.sink_progress ADD COLUMN IF NOT EXISTS caught_up_ms Int64 DEFAULT 0",),
    backwards=("ALTER TABLE {db}.sink_progress DROP COLUMN IF EXISTS caught_up_ms",),
)
