"""The research SQL checker decides from the text alone; a fake runner proves nothing ran."""

from __future__ import annotations

import string

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from reporting.sql import QueryRejected, research_query
from reporting.sqlcheck import RULES, QueryRefused, check_query, tokenize
from schemas.clickhouse.engine import LimitedResult, QueryLimits
from schemas.clickhouse.tables import RESEARCH_TABLES

DB = "lp"


def check(text: str):
    return check_query(text, DB, RESEARCH_TABLES)


class RecordingRunner:
    """Stands for the engine: records what would have run."""

    limits = QueryLimits()

    def __init__(self) -> None:
        self.ran: list[str] = []

    def run(self, sql, cancel):
        self.ran.append(sql)
        return LimitedResult(["x"], ["UInt8"], [(1,)])

    def close(self):
        pass


@pytest.mark.parametrize(
    "text",
    [
        "SELECT school, count() FROM {db}.statements FINAL GROUP BY school",
        "WITH recent AS (SELECT learner FROM {db}.statements) SELECT count() FROM recent",
        "SELECT extract(DAY FROM timestamp), trim(BOTH ' ' FROM school) FROM {db}.statements",
        "SELECT s.learner FROM {db}.statements AS s JOIN {db}.engagement AS e ON s.learner = e.learner",
        "SELECT learner NOT IN (SELECT learner FROM {db}.mastery) FROM {db}.statements",
        "SELECT x.1 FROM (SELECT tuple(1, 2) AS x)",
        "SELECT a FROM (SELECT [1, 2] AS a) ARRAY JOIN a",
        "(SELECT 1) UNION ALL (SELECT 2)",
        "SELECT format('{}', 1), URLHierarchy('http://a/b'), school IN ('a', 'b') FROM {db}.statements",
        "SELECT count() FROM numbers(10) AS a, numbers(10) AS b",
        "SELECT 'it''s', 'a\\'b', `odd name` FROM (SELECT 1 AS `odd name`) -- note\n;",
        "select count() from {db}.statements_current where school = 'x'",
    ],
)
def test_sqlcheck_passes_ordinary_research_queries(text):
    assert check(text).sql


@pytest.mark.parametrize(
    "text, rule",
    [
        ("", "sql.empty"),
        ("  ;  ", "sql.empty"),
        ("SELECT 1; DROP TABLE x", "sql.one_statement"),
        ("DROP TABLE {db}.statements", "sql.select_only"),
        ("INSERT INTO {db}.statements SELECT * FROM {db}.statements", "sql.select_only"),
        ("EXPLAIN SELECT 1", "sql.select_only"),
        ("SELECT 1 SETTINGS readonly = 0", "sql.keyword"),
        ("SELECT 1 SETTINGS max_execution_time = 0", "sql.keyword"),
        ("SELECT 1 INTO OUTFILE '/tmp/x'", "sql.keyword"),
        ("SELECT 1 FORMAT CSV", "sql.keyword"),
        ("SELECT 1 PARALLEL WITH SELECT 2", "sql.keyword"),
        ("SELECT * FROM url('http://127.0.0.1:8080/api/summary', 'JSONEachRow')", "sql.function"),
        ("SELECT * FROM `url`('http://x', 'CSV')", "sql.function"),
        ("SELECT * FROM remote('127.0.0.1', system.one)", "sql.function"),
        ("SELECT * FROM remoteSecure('127.0.0.1', system.one)", "sql.function"),
        ("SELECT * FROM mysql('h:1', 'd', 't', 'u', 'p')", "sql.function"),
        ("SELECT * FROM postgresql('h:1', 'd', 't', 'u', 'p')", "sql.function"),
        ("SELECT * FROM s3('http://h/b/k', 'CSV')", "sql.function"),
        ("SELECT * FROM hdfs('hdfs://h/f', 'CSV')", "sql.function"),
        ("SELECT * FROM jdbc('x', 'y')", "sql.function"),
        ("SELECT * FROM odbc('x', 'y')", "sql.function"),
        ("SELECT * FROM cluster('c', system.one)", "sql.function"),
        ("SELECT * FROM input('a UInt8')", "sql.function"),
        ("SELECT * FROM executable('x.sh', 'CSV', 'a UInt8')", "sql.function"),
        ("SELECT * FROM azureBlobStorage('x')", "sql.function"),
        ("SELECT * FROM file('/etc/passwd', 'LineAsString')", "sql.function"),
        ("SELECT file('/etc/passwd')", "sql.function"),
        ("SELECT * FROM merge('lp', '.*')", "sql.function"),
        ("SELECT dictGet('d', 'a', toUInt64(1))", "sql.function"),
        ("SELECT joinGet('lp.j', 'v', 1)", "sql.function"),
        ("SELECT in(1, statements_raw)", "sql.function"),
        ("SELECT * FROM generateRandom('a UInt8')", "sql.table_function"),
        ("SELECT * FROM {db}.statements_raw", "sql.table"),
        ("SELECT * FROM {db}.lrs_statements", "sql.table"),
        ("SELECT * FROM {db}.xapi_events_all", "sql.table"),
        ("SELECT * FROM system.tables", "sql.table"),
        ("SELECT * FROM other.statements", "sql.table"),
        ("SELECT * FROM (SELECT 1) AS a, {db}.statements_raw", "sql.table"),
        ("SELECT * FROM {db}.statements AS s JOIN {db}.engagement AS e ON 1, {db}.statements_raw", "sql.table"),
        ("SELECT 1 WHERE 1 IN {db}.statements_raw", "sql.table"),
        ("SELECT exists(SELECT 1 FROM system.one)", "sql.table"),
        ("WITH statements_raw AS (SELECT 1) SELECT * FROM {db}.statements_raw", "sql.table"),
        ("SELECT /* a /* nested */ 1", "sql.syntax"),
        ("SELECT 1 /* open", "sql.syntax"),
        ("SELECT 'open", "sql.syntax"),
        ("SELECT {x:UInt8}", "sql.syntax"),
        ("SELECT $$a$$", "sql.syntax"),
        ("SELECT 1 # comment", "sql.syntax"),
        ("SELECT (1", "sql.syntax"),
        ("SELECT 1)", "sql.syntax"),
        ("SELECT * FROM", "sql.syntax"),
        ("SELECT x" * 5000, "sql.too_long"),
    ],
)
def test_sqlcheck_refuses_with_the_rule_and_runs_nothing(text, rule):
    runner = RecordingRunner()
    with pytest.raises(QueryRejected) as err:
        research_query(runner, DB, text)
    assert err.value.rule == rule
    assert rule in RULES and str(err.value).startswith(rule)
    assert runner.ran == []


