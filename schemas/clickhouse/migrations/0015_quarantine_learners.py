"""``quarantine.learners``: pseudonyms of everyone a refused body names, so an erasure finds it.

A refused statement is kept as its raw body, which may hold a learner's mbox, account or
name; ``forget-learner`` knows only pseudonyms. The quarantine sink lists the pseudonym
of every agent it can identify anywhere in the body (actor, object, context, members),
like ``statements_raw.learners``. Records written before this migration have none.
"""

from . import Migration

MIGRATION = Migration(
    id="0015_quarantine_learners",
    forwards=("ALTER TABLE {db}.quarantine ADD COLUMN IF NOT EXISTS learners Array(String)",),
    backwards=("ALTER TABLE {db}.quarantine DROP COLUMN IF EXISTS learners",),
)
