"""Render DDL written for current ClickHouse for the server that will run it.

DDL in the migrations targets ClickHouse >= 23.8 (checked on chDB, ClickHouse 26.9).
Debian 12 ships a 18.16 server; for servers older than 19 only, we map what it lacks to
the nearest old form. Pure string work, testable offline.

What is degraded on 18.16 (documented for operators in ``reporting/README.md``):

- ``DateTime64(p[, tz])`` -> ``DateTime``: timestamps keep whole seconds only; ordering
  and time ranges within one second are lost (the raw JSON keeps the exact value).
- ``DateTime('UTC')`` -> ``DateTime``: the server's zone applies (run it in UTC).
- ``LowCardinality(T)`` -> ``T`` (experimental there): more disk and memory, same results.
- ``CODEC(...)``, ``TTL``, ``SETTINGS`` of tables, data-skipping ``INDEX`` lines are
  dropped: larger raw table, no bloom-filter look-ups by statement id (full key-range scans
  instead), no insert deduplication window (replays are still collapsed by the key).
- ``ALTER TABLE … MODIFY SETTING`` / ``RESET SETTING`` (table settings) become a no-op
  ``SELECT 1``.
- ``ALTER TABLE … ADD COLUMN IF NOT EXISTS`` / ``DROP COLUMN IF EXISTS`` lose their
  ``IF [NOT] EXISTS`` (not in 18.16's grammar): such a migration is not re-runnable there
  once its ALTER went through (the migration runner records it right after).
- Users, roles, grants and row policies are not SQL there: see ``deploy/clickhouse/``.
"""

from __future__ import annotations

import re

MODERN = (23, 8)
# Oldest version whose DDL we render unchanged.
UNMAPPED_FROM = (19,)

_DT64 = re.compile(r"DateTime64\(\s*\d+\s*(?:,\s*'[^']*'\s*)?\)")
_DT_TZ = re.compile(r"DateTime\(\s*'[^']*'\s*\)")
_LOWCARD = re.compile(r"LowCardinality\(([^()]*(?:\([^()]*\))?[^()]*)\)")
_CODEC = re.compile(r"\s+CODEC\([^()]*(?:\([^()]*\)[^()]*)*\)")
_TTL = re.compile(r"\n\s*TTL [^\n]*")
_SETTINGS = re.compile(r"\n\s*SETTINGS [^\n]*")
# A data-skipping index declared as its own line of a column list (with its comma).
_INDEX_LINE = re.compile(r",\s*\n\s*INDEX [^\n]*?(?=,?\s*\n)")
_ALTER_COLUMN_IF = re.compile(r"\b(ADD COLUMN|DROP COLUMN) IF (?:NOT )?EXISTS\b")
_TABLE_SETTING = re.compile(r"\s*ALTER TABLE \S+ (?:ON CLUSTER \S+ )?(?:MODIFY|RESET) SETTING [^;]*\Z")
_TO_DT64 = re.compile(r"toDateTime64\(([^(),]+),\s*\d+\s*(?:,\s*('[^']*')\s*)?\)")


def needs_mapping(version: tuple[int, ...]) -> bool:
    """True for servers older than 19, which get the mapped DDL."""
    return version < UNMAPPED_FROM


def render(sql: str, version: tuple[int, ...], database: str) -> str:
    """Fill ``{db}`` and map modern-only syntax when ``version`` < 19."""
    out = sql.replace("{db}", database)
    if not needs_mapping(version):
        return out
    if _TABLE_SETTING.match(out):
        return "SELECT 1"
    out = _INDEX_LINE.sub("", out)
    out = _DT64.sub("DateTime", out)
    out = _DT_TZ.sub("DateTime", out)
    # Nested LowCardinality(Nullable(String)) needs two passes of the one-level pattern.
    for _ in range(2):
        out = _LOWCARD.sub(r"\1", out)
    out = _CODEC.sub("", out)
    out = _TTL.sub("", out)
    out = _SETTINGS.sub("", out)
    out = _ALTER_COLUMN_IF.sub(r"\1", out)
    out = _TO_DT64.sub(lambda m: f"toDateTime({m.group(1)}{', ' + m.group(2) if m.group(2) else ''})", out)
    return out
