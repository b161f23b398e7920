"""chDB inserts: the Arrow path stores exactly what the JSON path stores, and falls back to it.

Every table the sinks write gets the same rows twice, into two databases: once through
``ChdbEngine.insert`` (Arrow where the values allow it) and once through the JSON path
alone; every column of every row must read back equal. Values the Arrow path must not
take (a fraction for an integer column, NaN, bytes for text) go the JSON way and give the
JSON path's own result or error.
"""

from __future__ import annotations

import itertools
import math
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from benchmarks.bench_sinks import make_envelopes
from schemas.clickhouse import tables as T
from schemas.clickhouse.engine import ClickHouseError
from schemas.clickhouse.migrate import migrate
from schemas.records import AlertRecord, CohortHealthRecord, EngagementRecord, MasteryRecord
from sinks.engines import ChdbEngine, engine_from_url
from sinks.rows import COLUMNS, MODERN_RANGE, builders, statement_rows

SECRET = b"insert-secret"


def _columns(rows):
    return [list(c) for c in zip(*rows, strict=True)]


def _dump(ch: ChdbEngine, db: str, table: str) -> list[tuple]:
    cols = ", ".join(f"toString({c})" for c in COLUMNS[table])
    return sorted(ch.query(f"SELECT {cols} FROM {db}.{table}"))


@pytest.fixture
def two_databases(chdb_url):
    arrow = engine_from_url(chdb_url)
    migrate(arrow)
    json_db = arrow.database + "_json"
    json_engine = ChdbEngine(arrow.path, json_db)
    migrate(json_engine)
    arrow.insert_formats.clear()
    yield arrow, json_engine
    json_engine.close()
    arrow.close()


def _derived_rows():
    build = builders(SECRET, MODERN_RANGE)
    out: dict[str, list[tuple]] = {}
    records = [
        ("engagement", EngagementRecord("s-1", "c", "k", "l" * 64, "day", 1_767_571_200_000, 12, 2, 600_000,
                                        1_767_600_000_123, 5)),
        ("mastery", MasteryRecord("s-1", "c", "l" * 64, "skill-é", 0.734, 9, 6, 1_767_600_000_456, 2)),
        ("cohort_health", CohortHealthRecord("s-1", "c", "k", 1_767_600_000_789, 30, 4, 4 / 30, 1_200_000, 8)),
        ("alerts", AlertRecord("a-1", "s-1", "c", "k", "fired", 1_767_600_000_000, 1_767_600_000_000, 30, 20, 2 / 3,
                               0.5, ("x" * 64, "y" * 64), 1)),
    ]  # fmt: skip
    for sink, record in records:
        for table, rows in build[sink](record.encode()).items():
            out.setdefault(table, []).extend(rows)
    return out


def test_chdb_insert_arrow_stores_what_json_stores_for_every_sink_table(two_databases):
    arrow, json_engine = two_databases
    rows: dict[str, list[tuple]] = {}
    for env in make_envelopes(600):
        for table, table_rows in statement_rows(SECRET, MODERN_RANGE, env.encode()).items():
            rows.setdefault(table, []).extend(table_rows)
    for table, table_rows in _derived_rows().items():
        rows.setdefault(table, []).extend(table_rows)
    assert {T.STATEMENTS, T.STATEMENTS_RAW, T.ENGAGEMENT, T.ALERTS} <= {t for t, r in rows.items() if r}
    inserted = 0
    for table, table_rows in rows.items():
        if not table_rows:
            continue
        arrow.insert(f"{arrow.database}.{table}", COLUMNS[table], _columns(table_rows))
        json_engine._insert_json(f"{json_engine.database}.{table}", COLUMNS[table], _columns(table_rows))
        assert arrow.insert_formats == {"arrow": inserted + 1}, f"{table}: the Arrow path was not taken"
        inserted += 1
        got, expected = _dump(arrow, arrow.database, table), _dump(json_engine, json_engine.database, table)
        # learner_names is keyed by (school, learner): one insert already keeps one row per key.
        keys = {r[:2] for r in table_rows} if table == T.LEARNER_NAMES else table_rows
        assert len(got) == len(keys), table
        assert got == expected, table


