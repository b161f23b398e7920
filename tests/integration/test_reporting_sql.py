"""Research SQL (`learnpulse sql`, `POST /api/sql`): checked without executing, run read-only under
limits on a connection of its own, on both engines; the pipeline keeps writing meanwhile."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
import time
import uuid

import orjson
import pytest
import requests

from learnpulse.pipeline import open_clickhouse
from learnpulse.researchers import add_researcher, researchers_path
from learnpulse.settings import ClickHouseSettings, ResearchSettings, Settings
from learnpulse.web import make_app, research_runner, start_web_thread
from reporting.sql import QueryRejected, research_query
from tests.conftest import REPO, free_port
from tests.operators_support import make_operator, signed_in

PROBE = ("probe",)
# Big answers and heavy joins from a table (18.16 refuses every table function, numbers()
# included, in read-only mode): 200,000 rows of 1,000 bytes; 10^10 joined rows.
BIG_ANSWER = "SELECT hex(toFixedString(toString(i), 500)) AS s FROM (SELECT 1 FROM {db}.%s LIMIT 1) ARRAY JOIN range(200000) AS i"
# 10^7 × 10^7 pairs: no machine ends it before the time limit (10^5 × 10^5 did, on a quiet one).
CROSS_JOIN = ("SELECT sum(bitXor(x, y)) FROM (SELECT arrayJoin(range(10000000)) AS x FROM {db}.%s) AS a"
              " CROSS JOIN (SELECT arrayJoin(range(10000000)) AS y FROM {db}.%s) AS b")
# 18.16 materialises cross-joined blocks: there the memory limit stops the join first.
STOPPED_BY_LIMIT = ("sql.limit.time", "sql.limit.memory")
BIG_STATE = "SELECT length(groupArray(toFixedString(toString(i), 1000))) FROM (SELECT arrayJoin(range(1000000)) AS i FROM {db}.%s)"


def _settings(tmp_path, url, **research) -> Settings:
    return Settings(home=tmp_path / "home", clickhouse=ClickHouseSettings(url=url), web_port=free_port(),
                    research=ResearchSettings(**research))  # fmt: skip


@pytest.fixture
def ch(tmp_path, clickhouse_url):
    engine = open_clickhouse(_settings(tmp_path, clickhouse_url))
    engine.execute("CREATE TABLE IF NOT EXISTS {db}.probe (n UInt32) ENGINE = MergeTree ORDER BY n")
    engine.insert(f"{engine.database}.probe", ["n"], [[3, 1, 2]])
    yield engine
    engine.close()


@pytest.fixture
def runner_for(tmp_path, ch):
    made = []

    def make(**research):
        r = research_runner(_settings(tmp_path, "unused", **research), ch)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


class _Listener:
    """A local HTTP endpoint that records every request (did the engine fetch anything?)."""

    def __init__(self) -> None:
        hits = self.hits = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                hits.append(self.path)
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b'{"a":1}\n')

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


def test_reporting_sql_select_returns_columns_and_rows_in_query_order(ch, runner_for):
    result = research_query(runner_for(), ch.database, "SELECT n, n * 10 AS tenfold FROM {db}.probe ORDER BY n DESC;",
                            tables=PROBE)  # fmt: skip
    assert result.columns == ["n", "tenfold"]
    assert [tuple(int(v) for v in r) for r in result.rows] == [(3, 30), (2, 20), (1, 10)]
    assert not result.truncated and result.limit is None


def test_reporting_sql_empty_answer_still_names_its_columns(ch, runner_for):
    result = research_query(runner_for(), ch.database, "SELECT n AS m FROM {db}.probe WHERE n > 100", tables=PROBE)
    assert result.columns == ["m"] and result.rows == []


def test_reporting_sql_truncates_at_max_rows(ch, runner_for):
    result = research_query(runner_for(max_result_rows=2), ch.database, "SELECT n FROM {db}.probe ORDER BY n",
                            tables=PROBE)  # fmt: skip
    assert [int(r[0]) for r in result.rows] == [1, 2]
    assert result.truncated and result.limit == "sql.limit.result_rows"


def test_reporting_sql_a_200_mb_answer_is_capped_by_bytes(ch, runner_for):
    runner = runner_for(max_result_bytes=1_000_000, max_result_rows=1_000_000)
    result = research_query(runner, ch.database, BIG_ANSWER % "probe", tables=PROBE)
    assert result.truncated and result.limit == "sql.limit.result_bytes"
    assert 0 < sum(len(r[0]) for r in result.rows) <= 1_000_000


@pytest.mark.parametrize(
    "text",
    [
        "DROP TABLE {db}.probe",
        "INSERT INTO {db}.probe VALUES (9)",
        "SELECT 1; DROP TABLE {db}.probe",
        "ALTER TABLE {db}.probe DELETE WHERE 1",
        "SELECT n FROM {db}.probe SETTINGS readonly = 0",
        "",
    ],
)
def test_reporting_sql_rejects_anything_but_one_select(ch, runner_for, text):
    with pytest.raises(QueryRejected):
        research_query(runner_for(), ch.database, text, tables=PROBE)
    (row,) = ch.query("SELECT count() FROM {db}.probe")
    assert int(row[0]) == 3  # nothing was changed


def test_reporting_sql_refuses_raw_and_system_tables_and_file_reads(ch, runner_for):
    runner = runner_for()
    for text, rule in [
        ("SELECT raw FROM {db}.statements_raw", "sql.table"),
        ("SELECT * FROM {db}.xapi_events_all", "sql.table"),
        ("SELECT name FROM system.tables", "sql.table"),
        ("SELECT file('/etc/passwd')", "sql.function"),
        ("SELECT * FROM file('/etc/passwd', 'LineAsString')", "sql.function"),
    ]:
        with pytest.raises(QueryRejected) as err:
            research_query(runner, ch.database, text)
        assert err.value.rule == rule, text


def test_reporting_sql_network_table_functions_are_refused_before_anything_runs(ch, runner_for):
    listener = _Listener()
    runner = runner_for()
    try:
        port = listener.port
        for text in [
            f"SELECT * FROM url('http://127.0.0.1:{port}/api/summary', 'JSONEachRow')",
            f"SELECT * FROM URL('http://127.0.0.1:{port}/x', 'JSONEachRow', 'a UInt8')",
            f"SELECT * FROM remote('127.0.0.1:{port}', system.one)",
            f"SELECT * FROM remoteSecure('127.0.0.1:{port}', system.one)",
            f"SELECT * FROM mysql('127.0.0.1:{port}', 'd', 't', 'u', 'p')",
            f"SELECT * FROM postgresql('127.0.0.1:{port}', 'd', 't', 'u', 'p')",
            f"SELECT * FROM s3('http://127.0.0.1:{port}/b/k', 'CSV')",
            f"SELECT count() FROM {{db}}.statements WHERE learner IN (SELECT * FROM url('http://127.0.0.1:{port}/y', 'CSV', 'a String'))",
        ]:
            with pytest.raises(QueryRejected) as err:
                research_query(runner, ch.database, text)
            assert err.value.rule == "sql.function", text
        time.sleep(0.5)
        assert listener.hits == []
    finally:
        listener.close()


def test_reporting_sql_time_and_memory_limits_stop_the_worst_query(ch, runner_for):
    runner = runner_for(max_execution_s=2)
    with pytest.raises(QueryRejected) as err:
        research_query(runner, ch.database, CROSS_JOIN % ("probe", "probe"), tables=PROBE)
    assert err.value.rule in STOPPED_BY_LIMIT
    assert research_query(runner, ch.database, "SELECT 1 AS one").rows == [(1,)]
    runner = runner_for(max_memory_bytes=50_000_000)
    with pytest.raises(QueryRejected) as err:
        research_query(runner, ch.database, BIG_STATE % "probe", tables=PROBE)
    assert err.value.rule == "sql.limit.memory"
    # The connection is usable again afterwards.
    assert research_query(runner, ch.database, "SELECT 1 AS one").rows == [(1,)]


def _engine_runs(ch, marker: str) -> bool:
    """Whether the engine lists a query containing ``marker`` as running now."""
    # The marker is hex: safe inside the literal. This query names system.processes; the research one does not.
    rows = ch.query(f"SELECT count() FROM system.processes WHERE position(query, '{marker}') > 0"
                    " AND position(query, 'system.processes') = 0")  # fmt: skip
    return int(rows[0][0]) > 0


def _wrote_while_the_engine_ran_a_heavy_query(ch, runner, first: int) -> bool:
    """One heavy research query; once the engine runs it, the pipeline's connection inserts
    five rows (``first``…) and reads. True when all of that finished before the query ended
    (on 18.16 the memory limit ends the join about a second in: under load the window can close first)."""
    marker = f"heavy_{uuid.uuid4().hex[:12]}"
    heavy = CROSS_JOIN.replace("sum(bitXor(x, y))", f"sum(bitXor(x, y)) AS {marker}") % ("probe", "probe")
    outcome: list[object] = []

    def run_heavy():
        try:
            research_query(runner, ch.database, heavy, tables=PROBE)
        except QueryRejected as err:
            outcome.append(err.rule)

    t = threading.Thread(target=run_heavy)
    t.start()
    deadline = time.monotonic() + 60
    while t.is_alive() and not _engine_runs(ch, marker) and time.monotonic() < deadline:
        time.sleep(0.02)
    for i in range(5):
        ch.insert(f"{ch.database}.probe", ["n"], [[first + i]])
        ch.query("SELECT count() FROM {db}.probe")
    during = t.is_alive()
    t.join(120)
    assert len(outcome) == 1 and outcome[0] in STOPPED_BY_LIMIT, outcome
    return during


def test_reporting_sql_the_pipeline_keeps_writing_while_the_worst_query_runs(ch, runner_for):
    """A cross join that can only end at a limit runs on its own connection: the pipeline's
    connection inserts and reads meanwhile. A pipeline queued behind research queries would
    fail every try; up to five tries, each a new query (see the dashboard's test below)."""
    runner = runner_for(max_execution_s=20)
    tries = 0
    while True:
        during = _wrote_while_the_engine_ran_a_heavy_query(ch, runner, 100 + 5 * tries)
        tries += 1
        if during or tries == 5:
            break
    assert during, "in five tries the inserts only finished after the research query"
    (row,) = ch.query("SELECT count() FROM {db}.probe")
    assert int(row[0]) == 3 + 5 * tries


# -- HTTP --------------------------------------------------------------------------------
@pytest.fixture
def served(tmp_path, ch):
    settings = _settings(tmp_path, "unused", max_execution_s=15)
    token = add_researcher(researchers_path(settings.home), "ana")
    ch.insert(f"{ch.database}.statements", ["statement_id", "school", "learner"], [[uuid.uuid4()], ["s"], ["x" * 64]])
    web = start_web_thread(make_app(ch, settings), settings.web_port)
    base = f"http://127.0.0.1:{settings.web_port}"
    yield base, token, settings
    web.stop()


@pytest.fixture
def operator(served):
    """A network operator signed in to the dashboard of ``served``."""
    base, _token, settings = served
    return signed_in(base, "op", make_operator(settings.home, "op", "network"))


def _post(base, token, sql, **headers):
    h = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {}), **headers}
    return requests.post(f"{base}/api/sql", data=orjson.dumps({"sql": sql}), headers=h, timeout=120)


