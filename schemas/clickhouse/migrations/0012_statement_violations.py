"""``statements.violations``: the rule ids a statement accepted under a tolerant policy breaks.

Empty for every conformant statement (and every statement stored before this migration).
A researcher keeps to conformant statements with ``WHERE empty(violations)``, or counts a
producer's defects with ``arrayJoin(violations)``; the statement itself is stored
unchanged in ``statements_raw`` (see ``schemas/policy.py``).
"""

from . import Migration

MIGRATION = Migration(
    id="0012_statement_violations",
    forwards=("ALTER TABLE {db}.statements ADD COLUMN IF NOT EXISTS violations Array(LowCardinality(String))",),
    backwards=("ALTER TABLE {db}.statements DROP COLUMN IF EXISTS violations",),
)
