"""Render DDL written for current ClickHouse for the server that will run it.

DDL in the migrations targets ClickHouse >= 23.8. Debian 12 ships 18.16, which lacks
DateTime64, LowCardinality (non-experimental), codecs, TTL and some settings; for that
server only, we map them to the nearest old form. Pure string work, testable offline.
"""

from __future__ import annotations

import re

MODERN = (23, 8)

_DT64 = re.compile(r"DateTime64\(\s*\d+\s*(?:,\s*'[^']*'\s*)?\)")
_LOWCARD = re.compile(r"LowCardinality\(([^()]*(?:\([^()]*\))?[^()]*)\)")
_CODEC = re.compile(r"\s+CODEC\([^()]*(?:\([^()]*\)[^()]*)*\)")
_TTL = re.compile(r"\n\s*TTL [^\n]*")
_SETTINGS = re.compile(r"\n\s*SETTINGS [^\n]*")
_DT_TZ = re.compile(r"DateTime\('UTC'\)")


def render(sql: str, version: tuple[int, ...], database: str) -> str:
    """Fill ``{db}`` and map modern-only syntax when ``version`` < 19."""
    out = sql.replace("{db}", database)
    if version >= (19,):
        return out
    out = _DT64.sub("DateTime", out)
    out = _DT_TZ.sub("DateTime", out)
    out = _LOWCARD.sub(r"\1", out)
    out = _CODEC.sub("", out)
    out = _TTL.sub("", out)
    out = _SETTINGS.sub("", out)
    out = out.replace("toDateTime64(", "toDateTime(")
    return out
