"""Fill the staff directory of names (``learner_names``) from statements already stored.

The statements sink writes a learner's name with their statements (``sinks/rows.py``).
Statements stored before migration 0018 have none, and a replay does not bring them (the
sink skips statements already written whole, ``sinks/copies.py``). This reads
``statements_raw`` once, school by school and month by month in pages, and keeps per
(school, learner) the name the sink would have kept: the newest statement (by
:func:`~sinks.rows.name_version`) whose actor has a readable name. Inserting it is
idempotent (ReplacingMergeTree by version), so it may run twice or while the sinks run.
Learners in ``forgotten_learners`` are skipped: an erasure is never undone.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import orjson

from schemas.clickhouse import tables as T
from schemas.clickhouse.engine import ClickHouse
from schemas.errors import InvalidStatement
from schemas.identity import display_name
from schemas.xapi.timefmt import parse_ms

from .rows import name_version

PAGE = 5_000

_MONTHS_SQL = f"SELECT DISTINCT school, toYYYYMM(stored) AS m FROM {{db}}.{T.STATEMENTS_RAW} ORDER BY school, m"
_PAGE_SQL = (
    f"SELECT learner, toString(statement_id), raw FROM {{db}}.{T.STATEMENTS_RAW} "
    "WHERE school = {school:String} AND toYYYYMM(stored) = {month:UInt32} "
    "ORDER BY stored, statement_id LIMIT {offset:UInt64}, {limit:UInt64}"
)


def newest_names(ch: ClickHouse, page: int = PAGE) -> dict[tuple[str, str], tuple[int, str, uuid.UUID]]:
    """``{(school, learner): (version, name, statement id)}`` over every stored statement."""
    best: dict[tuple[str, str], tuple[int, str, uuid.UUID]] = {}
    for school, month in ch.query(_MONTHS_SQL):
        offset = 0
        while True:
            rows = ch.query(_PAGE_SQL, {"school": school, "month": int(month), "offset": offset, "limit": page})
            for learner, sid, raw in rows:
                found = _name_of(raw, sid)
                if found is None:
                    continue
                key = (str(school), str(learner))
                if key not in best or found[0] > best[key][0]:
                    best[key] = found
            if len(rows) < page:
                break
            offset += page
    return best


def _name_of(raw: str, sid: str) -> tuple[int, str, uuid.UUID] | None:
    try:
        statement = orjson.loads(raw)
        name = display_name(statement.get("actor"))
        if not name:
            return None
        statement_id = uuid.UUID(sid)
        return name_version(parse_ms(statement["timestamp"]), statement_id), name, statement_id
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError, InvalidStatement):
        return None  # the sink could not have named anyone from it either


def fill_names(ch: ClickHouse, log_line: Callable[[str], None] = lambda _m: None, page: int = PAGE) -> int:
    """Write the directory rows of every stored statement's learner (not forgotten ones); how many."""
    forgotten = {str(r[0]) for r in ch.query(f"SELECT DISTINCT learner FROM {{db}}.{T.FORGOTTEN_LEARNERS}")}
    rows = [(s, p, name, version, sid) for (s, p), (version, name, sid) in sorted(newest_names(ch, page).items())
            if p not in forgotten]  # fmt: skip
    for start in range(0, len(rows), PAGE):
        chunk = rows[start : start + PAGE]
        ch.insert(f"{ch.database}.{T.LEARNER_NAMES}", T.LEARNER_NAME_COLUMNS, [list(c) for c in zip(*chunk)])
    log_line(f"learner_names: {len(rows)} (school, learner) names written")
    return len(rows)