def test_api_sql_needs_a_researcher_token_json_and_this_servers_origin(served):
    base, token, _ = served
    q = "SELECT count() AS n FROM {db}.statements"
    ok = _post(base, token, q)
    assert ok.status_code == 200, ok.text
    assert ok.json()["columns"] == ["n"]
    assert _post(base, None, q).status_code == 401
    assert _post(base, "lpr_wrong", q).status_code == 401
    # A form or text body (what a cross-site page can send without a preflight) is refused.
    r = requests.post(f"{base}/api/sql", data=q, headers={"Authorization": f"Bearer {token}",
                                                           "Content-Type": "text/plain"}, timeout=30)  # fmt: skip
    assert r.status_code == 415 and r.json()["rule"] == "sql.content_type"
    r = _post(base, token, q, Origin="http://evil.example")
    assert r.status_code == 403 and r.json()["rule"] == "sql.origin"
    r = _post(base, token, q, Host="evil.example:80")
    assert r.status_code == 403 and r.json()["rule"] == "sql.host"
    # A cookie is no credential.
    r = requests.post(f"{base}/api/sql", data=orjson.dumps({"sql": q}),
                      headers={"Content-Type": "application/json", "Cookie": f"token={token}"}, timeout=30)  # fmt: skip
    assert r.status_code == 401


