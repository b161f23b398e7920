"""The per-school directory of learners' names (issue 17 part 3) on both engines: filled by the
statements sink from the statements it writes (newest statement wins, replays change nothing),
never readable by researcher SQL."""

from __future__ import annotations

import random
import uuid
from datetime import UTC

import pytest

from learnpulse.web import research_runner
from reporting.names import NAMES_SQL
from reporting.sql import QueryRejected, research_query
from schemas.envelope import StatementEntry, StatementEnvelope
from tests.integration.test_sinks_statements import (
    BASE_MS,
    Publisher,
    agent,
    envelope,
    learner_of,
    make_statement,
    running_sinks,
    wait_committed,
)

NAME_OF = "SELECT learner, argMax(name, version) FROM {db}.learner_names WHERE school = {s:String} GROUP BY learner"


def _envelope(settings, school: str, who: dict, statements: list[dict]) -> bytes:
    # test_sinks_statements.envelope needs an mbox; a learner without one (nothing readable).
    entries = tuple(StatementEntry("course-1", "course-1/cohort-0", s) for s in statements)
    return StatementEnvelope(school, learner_of(settings, who), BASE_MS, entries).encode()


def _names(ch, school: str) -> dict[str, str]:
    return {str(p): str(n) for p, n in ch.query(NAME_OF, {"s": school})}


@pytest.mark.kafka
def test_learner_names_filled_from_statements_newest_wins_and_replay_changes_nothing(settings):
    rng = random.Random(17)
    ada, bob, anon = agent("ada"), agent("bob"), {"objectType": "Agent", "mbox_sha1sum": "ab" * 20}
    renamed, robert = {**ada, "name": "Ada King"}, {**bob, "name": "Robert"}
    # Ada's newest statement (by timestamp) carries her new name, but arrives first.
    sends = [
        ("s-1", ada, envelope(settings, "s-1", renamed, [make_statement("s-1", renamed, BASE_MS + 50_000, rng)])),
        ("s-1", ada, envelope(settings, "s-1", ada, [make_statement("s-1", ada, BASE_MS + i * 1000, rng) for i in range(5)])),
        ("s-1", anon, _envelope(settings, "s-1", anon, [make_statement("s-1", anon, BASE_MS, rng)])),
        # Bob at two schools: each school's directory has him.
        ("s-1", bob, envelope(settings, "s-1", bob, [make_statement("s-1", bob, BASE_MS, rng)])),
        ("s-2", bob, envelope(settings, "s-2", robert, [make_statement("s-2", robert, BASE_MS, rng)])),
    ]  # fmt: skip

    def publish():
        pub = Publisher(settings.kafka)
        for _school, who, raw in sends:
            pub.send(learner_of(settings, who).encode(), raw)
        pub.flush()
        pub.close()

    a, b = learner_of(settings, ada), learner_of(settings, bob)
    expected = {"s-1": {a: "Ada King", b: "Bob"}, "s-2": {b: "Robert"}}
    publish()
    with running_sinks(settings, ["statements"]) as (ch, sinks):
        wait_committed(settings, sinks, "statements")
        assert {s: _names(ch, s) for s in expected} == expected
        # The dashboard's query (reporting/names.py) gives the same, one school at a time.
        assert {str(r[0]): str(r[1]) for r in ch.query(NAMES_SQL, {"school": "s-1", "learners": [a, b],
                "scope_all": 1, "scope_schools": [], "scope_cohorts": []})} == expected["s-1"]  # fmt: skip
        publish()  # a replay of everything
        wait_committed(settings, sinks, "statements")
        assert {s: _names(ch, s) for s in expected} == expected
        ((rows,),) = ch.query("SELECT count() FROM {db}.learner_names FINAL")
        assert int(rows) == 3


def test_learner_names_refused_to_researcher_sql(tmp_path, clickhouse_url):
    from learnpulse.pipeline import open_clickhouse
    from learnpulse.settings import ClickHouseSettings, Settings

    ch = open_clickhouse(Settings(home=tmp_path / "home", clickhouse=ClickHouseSettings(url=clickhouse_url)))
    runner = research_runner(Settings(home=tmp_path / "home", clickhouse=ClickHouseSettings(url="unused")), ch)
    try:
        ch.insert(f"{ch.database}.learner_names", ["school", "learner", "name", "version", "statement_id"],
                  [["s-1"], ["a" * 64], ["Ada"], [1], ["00000000-0000-4000-8000-000000000001"]])  # fmt: skip
        for text in (
            "SELECT name FROM {db}.learner_names",
            "SELECT s.learner, n.name FROM {db}.statements AS s JOIN {db}.learner_names AS n USING (learner)",
            "SELECT * FROM (SELECT name FROM learner_names)",
        ):
            with pytest.raises(QueryRejected) as err:
                research_query(runner, ch.database, text)
            assert err.value.rule == "sql.table", text
        # The refusal is about the table: the same reader gets research tables.
        assert int(research_query(runner, ch.database, "SELECT count() FROM {db}.statements").rows[0][0]) == 0
    finally:
        runner.close()
        ch.close()


