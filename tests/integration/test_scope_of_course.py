"""``LEARNER_OF_COURSE_IN_SCOPE`` (a query pinned to one school and course) lets through exactly the rows
``LEARNER_IN_SCOPE`` lets through, on both engines, for every kind of scope and every school × course:
learners in several cohorts and courses, the same cohort name in another course and school, a learner
seen only in hourly rows, a course without engagement."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from learnpulse.pipeline import open_clickhouse
from learnpulse.settings import ClickHouseSettings, Settings
from reporting.scope import EVERY_SCHOOL, LEARNER_IN_SCOPE, LEARNER_OF_COURSE_IN_SCOPE, Scope

DAY = datetime(2026, 3, 2, tzinfo=UTC)
# (school, course, cohort, learner, grain) engagement rows.
ENGAGEMENT = [
    ("s-1", "c-1", "k1", "ana", "day"), ("s-1", "c-1", "k2", "bo", "day"), ("s-1", "c-1", "k1", "bo", "day"),
    ("s-1", "c-2", "k1", "cy", "day"), ("s-1", "c-2", "k2", "ana", "day"), ("s-1", "c-1", "k2", "dee", "hour"),
    ("s-2", "c-1", "k1", "eve", "day"), ("s-2", "c-1", "k1", "ana", "day"), ("s-1", "c-2", "k1", "bo", "hour"),
]  # fmt: skip
# (school, course, learner) mastery rows: every learner in every school x course, one course never seen.
MASTERY = [(s, c, x) for s in ("s-1", "s-2") for c in ("c-1", "c-2", "c-3") for x in ("ana", "bo", "cy", "dee", "eve")]
SCOPES = {
    "network": EVERY_SCHOOL,
    "school": Scope.of_schools(["s-1"]),
    "teacher": Scope.of_cohorts([("s-1", "c-1", "k1")]),
    "teacher-two-courses": Scope.of_cohorts([("s-1", "c-1", "k2"), ("s-1", "c-2", "k1")]),
    "teacher-two-schools": Scope.of_cohorts([("s-2", "c-1", "k1"), ("s-1", "c-2", "k2")]),
    "nobody": Scope(),
}


@pytest.fixture
def ch(tmp_path, clickhouse_url):
    ch = open_clickhouse(Settings(home=tmp_path / "home", clickhouse=ClickHouseSettings(url=clickhouse_url)))
    rows = [[s, c, k, x, g, DAY, 1, 1, 60_000, DAY, 1] for s, c, k, x, g in ENGAGEMENT]
    columns = ["school", "course", "cohort", "learner", "grain", "period_start", "statements", "sessions",
               "active_ms", "last_event", "version"]  # fmt: skip
    ch.insert(f"{ch.database}.engagement", columns, [list(c) for c in zip(*rows)])
    rows = [[s, c, x, "skill", 0.5, 1, 1, DAY, 1] for s, c, x in MASTERY]
    columns = ["school", "course", "learner", "skill", "p_mastery", "observations", "correct", "event_time", "version"]
    ch.insert(f"{ch.database}.mastery", columns, [list(c) for c in zip(*rows)])
    yield ch
    ch.close()


@pytest.mark.parametrize("kind", SCOPES)
def test_pinned_course_scope_lets_through_the_same_rows(ch, kind):
    scope = SCOPES[kind]
    pinned = "SELECT learner FROM {db}.mastery FINAL WHERE school = {school:String} AND course = {course:String} AND "
    seen = 0
    for school in ("s-1", "s-2"):
        for course in ("c-1", "c-2", "c-3"):
            params = {**scope.params(), "school": school, "course": course}
            want = sorted(r[0] for r in ch.query(pinned + LEARNER_IN_SCOPE, params))
            assert sorted(r[0] for r in ch.query(pinned + LEARNER_OF_COURSE_IN_SCOPE, params)) == want
            seen += len(want)
    assert seen == {"network": 30, "school": 15, "teacher": 2, "teacher-two-courses": 2,
                    "teacher-two-schools": 3, "nobody": 0}[kind]  # fmt: skip
