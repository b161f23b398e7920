"""The ten research queries of reporting/queries/ on real pipeline data, on both engines.

Simulator → Kafka → Faust worker → every sink → ClickHouse, then each documented query
runs as a researcher would run it (``{db}`` and bound parameters), and its figures are
checked against an independent computation over the base tables.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from learnpulse.pipeline import run_simulator
from producers.simulator import SimulationConfig
from tests.conftest import wait_for
from tests.integration.streams_support import group_caught_up
from tests.integration.test_sinks_statements import running_sinks, scalar

QUERIES = Path(__file__).resolve().parents[2] / "reporting" / "queries"
N = 4_000
PARAMS = {"school": "school-000", "from": date(2025, 12, 1), "to": date(2027, 1, 1)}


def run(ch, name: str) -> tuple[list[str], list[tuple]]:
    sql = (QUERIES / name).read_text()
    params = {k: v for k, v in PARAMS.items() if "{" + k + ":" in sql}
    return sql, ch.query(sql, params)


def test_clickhouse_queries_are_ten_documented_files():
    files = sorted(p.name for p in QUERIES.glob("*.sql"))
    assert len(files) == 10
    readme = (QUERIES.parent / "README.md").read_text()
    for f in files:
        assert f in readme, f"{f} is not described in reporting/README.md"
        assert (QUERIES / f).read_text().startswith("--"), f"{f} starts with a comment saying what it answers"


@pytest.mark.kafka
def test_clickhouse_research_queries_on_pipeline_data(settings, spawn):
    worker = spawn(["worker"], settings, "worker")
    assert run_simulator(settings, SimulationConfig(seed=21, schools=2), count=N, rate=None) == N
    with running_sinks(settings, ["statements", "engagement", "mastery", "cohort_health", "alerts"]) as (
        ch,
        _sinks,
    ):

        def ready():
            if worker.popen.poll() is not None:
                pytest.fail(f"worker exited {worker.popen.returncode}:\n{worker.tail()}")
            return (
                scalar(ch, "SELECT count() FROM {db}.statements FINAL") == N
                and scalar(ch, "SELECT count() FROM {db}.engagement") > 0
                and scalar(ch, "SELECT count() FROM {db}.mastery") > 0
                and scalar(ch, "SELECT count() FROM {db}.cohort_health") > 0
            )

        wait_for(ready, 600, "statements and derived records of the simulation", interval=1.0)
        # The worker keeps emitting updates for a while: compare once nothing changes any more.
        inserted = (
            "SELECT (SELECT count() FROM {db}.engagement), (SELECT count() FROM {db}.mastery),"
            " (SELECT count() FROM {db}.cohort_health), (SELECT count() FROM {db}.alerts)"
        )
        last: list = [None]

        app_id = f"{settings.kafka.topic_prefix}learnpulse-streams"

        def settled():
            # Unchanged counts alone are no proof on a loaded machine (a slow worker pauses
            # longer than the interval): the worker must have committed every input too.
            now = ch.query(inserted)
            same = now == last[0]
            last[0] = now
            return same and group_caught_up(settings.kafka, app_id)

        wait_for(settled, 600, "derived records to settle", interval=4.0)
        school = {"s": PARAMS["school"]}

        _sql, rows = run(ch, "01_daily_activity_by_course.sql")
        total = scalar(ch, "SELECT count() FROM {db}.statements FINAL WHERE school = {s:String}", school)
        assert rows and sum(int(r[2]) for r in rows) == total
        voided = scalar(
            ch, "SELECT count() FROM {db}.statements FINAL WHERE school = {s:String} AND voided = 1", school
        )
        assert sum(int(r[3]) for r in rows) == voided

        _sql, rows = run(ch, "02_weekly_active_learners.sql")
        assert sum(int(r[4]) for r in rows) == total
        learners = scalar(ch, "SELECT uniqExact(learner) FROM {db}.statements FINAL WHERE school = {s:String}", school)
        assert max(int(r[3]) for r in rows) <= learners

        _sql, rows = run(ch, "03_verb_mix.sql")
        by_course: dict[str, float] = {}
        for course, _verb, _n, share in rows:
            by_course[course] = by_course.get(course, 0.0) + float(share)
        assert by_course and all(abs(v - 1.0) < 0.01 for v in by_course.values())
        assert sum(int(r[2]) for r in rows) == total

        _sql, rows = run(ch, "04_engagement_by_cohort.sql")
        direct = scalar(
            ch, "SELECT count() FROM {db}.engagement FINAL WHERE school = {s:String} AND grain = 'day'", school
        )
        assert rows and sum(int(r[3]) for r in rows) == direct

        _sql, rows = run(ch, "05_learner_weekly_active_time.sql")
        direct = scalar(
            ch, "SELECT sum(statements) FROM {db}.engagement FINAL WHERE school = {s:String} AND grain = 'day'", school
        )
        assert rows and sum(int(r[5]) for r in rows) == direct

        _sql, rows = run(ch, "06_mastery_by_skill.sql")
        direct = ch.query(
            "SELECT count() FROM {db}.mastery FINAL WHERE school = {s:String} AND observations > 0", school
        )
        assert rows and sum(int(r[2]) for r in rows) == int(direct[0][0])
        assert all(0.0 <= float(r[3]) <= 1.0 and 0.0 <= float(r[4]) <= 1.0 for r in rows)

        _sql, rows = run(ch, "07_item_statistics.sql")
        direct = scalar(
            ch, "SELECT count() FROM {db}.statements_current WHERE school = {s:String} AND result_success IS NOT NULL",
            school,
        )  # fmt: skip
        assert rows and sum(int(r[2]) for r in rows) == direct
        assert all(0.0 <= float(r[4]) <= 1.0 for r in rows)

        _sql, rows = run(ch, "08_cohort_health_latest.sql")
        cohorts = scalar(
            ch, "SELECT uniqExact(course, cohort) FROM {db}.cohort_health WHERE school = {s:String}", school
        )
        assert len(rows) == cohorts > 0

        _sql, rows = run(ch, "09_alert_episodes.sql")
        episodes = scalar(ch, "SELECT uniqExact(alert_id) FROM {db}.alerts WHERE school = {s:String}", school)
        assert len(rows) == episodes
        assert all(r[5] in ("fired", "resolved") for r in rows)

        _sql, rows = run(ch, "10_course_funnel.sql")
        for course, active, attempted, passed, completed in rows:
            assert int(active) >= int(attempted) >= int(passed) and int(active) >= int(completed)
        direct = scalar(ch, "SELECT uniqExact(learner) FROM {db}.statements_current WHERE school = {s:String}", school)
        assert max(int(r[1]) for r in rows) <= direct and rows
