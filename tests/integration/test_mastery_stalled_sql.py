"""The "mastery stalled" rule in SQL (``reporting.mastery.STALLED_SQL``) on both engines, against the
rule's definition in Python (``stalled(current_series(…))``) on the cases where they could part:
exactly N attempts and one fewer, a replayed (duplicated) history row, a point recomputed at the
same event time, points an undo superseded (also the newest event time), observations jumping,
practice exactly at and just outside the window, mastered, and a learner not asked for."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from learnpulse.pipeline import open_clickhouse
from learnpulse.settings import ClickHouseSettings, Settings
from reporting.mastery import DAY_MS, Point, current_series, stalled, stalled_skills
from reporting.scope import EVERY_SCHOOL

SCHOOL, COURSE, SKILL = "s-1", "https://c.example/1:algèbre", "https://skills.example/fractions"
NOW_MS = 1_772_323_200_000 + 20 * DAY_MS  # whole seconds: 18.16 keeps event_time in seconds
MIN = 60_000


def _flat(n: int, p: float = 0.3, end_ms: int = NOW_MS - MIN) -> list[tuple[int, float, int, int]]:
    """``n`` attempts a minute apart ending at ``end_ms``: (ms, P, observations, version)."""
    return [(end_ms - (n - 1 - i) * MIN, p, i + 1, i + 1) for i in range(n)]


# learner -> history rows (ms, P, observations, version), as the sink writes them (copies included).
CASES = {
    "exactly-n": _flat(6),
    "one-fewer": _flat(5),
    # The newest row written twice (a replay): still five attempts, not six.
    "replayed-row": _flat(5) + _flat(5)[-1:],
    # Every row replayed: the figures are those of the rows once.
    "all-replayed": _flat(7) + _flat(7),
    # The newest event time recomputed (a later version replaces it): P rose, not stalled.
    "recomputed": _flat(6) + [(NOW_MS - MIN, 0.9, 6, 9)],
    # An undo: the estimate recomputed at the second attempt (version 6) supersedes the third
    # (version 3, P 0.1); then five attempts flat at 0.3. Kept, the third would be "then".
    "undo": [(NOW_MS - 10 * MIN, 0.5, 1, 1), (NOW_MS - 9 * MIN, 0.3, 2, 6), (NOW_MS - 8 * MIN, 0.1, 2, 3)]
    + [(NOW_MS - (7 - i) * MIN, 0.3, 3 + i, 7 + i) for i in range(5)],
    # The newest event time carries an old version: superseded, the series ends before it.
    "undo-newest": _flat(6, end_ms=NOW_MS - 2 * MIN) + [(NOW_MS - MIN, 0.1, 7, 2)],
    # Observations jump 1 -> 4 -> 9 (several attempts in one batch): obs 4 is 5 attempts back, obs 1 is 6.
    "jumps": [(NOW_MS - 3 * MIN, 0.5, 1, 1), (NOW_MS - 2 * MIN, 0.3, 4, 2), (NOW_MS - MIN, 0.31, 9, 3)],
    "rising-once": _flat(5) + [(NOW_MS, 0.31, 6, 6)],
    "mastered": _flat(6, p=0.95),
    "at-window-edge": _flat(6, end_ms=NOW_MS - 7 * DAY_MS),
    "just-outside-window": _flat(6, end_ms=NOW_MS - 7 * DAY_MS - 1000),
    "not-asked-for": _flat(6),
}


def _python_rule(rows: list[tuple[int, float, int, int]], attempts: int, within_days: float) -> dict | None:
    """The rule as the cohort answer applied it before: one point per event time (newest version)."""
    newest: dict[int, tuple[float, int, int]] = {}
    for ms, p, obs, version in rows:
        if version >= newest.get(ms, (0, 0, -1))[2]:
            newest[ms] = (p, obs, version)
    points = [Point(ms, p, obs, version) for ms, (p, obs, version) in newest.items()]
    return stalled(current_series(points), NOW_MS, attempts, within_days)


@pytest.fixture
def ch(tmp_path, clickhouse_url):
    ch = open_clickhouse(Settings(home=tmp_path / "home", clickhouse=ClickHouseSettings(url=clickhouse_url)))
    rows = [(SCHOOL, COURSE, learner, SKILL, p, obs, 0, datetime.fromtimestamp(ms / 1000, UTC), version)
            for learner, history in CASES.items() for ms, p, obs, version in history]  # fmt: skip
    columns = ["school", "course", "learner", "skill", "p_mastery", "observations", "correct", "event_time", "version"]
    # The copies in a second insert (a replay): separate rows until a merge, not a retried block.
    first, copies = [], []
    for row in rows:
        (copies if row in first else first).append(row)
    for block in (first, copies):
        ch.insert(f"{ch.database}.mastery_history", columns, [list(c) for c in zip(*block)])
    yield ch
    ch.close()


@pytest.mark.parametrize(("attempts", "within_days"), [(5, 7), (6, 7), (1, 7), (5, 0.001), (5, 30)])
def test_stalled_sql_equals_the_python_rule(ch, attempts, within_days):
    asked = [learner for learner in CASES if learner != "not-asked-for"]
    params = {**EVERY_SCHOOL.params(), "school": SCHOOL, "course": COURSE, "learners": asked}
    got = stalled_skills(ch, params, NOW_MS, attempts, within_days)
    want = {}
    for learner in asked:
        why = _python_rule(CASES[learner], attempts, within_days)
        if why is not None:
            want[learner] = [{"skill": SKILL, **why}]
    assert got == want


def test_stalled_sql_cases(ch):
    asked = list(CASES)[:-1]
    params = {**EVERY_SCHOOL.params(), "school": SCHOOL, "course": COURSE, "learners": asked}
    got = {learner: skills[0] for learner, skills in stalled_skills(ch, params, NOW_MS, 5, 7).items()}
    assert sorted(got) == ["all-replayed", "at-window-edge", "exactly-n", "undo", "undo-newest"]
    assert got["exactly-n"] == {"skill": SKILL, "p_mastery": 0.3, "was": 0.3, "attempts_since": 5}
    assert got["all-replayed"]["attempts_since"] == 5
    # "then" is the estimate recomputed at the second attempt, not the superseded P 0.1.
    assert got["undo"] == {"skill": SKILL, "p_mastery": 0.3, "was": 0.3, "attempts_since": 5}
    assert got["undo-newest"] == {"skill": SKILL, "p_mastery": 0.3, "was": 0.3, "attempts_since": 5}
    assert stalled_skills(ch, params, NOW_MS, 0, 7) == {}
