"""``activity_totals`` (migration 0020, sinks/totals.py) through a real statements sink, both engines.

After duplicates, replays in other batch boundaries and voids in both arrival orders, every
group's totals row (FINAL) must equal the exact merge of ``activity_daily``'s id sets and
the counts from ``statements FINAL``; the dashboard summary must equal them too. Without the
sink's recompute step the totals would be missing or stale; a count that added copies would
exceed ``statements FINAL``.
"""

from __future__ import annotations

import random

import pytest

from reporting.scope import EVERY_SCHOOL
from reporting.summary import school_summaries
from sinks.rows import VOIDED_VERB
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

_GROUP = "school, course, cohort, toString(day) AS d, verb_id"
TOTALS_SQL = (
    f"SELECT {_GROUP}, statements, voided, learners, completed, passed, failed, toString(first_event),"
    " toString(last_event) FROM {db}.activity_totals FINAL ORDER BY school, course, cohort, d, verb_id"
)
MERGED_SQL = (
    f"SELECT {_GROUP}, uniqExactMerge(statements), uniqExactIfMerge(voided), uniqExactMerge(learners),"
    " uniqExactIfMerge(completed), uniqExactIfMerge(passed), uniqExactIfMerge(failed), toString(minMerge(first_event)),"
    " toString(maxMerge(last_event)) FROM {db}.activity_daily GROUP BY school, course, cohort, day, verb_id"
    " ORDER BY school, course, cohort, d, verb_id"
)
# (toStartOfDay: 18.16 cannot select the sorting-key expression toDate(timestamp) under FINAL)
RECOUNT_SQL = (
    "SELECT school, course, cohort, toString(toDate(toStartOfDay(timestamp))) AS d, verb_id, count(),"
    " countIf(voided = 1), uniqExact(learner), countIf(ifNull(result_completion, 0) = 1),"
    " countIf(ifNull(result_success, 2) = 1), countIf(ifNull(result_success, 2) = 0), toString(min(timestamp)),"
    " toString(max(timestamp)) FROM {db}.statements FINAL GROUP BY school, course, cohort, d, verb_id"
    " ORDER BY school, course, cohort, d, verb_id"
)
# Names as course IRIs carry them (the group key counts UTF-8 bytes, sinks/totals.py).
COURSES = ("course-1", "https://c.example/1:algèbre")
PER_SCHOOL_SQL = (
    "SELECT school, count(), uniqExact(learner), uniqExact(course) FROM {db}.statements FINAL GROUP BY school"
    " ORDER BY school"
)


def _text(rows) -> list[tuple[str, ...]]:
    return [tuple(str(v) for v in r) for r in rows]


def assert_totals_exact(ch) -> None:
    """activity_totals FINAL == the merged id sets == statements FINAL; the summary agrees."""
    totals = _text(ch.query(TOTALS_SQL))
    assert totals == _text(ch.query(MERGED_SQL))
    assert totals == _text(ch.query(RECOUNT_SQL))
    summary = [(s.school, str(s.statements), str(s.learners), str(s.courses)) for s in school_summaries(ch, EVERY_SCHOOL)]
    assert summary == _text(ch.query(PER_SCHOOL_SQL))