def test_api_sql_attacks_get_a_4xx_naming_the_rule_and_fetch_nothing(served, operator):
    base, token, _ = served
    listener = _Listener()
    try:
        web_port = base.rsplit(":", 1)[1]
        for text, rule in [
            (f"SELECT * FROM url('http://127.0.0.1:{web_port}/api/summary', 'JSONEachRow')", "sql.function"),
            (f"SELECT * FROM url('http://127.0.0.1:{listener.port}/x', 'JSONEachRow', 'a UInt8')", "sql.function"),
            (f"SELECT * FROM remote('127.0.0.1:{listener.port}', system.one)", "sql.function"),
            (f"SELECT * FROM mysql('127.0.0.1:{listener.port}', 'd', 't', 'u', 'p')", "sql.function"),
            (f"SELECT * FROM postgresql('127.0.0.1:{listener.port}', 'd', 't', 'u', 'p')", "sql.function"),
            ("SELECT raw FROM {db}.statements_raw", "sql.table"),
            ("SELECT 1 FORMAT JSON", "sql.keyword"),
            ("SELECT nosuchcolumn FROM {db}.statements", "sql.engine"),
        ]:
            r = _post(base, token, text)
            assert r.status_code == 400, (text, r.status_code, r.text)
            assert r.json()["rule"] == rule and r.json()["error"].startswith(rule), text
        assert listener.hits == []
        # The dashboard still answers (the url() attack used to deadlock chDB).
        assert operator.get(f"{base}/api/state", timeout=30).status_code == 200
    finally:
        listener.close()