def test_chdb_insert_edge_values_equal_on_both_paths(two_databases):
    arrow, json_engine = two_databases
    sid = uuid.UUID("2c738870-7852-4d2b-a5c4-c3999373838e")
    base = datetime(2026, 1, 5, 10, 0, 0, 123456)  # microseconds: both paths bring them to the scale
    variants = [
        {
            "registration": None,
            "success": None,
            "scaled": None,
            "duration": None,
            "text": 'q"uote\\back\nline\ttab é 😀',
        },
        {"registration": uuid.UUID(int=0), "success": 1, "scaled": -1.5e300, "duration": 2**64 - 1, "text": ""},
        {"registration": uuid.uuid4(), "success": 0, "scaled": 0.1 + 0.2, "duration": 0, "text": "x" * 10_000},
    ]
    rows = []
    for n, v in enumerate(variants):
        rows.append((uuid.UUID(int=sid.int + n), "s-1", "c", "k", "l", "http://v", v["text"], "Activity",
                     v["registration"], v["success"], None, v["scaled"], 3, v["duration"],
                     base + timedelta(days=n), datetime(1900, 1, 1) + timedelta(milliseconds=n), 0,
                     ["activity.id.iri", "objectType.value"][:n]))  # fmt: skip
    aware = (uuid.UUID(int=sid.int + 9), "s-1", "c", "k", "l", "http://v", "o", "Activity", None, None, None, None, None, None,
             datetime(2026, 1, 5, 12, 0, 0, 5000, tzinfo=timezone(timedelta(hours=2))),
             datetime(2026, 1, 5, 10, 0, tzinfo=UTC), 0, [])  # fmt: skip
    rows.append(aware)
    table = T.STATEMENTS
    arrow.insert(f"{arrow.database}.{table}", COLUMNS[table], _columns(rows))
    json_engine._insert_json(f"{json_engine.database}.{table}", COLUMNS[table], _columns(rows))
    assert arrow.insert_formats == {"arrow": 1}
    assert _dump(arrow, arrow.database, table) == _dump(json_engine, json_engine.database, table)
    assert len(_dump(arrow, arrow.database, table)) == 4


@pytest.mark.parametrize(
    "column, value",
    [("result_duration_ms", 1.5), ("result_score_scaled", math.nan), ("object_id", b"bytes"), ("voided", True)],
)
def test_chdb_insert_values_arrow_would_bend_go_the_json_way(two_databases, column, value):
    arrow, json_engine = two_databases
    row = dict(zip(COLUMNS[T.STATEMENTS], (
        uuid.uuid4(), "s-1", "c", "k", "l", "http://v", "o", "Activity", None, None, None, None, None, None,
        datetime(2026, 1, 5), datetime(2026, 1, 5), 0, []), strict=True))  # fmt: skip
    row[column] = value
    outcomes = []
    for engine, insert in ((arrow, arrow.insert), (json_engine, json_engine._insert_json)):
        engine.insert_formats.clear()
        try:
            insert(f"{engine.database}.{T.STATEMENTS}", COLUMNS[T.STATEMENTS], [[v] for v in row.values()])
            outcomes.append(("stored", _dump(engine, engine.database, T.STATEMENTS)))
        except (ClickHouseError, TypeError) as err:
            outcomes.append(("refused", type(err).__name__))
    assert outcomes[0] == outcomes[1]
    assert arrow.insert_formats == {"json": 1}


def test_chdb_insert_after_a_column_is_added_uses_the_new_types(two_databases):
    arrow, _ = two_databases
    table = f"{arrow.database}.arrow_probe"
    arrow.execute(f"CREATE TABLE {table} (id UInt64) ENGINE = MergeTree ORDER BY id")
    arrow.insert(table, ["id"], [[1, 2]])
    arrow.execute(f"ALTER TABLE {table} ADD COLUMN name String")
    arrow.insert(table, ["id", "name"], [[3], ["three"]])
    arrow.execute(f"ALTER TABLE {table} DROP COLUMN name")
    arrow.execute(f"ALTER TABLE {table} ADD COLUMN name UInt32")
    with pytest.raises(ClickHouseError):  # text into a number column: refused, whichever path tried first
        arrow.insert(table, ["id", "name"], [[4], ["four"]])
    arrow.insert(table, ["id", "name"], [[5], [5]])
    assert sorted(arrow.query(f"SELECT id, name FROM {table}")) == [(1, 0), (2, 0), (3, 0), (5, 5)]
    assert list(itertools.chain(*arrow.query(f"SELECT count() FROM {table}"))) == [4]
