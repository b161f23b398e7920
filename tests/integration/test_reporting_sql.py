"""`learnpulse sql` / `POST /api/sql`: one read-only SELECT, on both engines and through the owner process."""

from __future__ import annotations

import subprocess
import sys

import pytest

from learnpulse.pipeline import open_clickhouse
from learnpulse.settings import ClickHouseSettings, Settings
from learnpulse.web import make_app, start_web_thread
from reporting.sql import QueryRejected, readonly_query
from tests.conftest import REPO, free_port


@pytest.fixture
def ch(tmp_path, clickhouse_url):
    engine = open_clickhouse(Settings(home=tmp_path, clickhouse=ClickHouseSettings(url=clickhouse_url)))
    engine.execute("CREATE TABLE IF NOT EXISTS {db}.probe (n UInt32) ENGINE = MergeTree ORDER BY n")
    engine.insert(f"{engine.database}.probe", ["n"], [[3, 1, 2]])
    yield engine
    engine.close()


def test_reporting_sql_select_returns_columns_and_rows_in_query_order(ch):
    result = readonly_query(ch, "SELECT n, n * 10 AS tenfold FROM {db}.probe ORDER BY n DESC;")
    assert result.columns == ["n", "tenfold"]
    assert [tuple(int(v) for v in r) for r in result.rows] == [(3, 30), (2, 20), (1, 10)]
    assert not result.truncated


def test_reporting_sql_truncates_at_max_rows(ch):
    result = readonly_query(ch, "SELECT n FROM {db}.probe ORDER BY n", max_rows=2)
    assert [int(r[0]) for r in result.rows] == [1, 2]
    assert result.truncated


@pytest.mark.parametrize(
    "text",
    [
        "DROP TABLE {db}.probe",
        "INSERT INTO {db}.probe VALUES (9)",
        "SELECT 1; DROP TABLE {db}.probe",
        "ALTER TABLE {db}.probe DELETE WHERE 1",
        "",
    ],
)
def test_reporting_sql_rejects_anything_but_one_select(ch, text):
    with pytest.raises(QueryRejected):
        readonly_query(ch, text)
    (row,) = ch.query("SELECT count() FROM {db}.probe")
    assert int(row[0]) == 3  # nothing was changed


def test_learnpulse_sql_reaches_embedded_chdb_through_the_owner_process(tmp_path, chdb_url):
    # This test process owns chDB (like `learnpulse demo` does); the CLI must ask it.
    settings = Settings(home=tmp_path, clickhouse=ClickHouseSettings(url=chdb_url), web_port=free_port())
    owner = open_clickhouse(settings)
    owner.execute("CREATE TABLE IF NOT EXISTS {db}.probe (n UInt32) ENGINE = MergeTree ORDER BY n")
    owner.insert(f"{owner.database}.probe", ["n"], [[5, 6]])
    start_web_thread(make_app(owner), settings.web_port)
    env = {**settings.to_env(), "PATH": "/usr/bin:/bin"}
    res = subprocess.run(
        [sys.executable, "-m", "learnpulse", "sql", "--format", "tsv", "SELECT sum(n) AS total FROM {db}.probe"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["total", "11"]
    bad = subprocess.run(
        [sys.executable, "-m", "learnpulse", "sql", "DROP TABLE {db}.probe"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )
    assert bad.returncode == 2 and bad.stderr.startswith("learnpulse: not a single read-only SELECT")
    owner.close()
