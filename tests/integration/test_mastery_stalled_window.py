"""The "mastery stalled" rule read from the window's estimates (``reporting.mastery.stalled_skills``:
``STALLED_RECENT_SQL``, then ``STALLED_SQL`` for the pairs it leaves undecided) gives exactly the
answer of ``STALLED_SQL`` over the whole history, on both engines: on seeded random histories with
replayed rows (copies in the same and in a later insert), estimates recomputed at the same event
time (a later version), undos (a higher version written at an earlier event time, also before the
window, superseding points inside it), observations jumping and going back, P(mastery) ties, and
histories before, across and inside the window; and on named cases at the window's edges."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from learnpulse.pipeline import open_clickhouse
from learnpulse.settings import ClickHouseSettings, Settings
from reporting.mastery import (
    DAY_MS,
    MASTERED,
    STALLED_RECENT_SQL,
    STALLED_RECENT_SQL_1816,
    STALLED_SQL,
    STALLED_SQL_1816,
    Point,
    current_series,
    stalled,
    stalled_skills,
)
from reporting.scope import EVERY_SCHOOL
from schemas.clickhouse.ddl import needs_mapping

SCHOOL, COURSE = "s-1", "https://c.example/1:algèbre"
SKILLS = ("https://skills.example/fractions", "https://skills.example/équations", "skill-3")
NOW_MS = 1_772_323_200_000 + 40 * DAY_MS  # whole seconds: 18.16 keeps event_time in seconds
MIN = 60_000
# (attempts N, within days D): the thresholds' defaults, a short and a long window, N = 1, large N.
RULES = [(5, 7), (1, 7), (3, 2), (8, 7), (5, 0.5), (5, 30), (2, 100)]

Row = tuple[int, float, int, int]  # (ms, P, observations, version)


def _random_history(rng: random.Random) -> list[Row]:
    """One learner × skill's rows as the sink could write them (module docstring)."""
    start = NOW_MS - rng.choice([40, 20, 10, 8, 7, 3, 1]) * DAY_MS
    end = min(NOW_MS, start + rng.choice([1, 2, 5, 10, 30]) * DAY_MS)
    n = rng.choice([1, 2, 3, 4, 5, 6, 7, 9, 12, 20])
    times = sorted({start + rng.randrange(0, (end - start) // 1000 + 1) * 1000 for _ in range(n)})
    rows, obs, version = [], 0, 0
    for ms in times:
        obs += rng.choice([1, 1, 1, 2, 4])
        version += rng.choice([1, 1, 3])
        rows.append((ms, rng.choice([0.3, 0.3, 0.31, 0.5, 0.2, 0.96]), obs, version))
    for _ in range(rng.choice([0, 0, 1, 2])):
        # An undo: the estimate recomputed at an earlier attempt's event time, newest version,
        # fewer observations; the points after it are superseded.
        at, p, o, _v = rng.choice(rows)
        version += 1
        rows.append((at, rng.choice([0.3, 0.31, 0.1]), max(0, o - rng.choice([0, 1, 2])), version))
    if rng.random() < 0.3:
        # A late estimate recomputed at the same event time (a later version).
        at, p, o, _v = rng.choice(rows)
        version += 1
        rows.append((at, rng.choice([0.3, 0.9]), o, version))
    for _ in range(rng.choice([0, 0, 1, 3])):
        rows.append(rng.choice(rows))  # a replayed row
    return rows


def _flat(n: int, end_ms: int, p: float = 0.3, first_version: int = 1) -> list[Row]:
    """``n`` attempts a minute apart ending at ``end_ms``."""
    return [(end_ms - (n - 1 - i) * MIN, p, i + 1, first_version + i) for i in range(n)]


WINDOW_START = NOW_MS - 7 * DAY_MS
# Named cases at the window's edge for N = 5, D = 7 (learner -> rows of SKILLS[0]).
NAMED = {
    # Five attempts inside the window, the sixth just before it: "then" lies before the window.
    "then-before-window": _flat(6, WINDOW_START + 4 * MIN),
    # Six inside: decided from the window alone.
    "all-in-window": _flat(6, WINDOW_START + 5 * MIN),
    # The first attempt exactly at the window's start.
    "first-at-window-start": _flat(6, WINDOW_START + 5 * MIN, first_version=4) + _flat(3, WINDOW_START - MIN),
    # An undo written before the window with the highest version supersedes every point in it:
    # the series ends before the window (not practising).
    "undo-before-window": _flat(6, WINDOW_START + 10 * MIN, first_version=1)
    + [(WINDOW_START - MIN, 0.3, 1, 50)],
    # The undo's version is above the window's first points only: those are dropped.
    "undo-partly": [(WINDOW_START - MIN, 0.3, 1, 9)] + _flat(12, NOW_MS - MIN, first_version=4),
    # Nothing in the window.
    "before-window": _flat(8, WINDOW_START - MIN),
}


@pytest.fixture(scope="module")
def histories() -> dict[tuple[str, str], list[Row]]:
    """(learner, skill) -> rows: 150 random learners with most of the skills, and the named cases."""
    rng = random.Random(17)
    pairs = [(f"learner-{i:03d}", skill) for i in range(150) for skill in SKILLS if rng.random() < 0.8]
    out = {pair: _random_history(rng) for pair in pairs}
    out.update({(name, SKILLS[0]): rows for name, rows in NAMED.items()})
    return out


@pytest.fixture
def ch(tmp_path, clickhouse_url, histories):
    ch = open_clickhouse(Settings(home=tmp_path / "home", clickhouse=ClickHouseSettings(url=clickhouse_url)))
    columns = ["school", "course", "learner", "skill", "p_mastery", "observations", "correct", "event_time", "version"]
    rows = [(SCHOOL, COURSE, learner, skill, p, obs, 0, datetime.fromtimestamp(ms / 1000, UTC), version)
            for (learner, skill), history in histories.items() for ms, p, obs, version in history]  # fmt: skip
    # The first copy of each row in one insert, the further copies in a second (a replay).
    first, copies = [], []
    seen = set()
    for row in rows:
        (copies if row in seen else first).append(row)
        seen.add(row)
    for block in (first, copies):
        ch.insert(f"{ch.database}.mastery_history", columns, [list(c) for c in zip(*block)])
    yield ch
    ch.close()


def _params(learners: list[str]) -> dict:
    return {**EVERY_SCHOOL.params(), "school": SCHOOL, "course": COURSE, "learners": learners}


def _rule(attempts: int, within_days: float) -> dict:
    return {"attempts": attempts, "mastered": MASTERED, "since_ms": float(NOW_MS - within_days * DAY_MS)}


def _whole_history(ch, learners: list[str], attempts: int, within_days: float) -> dict[str, list[dict]]:
    """``STALLED_SQL`` alone, over every row of the learners' histories (the answer before the window)."""
    sql = STALLED_SQL_1816 if needs_mapping(ch.server_version()) else STALLED_SQL
    out: dict[str, list[dict]] = {}
    for learner, skill, p_now, p_then, since in ch.query(sql, {**_params(learners), **_rule(attempts, within_days)}):
        why = {"skill": skill, "p_mastery": round(p_now, 4), "was": round(p_then, 4), "attempts_since": int(since)}
        out.setdefault(learner, []).append(why)
    return out


def _python_rule(histories, learners: list[str], attempts: int, within_days: float) -> dict[str, list[dict]]:
    """:func:`stalled` on each pair's current series (one point per event time, newest version)."""
    out: dict[str, list[dict]] = {}
    for (learner, skill), rows in sorted(histories.items()):
        if learner not in learners:
            continue
        newest: dict[int, Row] = {}
        for row in rows:
            if row[3] >= newest.get(row[0], (0, 0.0, 0, -1))[3]:
                newest[row[0]] = row
        why = stalled(current_series(Point(*row) for row in newest.values()), NOW_MS, attempts, within_days)
        if why is not None:
            out.setdefault(learner, []).append({"skill": skill, **why})
    return out


@pytest.mark.parametrize(("attempts", "within_days"), RULES)
def test_window_then_whole_history_equals_whole_history(ch, histories, attempts, within_days):
    learners = sorted({learner for learner, _ in histories})[:-3]  # some learners not asked for
    want = _whole_history(ch, learners, attempts, within_days)
    assert want == _python_rule(histories, learners, attempts, within_days)
    assert stalled_skills(ch, _params(learners), NOW_MS, attempts, within_days) == want
    assert len(want) > 5


def test_both_steps_are_taken(ch, histories):
    """The random histories reach both steps: pairs decided in the window, and undecided ones."""
    learners = sorted({learner for learner, _ in histories})
    sql = STALLED_RECENT_SQL_1816 if needs_mapping(ch.server_version()) else STALLED_RECENT_SQL
    rows = ch.query(sql, {**_params(learners), **_rule(5, 7)})
    undecided = {(str(r[0]), str(r[1])) for r in rows if r[5]}
    assert len(undecided) > 5 and len(rows) - len(undecided) > 5
    assert ("then-before-window", SKILLS[0]) in undecided
    assert ("all-in-window", SKILLS[0]) not in undecided


def test_named_cases_at_the_window_edge(ch):
    got = stalled_skills(ch, _params(list(NAMED)), NOW_MS, 5, 7)
    assert sorted(got) == ["all-in-window", "first-at-window-start", "then-before-window", "undo-partly"]
    assert got["then-before-window"] == [{"skill": SKILLS[0], "p_mastery": 0.3, "was": 0.3, "attempts_since": 5}]
    # Versions 4..9 are not above the undo's 9: the series is the undo's point, then versions 10.. (obs 7..12).
    assert got["undo-partly"] == [{"skill": SKILLS[0], "p_mastery": 0.3, "was": 0.3, "attempts_since": 5}]
