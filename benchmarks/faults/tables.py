"""What is counted in ClickHouse, per table or view, for the statements of some schools.

Tables holding one row per statement are read id by id: ``stored`` = acknowledged ids
present, ``lost`` = acknowledged ids missing, ``doubled`` = rows beyond one per id (any
id sent). Aggregates (the daily rollup, engagement sums) are compared with the number of
distinct ids in ``statements FINAL``: ``lost``/``doubled`` are the shortfall/excess.
Tables another version of the schema does not have are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.clickhouse.engine import ClickHouseError

#: (name shown, table or view, id column, FINAL?, a school filter of its own?)
PER_ID = (
    ("statements", "statements", "statement_id", False, True),
    ("statements FINAL", "statements", "statement_id", True, True),
    ("statements_current", "statements_current", "statement_id", False, True),
    ("statements_raw", "statements_raw", "statement_id", False, True),
    ("statements_raw FINAL", "statements_raw", "statement_id", True, True),
    ("xapi_events_all", "xapi_events_all", "event_id", False, False),
    ("lrs_statements", "lrs_statements", "statement_id", False, True),
    ("lrs_statements FINAL", "lrs_statements", "statement_id", True, True),
    ("lrs_statement_ids FINAL", "lrs_statement_ids", "statement_id", True, True),
)

_SCHOOLS = "has({schools:Array(String)}, school)"


@dataclass
class Count:
    table: str
    sent: int
    acked: int
    stored: int
    lost: int
    doubled: int
    note: str = ""


def count_all(ch, schools: list[str], sent: set[str], acked: set[str]) -> list[Count]:
    out = []
    for shown, table, column, final, own_school in PER_ID:
        where = _SCHOOLS if own_school else (
            f"{column} IN (SELECT statement_id FROM {{db}}.statements_raw WHERE {_SCHOOLS})"
        )  # fmt: skip
        sql = (
            f"SELECT toString({column}), count() FROM {{db}}.{table}{' FINAL' if final else ''} "
            f"WHERE {where} GROUP BY {column}"
        )
        try:
            rows = ch.query(sql, {"schools": schools})
        except ClickHouseError as err:
            out.append(Count(shown, len(sent), len(acked), 0, 0, 0, f"not read: {str(err)[:60]}"))
            continue
        per_id = {i: n for i, n in rows if i in sent}
        stored = sum(1 for i in acked if i in per_id)
        doubled = sum(n - 1 for n in per_id.values())
        out.append(Count(shown, len(sent), len(acked), stored, len(acked) - stored, doubled))
    reference = _final_ids(ch, schools, sent)
    out.extend(_aggregates(ch, schools, len(sent), len(acked), reference))
    return out


def _final_ids(ch, schools: list[str], sent: set[str]) -> int:
    rows = ch.query(
        f"SELECT toString(statement_id) FROM {{db}}.statements FINAL WHERE {_SCHOOLS} GROUP BY statement_id",
        {"schools": schools},
    )
    return sum(1 for (i,) in rows if i in sent)


_AGGREGATES = (
    (
        "activity_daily (rollup)",
        "SELECT sum(n) FROM (SELECT uniqExactMerge(statements) AS n FROM {db}.activity_daily "
        f"WHERE {_SCHOOLS} GROUP BY school, course, cohort, day, verb_id)",
    ),
    (
        "activity_totals FINAL",
        f"SELECT sum(statements) FROM {{db}}.activity_totals FINAL WHERE {_SCHOOLS}",
    ),
    ("engagement FINAL (day sums)", f"SELECT sum(statements) FROM {{db}}.engagement FINAL WHERE {_SCHOOLS} AND grain = 'day'"),
    ("engagement FINAL (hour sums)", f"SELECT sum(statements) FROM {{db}}.engagement FINAL WHERE {_SCHOOLS} AND grain = 'hour'"),
)

#: derived tables without a statement count: rows, raw and FINAL (FINAL: one per key)
_DERIVED = ("engagement", "mastery", "cohort_health", "alerts")


def _aggregates(ch, schools: list[str], sent: int, acked: int, reference: int) -> list[Count]:
    out = []
    for shown, sql in _AGGREGATES:
        try:
            ((total,),) = ch.query(sql, {"schools": schools})
        except ClickHouseError as err:
            out.append(Count(shown, sent, acked, 0, 0, 0, f"not read: {str(err)[:60]}"))
            continue
        total = int(total or 0)
        out.append(Count(shown, sent, acked, total, max(0, reference - total), max(0, total - reference),
                         f"vs {reference} ids in statements FINAL"))  # fmt: skip
    for table in _DERIVED:
        try:
            ((raw,),) = ch.query(f"SELECT count() FROM {{db}}.{table} WHERE {_SCHOOLS}", {"schools": schools})
            ((final,),) = ch.query(f"SELECT count() FROM {{db}}.{table} FINAL WHERE {_SCHOOLS}", {"schools": schools})
        except ClickHouseError as err:
            out.append(Count(table, sent, acked, 0, 0, 0, f"not read: {str(err)[:60]}"))
            continue
        out.append(Count(f"{table} rows", sent, acked, int(final), 0, 0, f"{raw} rows without FINAL (versions)"))
    return out


def statements_final(ch, schools: list[str]) -> int:
    """Distinct statements of these schools in ``statements FINAL`` (the catch-up signal)."""
    ((n,),) = ch.query(f"SELECT uniqExact(statement_id) FROM {{db}}.statements WHERE {_SCHOOLS}", {"schools": schools})
    return int(n)


def engagement_day_sum(ch, schools: list[str]) -> int:
    ((n,),) = ch.query(
        f"SELECT sum(statements) FROM {{db}}.engagement FINAL WHERE {_SCHOOLS} AND grain = 'day'", {"schools": schools}
    )
    return int(n or 0)