def test_learner_names_filled_from_statements_stored_before_the_directory(tmp_path, clickhouse_url):
    """`learnpulse db fill-names` (sinks/names_fill.py) gives the names the sink would have
    written, reading statements_raw in pages over several months; forgotten learners stay out."""
    from datetime import datetime

    from learnpulse.pipeline import open_clickhouse
    from learnpulse.settings import ClickHouseSettings, Settings
    from schemas.clickhouse import tables as T
    from schemas.identity import pseudonym
    from schemas.xapi.canonical import canonicalize
    from sinks.names_fill import fill_names
    from sinks.rows import COLUMNS, OLD_SERVER_RANGE, statement_rows

    secret = b"fill-names-test"
    ch = open_clickhouse(Settings(home=tmp_path / "home", clickhouse=ClickHouseSettings(url=clickhouse_url)))
    rng = random.Random(5)
    people = [{"objectType": "Agent", "mbox": f"mailto:p{i}@example.org", "name": f"Person {i}"} for i in range(6)]
    people.append({"objectType": "Agent", "mbox_sha1sum": "cd" * 20})  # nobody readable
    written: dict[str, list] = {T.STATEMENTS_RAW: [], T.LEARNER_NAMES: []}
    for n in range(40):
        who = dict(rng.choice(people))
        if "name" in who and rng.random() < 0.5:
            who["name"] = f"{who['name']} v{n}"  # renamed now and then
        ts = int(datetime(2026, 1 + n % 3, 1 + n % 27, tzinfo=UTC).timestamp() * 1000) + rng.randrange(86_400_000)
        s = canonicalize({"id": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "actor": who,
                          "verb": {"id": "http://adlnet.gov/expapi/verbs/experienced"},
                          "object": {"id": "http://example.com/a"},
                          "timestamp": datetime.fromtimestamp(ts / 1000, UTC).isoformat(timespec="milliseconds")},
                         authority={"objectType": "Agent", "account": {"homePage": "https://x", "name": "s"}},
                         stored_ms=ts + 1000)  # fmt: skip
        school = "s-1" if n % 4 else "s-2"
        env = StatementEnvelope(school, pseudonym(secret, who), ts, (StatementEntry("c", "k", s),))
        for table, rows in statement_rows(secret, OLD_SERVER_RANGE, env.encode()).items():
            if table in written:
                written[table].extend(rows)
    ch.insert(f"{ch.database}.{T.STATEMENTS_RAW}", COLUMNS[T.STATEMENTS_RAW],
              [list(c) for c in zip(*written[T.STATEMENTS_RAW])])  # fmt: skip
    # What the sink would have kept: per (school, learner) the row of the highest version.
    sink: dict[tuple[str, str], tuple] = {}
    for row in written[T.LEARNER_NAMES]:
        if row[:2] not in sink or row[3] > sink[row[:2]][3]:
            sink[row[:2]] = row
    forgotten = pseudonym(secret, people[0])
    ch.insert(f"{ch.database}.{T.FORGOTTEN_LEARNERS}", T.FORGOTTEN_COLUMNS, [[forgotten], [datetime(2026, 1, 1)], ["t"]])
    try:
        expected = {k: r[2] for k, r in sink.items() if k[1] != forgotten}
        assert len(expected) >= 5
        assert fill_names(ch, page=7) == len(expected)
        got = {(str(s), str(p)): str(n) for s, p, n in ch.query(
            "SELECT school, learner, argMax(name, version) FROM {db}.learner_names GROUP BY school, learner")}  # fmt: skip
        assert got == expected
        assert fill_names(ch, page=7) == len(expected)  # again: nothing changes
        ((rows,),) = ch.query("SELECT count() FROM {db}.learner_names FINAL")
        assert int(rows) == len(expected)
    finally:
        ch.close()
