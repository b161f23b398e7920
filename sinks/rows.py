"""Pure transforms from topic records to ClickHouse rows: no I/O, no clock.

Each returns ``{table: [row tuple in that table's column order]}``.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

import orjson

from schemas.clickhouse import tables as T
from schemas.envelope import StatementEnvelope
from schemas.errors import InvalidStatement
from schemas.records import ActivityRecord
from schemas.xapi.duration import duration_ms
from schemas.xapi.timefmt import parse_ms

from .lrs_rows import LRS_COLUMNS, lrs_rows

Rows = dict[str, list[tuple[Any, ...]]]
_EPOCH = datetime(1970, 1, 1)


def ms_to_datetime(ms: int) -> datetime:
    """Naive UTC datetime (both ClickHouse drivers read it in the column's zone, UTC)."""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).replace(tzinfo=None)


def _bool(value: Any) -> int | None:
    return None if value is None else int(bool(value))


def statement_rows(raw: bytes | None) -> Rows:
    env = StatementEnvelope.decode(raw)
    received = ms_to_datetime(env.received_ms)
    analytic, stored_raw = [], []
    for i, entry in enumerate(env.entries):
        s = entry.statement
        path = f"$.statements[{i}].statement"
        try:
            sid = uuid.UUID(s["id"])
            ts = ms_to_datetime(parse_ms(s["timestamp"], path + ".timestamp"))
            stored = ms_to_datetime(parse_ms(s["stored"], path + ".stored"))
            verb = s["verb"]["id"]
        except (KeyError, TypeError, ValueError) as err:
            raise InvalidStatement("statement.canonical", f"not a canonical statement: {err!r}", path) from err
        obj = s.get("object") or {}
        ctx = s.get("context") or {}
        result = s.get("result") or {}
        score = result.get("score") or {}
        duration = result.get("duration")
        registration = ctx.get("registration")
        analytic.append(
            (
                sid,
                env.school,
                entry.course,
                entry.cohort,
                env.learner,
                verb,
                str(obj.get("id", "")),
                obj.get("objectType", "Activity"),
                uuid.UUID(registration) if registration else None,
                _bool(result.get("success")),
                _bool(result.get("completion")),
                score.get("scaled"),
                duration_ms(duration, path + ".result.duration") if duration else None,
                ts,
                stored,
                received,
            )
        )
        stored_raw.append((env.school, sid, stored, orjson.dumps(s).decode()))
    return {T.STATEMENTS: analytic, T.STATEMENTS_RAW: stored_raw, **lrs_rows(env)}


def activity_rows(raw: bytes | None) -> Rows:
    r = ActivityRecord.decode(raw)
    return {
        T.LEARNER_ACTIVITY_HOURLY: [
            (r.school, r.course, r.cohort, r.learner, ms_to_datetime(r.hour_ms), r.statements, r.version)
        ]
    }


COLUMNS = {
    T.STATEMENTS: T.STATEMENT_COLUMNS,
    T.STATEMENTS_RAW: T.RAW_COLUMNS,
    T.LEARNER_ACTIVITY_HOURLY: T.ACTIVITY_COLUMNS,
    **LRS_COLUMNS,
}
