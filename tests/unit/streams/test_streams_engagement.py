"""Sessions and active time: hand-computed cases and order independence."""

from __future__ import annotations

import random

from streams.config import HOUR_MS, MINUTE_MS, EngagementParams
from streams.engagement.logic import apply_statement, day_figures, figures_for, hour_figures, prune

P = EngagementParams()
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
M = MINUTE_MS


def run(events, p=P, prune_each=True):
    st: dict = {}
    for t, d in events:
        apply_statement(st, t, d, p)
        if prune_each:
            prune(st)
    return st


def test_streams_engagement_gaps_up_to_cutoff_count_as_active():
    # 10:00, 10:05, 10:15 (gaps 5 and 10 min, both ≤ 15) then 10:40 (gap 25 > 15, same session)
    st = run([(T0 + 10 * HOUR_MS + m * M, 0) for m in (0, 5, 15, 40)])
    f = hour_figures(st, T0 + 10 * HOUR_MS)
    assert f[:4] == [4, 1, 15 * M, T0 + 10 * HOUR_MS + 40 * M]


def test_streams_engagement_session_ends_after_30_idle_minutes():
    st = run([(T0 + m * M, 0) for m in (0, 10, 41, 50, 81)])
    # gaps: 10, 31 (> 30 → new session), 9, 31 (new session)
    assert hour_figures(st, T0)[1] == 2
    assert hour_figures(st, T0 + HOUR_MS)[1] == 1  # the third one starts at 01:21
    assert day_figures(st, T0)[1] == 3
    # active: [0,10] + [41,50] = 19 min (the 31-minute gaps are idle)
    assert day_figures(st, T0)[2] == 19 * M


def test_streams_engagement_duration_and_gap_do_not_double_count():
    # A 20-minute video ending at 00:20 (interval 00:00–00:20), and an answer at 00:10
    # inside it with its own 5-minute duration: union is 20 minutes, not 20 + 5 + gaps.
    st = run([(T0 + 20 * M, 20 * 60_000), (T0 + 10 * M, 5 * 60_000)])
    f = hour_figures(st, T0)
    assert f[:3] == [2, 1, 20 * M]


def test_streams_engagement_duration_bridges_from_previous_activity():
    # statement at 00:00, then one at 00:40 with a 30-minute duration (starts 00:10):
    # the gap 00:00→00:10 is ≤ 15 min, so active = 40 minutes, one session.
    st = run([(T0, 0), (T0 + 40 * M, 30 * 60_000)])
    assert hour_figures(st, T0)[:3] == [2, 1, 40 * M]


def test_streams_engagement_active_time_split_across_hours_and_day():
    # 23:50 → 00:05 next day, gap 15 min: 10 min on day 1, 5 min on day 2
    a = T0 + 23 * HOUR_MS + 50 * M
    st = run([(a, 0), (a + 15 * M, 0)])
    assert hour_figures(st, T0 + 23 * HOUR_MS)[2] == 10 * M
    d2 = T0 + 24 * HOUR_MS
    assert hour_figures(st, d2)[2] == 5 * M
    assert day_figures(st, T0)[:3] == [1, 1, 10 * M]
    assert day_figures(st, d2)[:3] == [1, 0, 5 * M]


def test_streams_engagement_statement_past_horizon_is_not_counted():
    st = run([(T0 + 5 * HOUR_MS, 0)])
    before = {k: list(v) for k, v in st["h"].items()}
    ch = apply_statement(st, T0 + 2 * HOUR_MS, 0, P)  # hz = hour(05:00 - 1h) = 04:00
    assert ch.hours == ()
    assert st["h"] == before


def test_streams_engagement_version_is_sequence_of_last_change():
    st = run([(T0, 0), (T0 + 5 * M, 0), (T0 + 2 * HOUR_MS, 0)])
    # hour 0 last changed by statement 2, hour 2 by statement 3
    assert hour_figures(st, T0)[4] == 2
    assert hour_figures(st, T0 + 2 * HOUR_MS)[4] == 3
    assert day_figures(st, T0)[4] == 3


def _brute(events, p):
    """Whole-history recompute of every hour, independent of arrival order."""
    evs = sorted([t, t - min(d, p.max_duration_ms)] for t, d in events)
    first = min(s for _t, s in evs) - 2 * HOUR_MS
    last = max(t for t, _s in evs) + 2 * HOUR_MS
    first -= first % HOUR_MS
    last -= last % HOUR_MS
    return {h: f for h, f in figures_for(evs, first, last, p).items() if f != [0, 0, 0, 0]}


def test_streams_engagement_in_order_and_shuffled_give_the_same_figures():
    rng = random.Random(5)
    for trial in range(40):
        t = T0
        events = []
        for _ in range(rng.randrange(5, 60)):
            t += rng.choice([rng.randrange(0, 5 * M), rng.randrange(5 * M, 40 * M), rng.randrange(0, 3 * HOUR_MS)])
            d = rng.choice([0, 0, rng.randrange(1, 40 * M)])
            events.append((t, d))
        # Generous lateness so nothing is dropped: figures must equal the brute force.
        p = EngagementParams(lateness_ms=10_000 * HOUR_MS)
        want = _brute(events, p)
        in_order = run(events, p)
        shuffled = list(events)
        rng.shuffle(shuffled)
        other = run(shuffled, p)
        for st in (in_order, other):
            got = {int(k): v[:4] for k, v in st["h"].items() if v[:4] != [0, 0, 0, 0]}
            assert got == want, f"trial {trial}"


def test_streams_engagement_figures_of_earlier_days_survive_until_pruned():
    # One envelope spanning two days: the first day's hours are still there for its records.
    st = run([(T0 + 10 * M, 0), (T0 + 15 * M, 0), (T0 + 30 * HOUR_MS, 0)], prune_each=False)
    assert hour_figures(st, T0)[:3] == [2, 1, 5 * M]
    prune(st)
    assert str(T0) not in st["h"]
    assert day_figures(st, T0 + 24 * HOUR_MS)[:2] == [1, 1]
