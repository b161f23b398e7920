"""The "mastery stalled" rule and the history series it reads (reporting/mastery.py): pure logic."""

from __future__ import annotations

import json

from reporting.mastery import DAY_MS, MASTERED, Point, current_series, stalled
from streams.config import load_health_params

NOW = 100 * DAY_MS


def _series(ps: list[float], start_ms: int = NOW - 10 * 60_000, step_ms: int = 60_000) -> list[Point]:
    """One estimate per attempt, a minute apart, ending near NOW."""
    return [Point(start_ms + i * step_ms, p, i + 1, i + 1) for i, p in enumerate(ps)]


def test_mastery_stalled_when_not_risen_over_the_last_attempts():
    flat = _series([0.2, 0.3, 0.4, 0.35, 0.38, 0.36, 0.4, 0.39])
    # 5 attempts ago (observations 3): 0.4; now 0.39: not risen.
    assert stalled(flat, NOW, attempts=5, within_days=7) == {"p_mastery": 0.39, "was": 0.4, "attempts_since": 5}
    # Equal counts as not risen.
    assert stalled(_series([0.3] * 6), NOW, attempts=5, within_days=7)["attempts_since"] == 5


def test_mastery_not_stalled_when_rising_mastered_too_few_attempts_or_no_longer_practised():
    rising = _series([0.2, 0.25, 0.3, 0.35, 0.4, 0.45])
    assert stalled(rising, NOW, attempts=5, within_days=7) is None
    # A single rise over the window is enough, however it went between.
    assert stalled(_series([0.5, 0.2, 0.2, 0.2, 0.2, 0.51]), NOW, attempts=5, within_days=7) is None
    assert stalled(_series([MASTERED] * 8), NOW, attempts=5, within_days=7) is None
    assert stalled(_series([0.3] * 5), NOW, attempts=5, within_days=7) is None  # 4 attempts since the first
    old = _series([0.3] * 8, start_ms=NOW - 9 * DAY_MS)
    assert stalled(old, NOW, attempts=5, within_days=7) is None
    assert stalled(old, NOW, attempts=5, within_days=10) is not None
    assert stalled([], NOW, attempts=5, within_days=7) is None


def test_mastery_stalled_compares_with_the_newest_estimate_at_least_n_attempts_back():
    # Several attempts in one processing batch: observations jump 1 -> 4 -> 9.
    s = [Point(NOW - 3000, 0.5, 1, 1), Point(NOW - 2000, 0.3, 4, 4), Point(NOW - 1000, 0.31, 9, 9)]
    assert stalled(s, NOW, attempts=5, within_days=7) is None  # 0.31 > 0.3 (obs 4 is 5 attempts back)
    # 6 attempts back is before observation 4: the estimate after the first attempt.
    assert stalled(s, NOW, attempts=6, within_days=7) == {"p_mastery": 0.31, "was": 0.5, "attempts_since": 8}


def test_current_series_drops_points_an_undo_superseded():
    t = [NOW - 4000, NOW - 3000, NOW - 2000, NOW - 1000]
    # Attempts at t0..t2 (versions 1..3); the t2 attempt is voided: the worker writes the
    # recomputed estimate at t1 (version 4), then a new attempt at t3 (version 5).
    points = [Point(t[0], 0.2, 1, 1), Point(t[1], 0.25, 2, 4), Point(t[2], 0.6, 3, 3), Point(t[3], 0.3, 3, 5)]
    assert current_series(reversed(points)) == [points[0], points[1], points[3]]
    plain = _series([0.1, 0.2, 0.3])
    assert current_series(plain) == plain


def test_stalled_thresholds_are_per_school_like_the_other_rules(tmp_path):
    path = tmp_path / "thresholds.json"
    path.write_text(json.dumps({"defaults": {"stalled_attempts": 8}, "schools": {"s-1": {"stalled_within_days": 3}}}))
    params = load_health_params(path)
    assert (params.defaults.stalled_attempts, params.defaults.stalled_within_days) == (8, 7.0)
    assert (params.for_school("s-1").stalled_attempts, params.for_school("s-1").stalled_within_days) == (8, 3)