def test_sqlcheck_sends_the_checked_text_with_comments_blanked():
    runner = RecordingRunner()
    research_query(runner, DB, "SELECT /* c */ count() -- tail\nFROM {db}.statements;")
    (sent,) = runner.ran
    assert "--" not in sent and "/*" not in sent and ";" not in sent
    assert sent.split() == ["SELECT", "count()", "FROM", "`lp`.statements"]


def test_sqlcheck_tokenizer_keeps_strings_whole():
    tokens, _ = tokenize("SELECT 'a -- b', 'c /* d', `e;f` FROM t")
    assert [t.kind for t in tokens] == ["word", "string", "op", "string", "op", "qident", "word", "word"]


# -- bounded fuzz: never anything but a QueryRefused, and what passes reads allowed tables only
_WORDS = ["SELECT", "WITH", "FROM", "JOIN", "ON", "IN", "AS", "WHERE", "UNION", "ALL", "ARRAY", "SETTINGS",
          "FORMAT", "INTO", "url", "remote", "file", "numbers", "statements", "statements_raw", "system", "tables",
          "{db}", "lp", "x", "count", "not", "global"]  # fmt: skip
_PIECES = st.sampled_from(_WORDS + ["(", ")", ",", ".", ";", "'s'", "`q`", '"d"', "--", "/*", "*/", "1", " ",
                                    "\n", "#", "$$", "{", "}", "\\", "'", "`", "*"])  # fmt: skip


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example("SELECT . FROM SELECT")  # found by the fuzz: FROM after a dot is a name; ClickHouse refuses the text
@given(st.lists(_PIECES, max_size=30).map(" ".join) | st.text(alphabet=string.printable + "é\x00", max_size=200))
def test_sqlcheck_fuzz_only_refuses_or_passes_allowed_reads(text):
    runner = RecordingRunner()
    try:
        research_query(runner, DB, text)
    except QueryRejected as err:
        assert err.rule in RULES and err.status == 400
        assert runner.ran == []
        return
    (sent,) = runner.ran
    checked = check_query(text, DB, RESEARCH_TABLES)
    assert set(checked.tables) <= set(RESEARCH_TABLES)
    tokens, _ = tokenize(sent)
    assert not any(t.text == ";" for t in tokens)
    for k, t in enumerate(tokens):
        following = tokens[k + 1].text if k + 1 < len(tokens) else ""
        before = tokens[k - 1].value.upper() if k else ""
        if t.kind in ("word", "qident") and following == "(":
            assert t.value.lower() not in ("url", "remote", "file", "mysql", "postgresql", "s3", "merge"), sent
        if t.kind == "word" and following not in ("(", ".") and before != ".":
            assert t.value.upper() not in ("SETTINGS", "FORMAT", "INTO"), sent
        # FROM or JOIN right after a dot is a column's name (t.from), not a clause, in ClickHouse as here.
        before_is_clause = before in ("FROM", "JOIN") and not (k >= 2 and tokens[k - 2].text == ".")
        if t.kind in ("word", "qident") and before_is_clause and following != "(":
            assert t.value in RESEARCH_TABLES or t.value in (DB, "x", "q", "d", "s"), sent