@pytest.mark.kafka
def test_sinks_totals_equal_the_recount_after_replays_and_voids(settings):
    rng = random.Random(17)
    learners = [agent(f"tot{i}") for i in range(12)]
    teacher = agent("teacher")
    pub = Publisher(settings.kafka)
    sent: list[tuple[dict, str, dict, str]] = []  # (statement, school, who, course)
    envelopes = []

    def send(school, who, batch, course="course-1"):
        raw = envelope(settings, school, who, batch, course)
        envelopes.append((who, raw))
        pub.send(learner_of(settings, who).encode(), raw)

    for n in range(60):
        school, who, course = rng.choice(("s-1", "s-2")), rng.choice(learners), rng.choice(COURSES)
        batch = [make_statement(school, who, BASE_MS + n * 3_600_000 + i, rng) for i in range(rng.randint(1, 4))]
        sent.extend((s, school, who, course) for s in batch)
        send(school, who, batch, course)
    void_before = make_statement(  # voids a statement that arrives later
        "s-1", teacher, BASE_MS + 9_000_000_000, rng, verb={"id": VOIDED_VERB},
        object={"objectType": "StatementRef", "id": "6f0f5b1e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"},
    )  # fmt: skip
    send("s-1", teacher, [void_before])
    pub.flush()

    with running_sinks(settings, ["statements"]) as (ch, sinks):
        wait_committed(settings, sinks, "statements")
        assert_totals_exact(ch)
        # Replays in other batch boundaries: statements regrouped into new envelopes, and
        # whole envelopes again, after the first copies were committed.
        for s, school, who, course in rng.sample(sent, 25):
            send(school, who, [s], course)
        for who, raw in rng.sample(envelopes, 10):
            pub.send(learner_of(settings, who).encode(), raw)
        # A void of a statement stored in an earlier batch (its group is not in the void's
        # batch), and the statement the first void named, arriving after it.
        target = next(x[0] for x in sent if x[1] == "s-1")
        send("s-1", teacher, [make_statement(
            "s-1", teacher, BASE_MS + 9_100_000_000, rng, verb={"id": VOIDED_VERB},
            object={"objectType": "StatementRef", "id": target["id"]},
        )])  # fmt: skip
        late = make_statement("s-1", learners[0], BASE_MS + 5_000, rng)
        late = {**late, "id": "6f0f5b1e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"}
        send("s-1", learners[0], [late])
        pub.flush()
        pub.close()
        wait_committed(settings, sinks, "statements")

        assert_totals_exact(ch)
        voided = ch.query("SELECT sum(voided) FROM {db}.activity_totals FINAL WHERE school = 's-1'")
        assert int(voided[0][0]) == 2
        n = len({x[0]["id"] for x in sent}) + 3
        assert int(ch.query("SELECT sum(statements) FROM {db}.activity_totals FINAL")[0][0]) == n


def test_sinks_totals_recompute_of_many_groups_with_long_names_fits_the_query_size(clickhouse_url):
    """A batch touches thousands of groups; their keys must not exceed the server's query size
    (256 KiB on 18.16, where parameters are inlined in the query text: code 62 otherwise)."""
    import datetime as dt
    import uuid as uuid_mod

    from schemas.clickhouse import tables as T
    from schemas.clickhouse.migrate import migrate
    from sinks.engines import engine_from_url
    from sinks.totals import recompute_groups

    ch = engine_from_url(clickhouse_url)
    try:
        migrate(ch)
        course = "https://courses.example.org/" + "long-course-name/" * 5
        day = dt.date(2026, 1, 5)
        groups = [("school-1", f"{course}{i:05d}", "cohort-1", day, "http://adlnet.gov/expapi/verbs/passed")
                  for i in range(3_000)]  # fmt: skip
        row = dict.fromkeys(T.STATEMENT_COLUMNS)
        row.update(
            statement_id=uuid_mod.UUID(int=7), school="school-1", course=groups[-1][1], cohort="cohort-1",
            learner="l-1", verb_id=groups[-1][4], object_id="a", object_type="Activity",
            timestamp=dt.datetime(2026, 1, 5, 10), stored=dt.datetime(2026, 1, 5, 10), voided=0, violations=[],
        )  # fmt: skip
        ch.insert(f"{ch.database}.{T.STATEMENTS}", T.STATEMENT_COLUMNS, [[row[c]] for c in T.STATEMENT_COLUMNS])
        recompute_groups(ch, groups)
        totals = ch.query("SELECT course, statements FROM {db}.activity_totals FINAL")
        assert [(str(c), int(n)) for c, n in totals] == [(groups[-1][1], 1)]
    finally:
        ch.close()


HOURLY_SQL = (
    "SELECT school, course, cohort, toString(period_start), statements, sessions, active_ms, learners"
    " FROM {db}.engagement_hourly FINAL ORDER BY school, course, cohort, period_start"
)
HOURLY_OF_ENGAGEMENT_SQL = (
    "SELECT school, course, cohort, toString(period_start), sum(statements), sum(sessions), sum(active_ms), count()"
    " FROM {db}.engagement FINAL WHERE grain = 'hour' GROUP BY school, course, cohort, period_start"
    " ORDER BY school, course, cohort, period_start"
)