def _dashboard_answered_while_the_engine_ran_a_heavy_query(base, token, operator, ch) -> bool:
    """One heavy research query; the dashboard is asked once the engine runs it.

    True when the dashboard answered before that query ended. False when it ended first: on 18.16
    the memory limit ends the join about a second in, so under load the window can close first.
    """
    marker = f"heavy_{uuid.uuid4().hex[:12]}"
    results: list[requests.Response] = []
    heavy = CROSS_JOIN.replace("sum(bitXor(x, y))", f"sum(bitXor(x, y)) AS {marker}") % ("statements", "statements")
    t = threading.Thread(target=lambda: results.append(_post(base, token, heavy)))
    t.start()
    deadline = time.monotonic() + 60
    while t.is_alive() and not _engine_runs(ch, marker) and time.monotonic() < deadline:
        time.sleep(0.02)
    state = operator.get(f"{base}/api/state", timeout=60) if t.is_alive() else None
    during = t.is_alive()
    t.join(120)
    assert results[0].status_code == 400 and results[0].json()["rule"] in STOPPED_BY_LIMIT, results[0].text
    if state is not None:
        assert state.status_code == 200
    return state is not None and during


def test_api_sql_a_200_mb_answer_is_capped_and_the_dashboard_answers_during_a_heavy_query(served, operator, ch):
    base, token, _ = served
    r = _post(base, token, BIG_ANSWER % "statements")
    assert r.status_code == 200
    body = r.json()
    assert body["truncated"] and body["limit"] in ("sql.limit.result_bytes", "sql.limit.result_rows")
    assert len(r.content) < 20 * 1024 * 1024
    # A dashboard queued behind research queries never answers while one runs: every try fails.
    # A few tries cover the short 18.16 window on a busy machine.
    assert any(_dashboard_answered_while_the_engine_ran_a_heavy_query(base, token, operator, ch) for _ in range(5)), (
        "the dashboard answered only after the research query ended, five times"
    )


