"""``mastery_history`` (migration 0019) on both engines: every estimate kept per event time,
exact under a retried insert and a replay, readable by research SQL, erased with the learner."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from learnpulse.pipeline import open_clickhouse
from learnpulse.settings import ClickHouseSettings, Settings
from learnpulse.web import research_runner
from reporting.sql import research_query
from schemas.clickhouse import tables as T
from schemas.clickhouse.ddl import needs_mapping
from schemas.records import MasteryRecord
from schemas.topics import Topic
from sinks.forget import forget_learners
from sinks.rows import COLUMNS, MODERN_RANGE, OLD_SERVER_RANGE, mastery_rows
from tests.integration.test_sinks_statements import (
    BASE_MS, Publisher, running_sinks, scalar, wait_committed, wait_committed_group,
)

ADA, BOB = "a" * 64, "b" * 64
HISTORY = "SELECT toUnixTimestamp(event_time), p_mastery, version FROM {db}.mastery_history FINAL " \
          "WHERE learner = {l:String} AND skill = {s:String} ORDER BY event_time"  # fmt: skip


def _records() -> list[MasteryRecord]:
    """Ada's estimates of one skill over five attempts a minute apart, then the third one
    recomputed (a later version at the same event time, as after a void); Bob's one estimate."""
    out = [MasteryRecord("s-1", "c-1", ADA, "fractions", 0.1 * (i + 1), i + 1, i, BASE_MS + i * 60_000, i + 1)
           for i in range(5)]  # fmt: skip
    out.append(MasteryRecord("s-1", "c-1", ADA, "fractions", 0.25, 2, 1, BASE_MS + 2 * 60_000, 7))
    out.append(MasteryRecord("s-1", "c-1", BOB, "fractions", 0.6, 1, 1, BASE_MS, 1))
    return out


def _expected_ada() -> list[tuple[int, float, int]]:
    points = {}
    for r in _records():
        if r.learner == ADA and r.version > points.get(r.event_ms, (0, 0))[1]:
            points[r.event_ms] = (r.p_mastery, r.version)
    return [(ms // 1000, p, v) for ms, (p, v) in sorted(points.items())]


def _history(ch, learner: str = ADA) -> list[tuple[int, float, int]]:
    return [(int(t), float(p), int(v)) for t, p, v in ch.query(HISTORY, {"l": learner, "s": "fractions"})]


@pytest.mark.kafka
def test_mastery_history_keeps_every_estimate_once_through_copies_and_a_replay(settings):
    pub = Publisher(settings.kafka, Topic.MASTERY)
    for r in _records() + _records()[:3]:  # the first three delivered twice
        pub.send(r.learner.encode(), r.encode())
    pub.flush()
    pub.close()
    with running_sinks(settings, ["mastery"]) as (ch, sinks):
        wait_committed(settings, sinks, "mastery", topic=Topic.MASTERY)
        assert _history(ch) == _expected_ada()
        # `mastery` keeps the current estimate only: the newest version.
        assert ch.query("SELECT p_mastery, version FROM {db}.mastery FINAL WHERE learner = {l:String}",
                        {"l": ADA}) == [(0.25, 7)]  # fmt: skip
    # A new consumer group replays the topic from its start into the same tables.
    replay = f"{settings.kafka.topic_prefix}replay"
    with running_sinks(settings, ["mastery"], group_id=replay) as (ch, sinks):
        wait_committed_group(settings, sinks, f"{replay}-mastery", topic=Topic.MASTERY)
        assert _history(ch) == _expected_ada()
        assert scalar(ch, "SELECT count() FROM {db}.mastery_history FINAL") == len(_expected_ada()) + 1


@pytest.fixture
def ch(tmp_path, clickhouse_url):
    engine = open_clickhouse(Settings(home=tmp_path / "home", clickhouse=ClickHouseSettings(url=clickhouse_url)))
    yield engine
    engine.close()


def _insert_as_the_sink(ch, records: list[MasteryRecord], token: str) -> None:
    """What the mastery sink does with a batch: rows of both tables, one insert per table with its token."""
    limits = OLD_SERVER_RANGE if needs_mapping(ch.server_version()) else MODERN_RANGE
    rows: dict[str, list] = {}
    for r in records:
        for table, got in mastery_rows(limits, r.encode()).items():
            rows.setdefault(table, []).extend(got)
    for table, batch in rows.items():
        ch.insert(f"{ch.database}.{table}", COLUMNS[table], [list(c) for c in zip(*batch)], f"mastery:{table}:{token}")


def test_mastery_history_a_retried_batch_adds_no_point(ch):
    _insert_as_the_sink(ch, _records(), "batch-1")
    first = _history(ch)
    assert first == _expected_ada()
    stored = scalar(ch, "SELECT count() FROM {db}.mastery_history")
    # The answer of the insert was lost: the sink sends the same batch with the same token.
    _insert_as_the_sink(ch, _records(), "batch-1")
    assert _history(ch) == first
    if not needs_mapping(ch.server_version()):
        # Current servers drop the retried block itself (deduplication window of the table).
        assert scalar(ch, "SELECT count() FROM {db}.mastery_history") == stored
    # A replay in other batch boundaries (other tokens) collapses by key.
    _insert_as_the_sink(ch, list(reversed(_records())), "batch-2")
    assert _history(ch) == first
    assert _history(ch, BOB) == [(BASE_MS // 1000, 0.6, 1)]


def test_mastery_history_is_research_data_and_forget_learner_erases_it(ch, tmp_path):
    _insert_as_the_sink(ch, _records(), "batch-1")
    assert T.MASTERY_HISTORY in T.RESEARCH_TABLES and T.MASTERY_HISTORY in T.SCHOOL_TABLES
    runner = research_runner(Settings(home=tmp_path / "home", clickhouse=ClickHouseSettings(url="unused")), ch)
    try:
        # A researcher's query, as documented in reporting/README.md (checked, read-only, limited).
        result = research_query(runner, ch.database, (
            "SELECT learner, skill, toUnixTimestamp(event_time) AS t, argMax(p_mastery, version) AS p "
            "FROM {db}.mastery_history WHERE school = 's-1' GROUP BY learner, skill, event_time ORDER BY learner, t"))
    finally:
        runner.close()
    assert result.columns == ["learner", "skill", "t", "p"]
    got = [(r[0], int(r[2]), float(r[3])) for r in result.rows]
    assert got == [(ADA, t, p) for t, p, _v in _expected_ada()] + [(BOB, BASE_MS // 1000, 0.6)]

    report = forget_learners(ch, [ADA], settle_s=0)
    assert report.remaining == 0
    assert scalar(ch, "SELECT count() FROM {db}.mastery_history WHERE learner = {l:String}", {"l": ADA}) == 0
    assert _history(ch, BOB) == [(BASE_MS // 1000, 0.6, 1)]