@pytest.mark.kafka
def test_engagement_sink_keeps_engagement_hourly_equal_to_engagement_after_versions_copies_and_replays(settings):
    """``engagement_hourly`` (migration 0023, sinks/hourly.py) through a real engagement sink: after
    newer versions, copies, older versions arriving late and a replay of the topic by a new group,
    every (school, course, cohort, hour) row equals the sums over ``engagement FINAL``, and the
    sparkline equals its first definition (FINAL over every learner's hour rows). Without the
    sink's recompute step the table would be empty; a recompute that added would exceed them."""
    from reporting.dashboard import dashboard_state
    from schemas.records import EngagementRecord
    from schemas.topics import Topic
    from benchmarks.bench_sparkline import FIRST_SQL as _FIRST_HOURLY_SQL
    from tests.integration.test_sinks_statements import wait_committed_group

    from reporting.scope import IN_SCOPE

    rng = random.Random(23)
    pub = Publisher(settings.kafka, Topic.ENGAGEMENT)
    records: dict[tuple, EngagementRecord] = {}
    sent: list[EngagementRecord] = []
    hour_ms = 3_600_000

    def publish(rec: EngagementRecord) -> None:
        pub.send(rec.learner.encode(), rec.encode())
        sent.append(rec)

    for n in range(300):
        school, course = rng.choice(("s-1", "s-2")), rng.choice(COURSES)
        cohort, learner = rng.choice(("k1", "k2")), f"{rng.randrange(15):064x}"
        hour = BASE_MS - BASE_MS % hour_ms + rng.randrange(30) * hour_ms
        key = (school, course, cohort, learner, hour)
        prev = records.get(key)
        v = (prev.version if prev else 0) + 1
        rec = EngagementRecord(school, course, cohort, learner, "hour", hour, 2 * v + n % 3, v, 1000 * v, hour + 5, v)
        records[key] = rec
        publish(rec)
        if prev is not None and rng.random() < 0.3:
            publish(prev)  # late: an older version after a newer one
        if rng.random() < 0.1:
            publish(rec)  # a copy
    pub.flush()

    def assert_exact(ch) -> None:
        rows = ch.query(HOURLY_SQL)
        assert rows == ch.query(HOURLY_OF_ENGAGEMENT_SQL)
        assert sum(int(r[4]) for r in rows) == sum(r.statements for r in records.values())
        assert sum(int(r[7]) for r in rows) == len(records)
        page = {s["school"]: [tuple(p) for p in s["hourly"]] for s in dashboard_state(ch, EVERY_SCHOOL)["schools"]}
        first: dict[str, list] = {}
        for school, hour, n in ch.query(_FIRST_HOURLY_SQL.replace("{in_scope}", IN_SCOPE), EVERY_SCHOOL.params()):
            first.setdefault(school, []).append((int(hour), int(n)))
        assert {s: p for s, p in page.items() if p} == first

    # The summary lists schools with statements: one statement each, through the statements sink.
    with running_sinks(settings, ["engagement", "statements"]) as (ch, sinks):
        for school in ("s-1", "s-2"):
            who = agent(f"hourly-{school}")
            stmts = Publisher(settings.kafka)
            stmts.send(learner_of(settings, who).encode(),
                       envelope(settings, school, who, [make_statement(school, who, BASE_MS, rng)]))  # fmt: skip
            stmts.flush()
            stmts.close()
        wait_committed(settings, sinks, "statements")
        wait_committed(settings, sinks, "engagement", topic=Topic.ENGAGEMENT)
        assert_exact(ch)
        # Replays in other batch boundaries after the first copies were committed.
        for rec in rng.sample(sent, 80):
            publish(rec)
        pub.flush()
        pub.close()
        wait_committed(settings, sinks, "engagement", topic=Topic.ENGAGEMENT)
        assert_exact(ch)
    # A new consumer group replays the whole topic into the same tables: nothing changes.
    with running_sinks(settings, ["engagement"], group_id="replay-hourly") as (ch, sinks):
        wait_committed_group(settings, sinks, "replay-hourly-engagement", topic=Topic.ENGAGEMENT)
        assert_exact(ch)