def test_learnpulse_sql_reaches_embedded_chdb_through_the_owner_process(tmp_path, chdb_url):
    # This test process owns chDB (like `learnpulse demo` does); the CLI must ask it.
    settings = _settings(tmp_path, chdb_url)
    owner = open_clickhouse(settings)
    owner.execute("INSERT INTO {db}.statements (statement_id, school, learner) VALUES (generateUUIDv4(), 's', 'x')")
    web = start_web_thread(make_app(owner, settings), settings.web_port)
    env = {**settings.to_env(), "PATH": "/usr/bin:/bin"}
    res = subprocess.run(
        [sys.executable, "-m", "learnpulse", "sql", "--format", "tsv", "SELECT count() AS total FROM {db}.statements"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["total", "1"]
    bad = subprocess.run(
        [sys.executable, "-m", "learnpulse", "sql", "DROP TABLE {db}.statements"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )
    assert bad.returncode == 2 and bad.stderr.startswith("learnpulse: sql.select_only"), bad.stderr
    web.stop()
    owner.close()


# -- bounded fuzz over the HTTP surface: never a 5xx, never a fetch --------------------------
_FUZZ_WORDS = ["SELECT", "WITH", "FROM", "JOIN", "IN", "AS", "UNION", "ALL", "SETTINGS", "FORMAT", "url", "remote",
               "file", "numbers(3)", "{db}.statements", "{db}.statements_raw", "system.one", "count()", "x", "1",
               "(", ")", ",", ";", "'", "`", "--", "/*", "*/", "{", "$$", "\\", "é", "\x00"]  # fmt: skip


def test_api_sql_fuzz_answers_no_5xx_and_fetches_nothing(tmp_path, chdb_url):
    from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

    settings = _settings(tmp_path, chdb_url, max_execution_s=5)
    owner = open_clickhouse(settings)
    token = add_researcher(researchers_path(settings.home), "fuzz")
    web = start_web_thread(make_app(owner, settings), settings.web_port)
    base = f"http://127.0.0.1:{settings.web_port}"
    listener = _Listener()
    statuses: list[int] = []
    sql = st.lists(st.sampled_from(_FUZZ_WORDS + [f"url('http://127.0.0.1:{listener.port}/f', 'CSV', 'a String')"]),
                   max_size=12).map(" ".join)  # fmt: skip
    body = st.one_of(
        sql.map(lambda q: orjson.dumps({"sql": q})),
        st.binary(max_size=200),
        sql.map(lambda q: orjson.dumps([q])),
        st.just(b'{"sql": 1}'),
    )
    ctype = st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded", "",
                             "application/json; charset=utf-8", "multipart/form-data; boundary=\u00e9"])  # fmt: skip
    auth = st.sampled_from([f"Bearer {token}", "", "Bearer ", "Basic eDp5", f"bearer {token}", "Bearer lpr_x"])

    @hsettings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body, ctype, auth, st.sampled_from([None, base, "http://evil.example", "null"]))
    def one(data, content_type, authorization, origin):
        headers = {"Content-Type": content_type, "Authorization": authorization}
        if origin is not None:
            headers["Origin"] = origin
        r = requests.post(f"{base}/api/sql", data=data, headers=headers, timeout=60)
        statuses.append(r.status_code)
        assert r.status_code < 500, (data, headers, r.status_code, r.text)
        if r.status_code >= 400:
            assert r.json()["rule"].startswith("sql.")

    try:
        one()
        assert len(statuses) >= 20 and any(s == 200 for s in statuses) | any(s == 400 for s in statuses)
        assert listener.hits == []
    finally:
        listener.close()
        web.stop()
        owner.close()


@pytest.mark.kafka
def test_reporting_sql_real_sinks_keep_writing_while_the_worst_query_runs(settings, tmp_path):
    """The statements sink, consuming from Kafka, stores new statements while a research
    query that can only end at its time limit runs on the same engine."""
    import random

    from tests.integration.test_sinks_statements import (
        BASE_MS, Publisher, agent, envelope, learner_of, make_statement, running_sinks, scalar,
    )  # fmt: skip

    rng = random.Random(21)
    research = settings.model_copy(update={"research": ResearchSettings(max_execution_s=40)})
    with running_sinks(settings, ["statements"]) as (ch, _sinks):
        runner = research_runner(research, ch)
        ch.insert(f"{ch.database}.statements", ["statement_id", "school", "learner"], [[uuid.uuid4()], ["s"], ["x" * 64]])
        outcome: list[str] = []

        def heavy():
            try:
                outcome.append(repr(research_query(runner, ch.database, CROSS_JOIN % ("statements", "statements"))))
            except QueryRejected as err:
                outcome.append(err.rule)
            except BaseException as err:  # noqa: BLE001 - shown by the assertion below
                outcome.append(repr(err))

        t = threading.Thread(target=heavy)
        t.start()
        time.sleep(1.0)
        who = agent("kim")
        statements = [make_statement("s-9", who, BASE_MS + i * 1000, rng) for i in range(10)]
        pub = Publisher(settings.kafka)
        pub.send(learner_of(settings, who).encode(), envelope(settings, "s-9", who, statements))
        pub.flush()
        pub.close()
        deadline = time.monotonic() + 35
        stored = 0
        while time.monotonic() < deadline and t.is_alive():
            stored = scalar(ch, "SELECT count() FROM {db}.statements WHERE school = 's-9'")
            if stored == 10:
                break
            time.sleep(0.25)
        during = t.is_alive()
        t.join(120)
        runner.close()
        if not during and outcome == ["sql.limit.memory"] and settings.clickhouse_url.startswith("clickhouse://"):
            # 18.16 materialises the cross join and its memory limit ends it within a second
            # on a quiet machine: nothing runs long enough to watch the sink beside it there
            # (the research query has its own server connection either way).
            pytest.xfail("18.16 stopped the worst query at its memory limit before the sink could be watched")
        assert stored == 10 and during, "the sink stored the statements only after the research query ended"
        assert len(outcome) == 1 and outcome[0] in STOPPED_BY_LIMIT, outcome
