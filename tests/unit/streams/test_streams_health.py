"""Cohort health and alert hysteresis with injected event time."""

from __future__ import annotations

import orjson

from streams.config import DAY_MS, HOUR_MS, HealthParams, HealthThresholds
from streams.health import logic as h
from streams.health import state as st

T0 = 1_767_225_600_000
T = HealthThresholds(inactive_days=7, low_active_fraction=0.0, alert_share=0.5, resolve_share=0.2, min_cohort_size=4)
P = HealthParams(defaults=T, per_school={"strict": HealthThresholds(min_cohort_size=100)})


def cohort(school="s"):
    return h.new_cohort(school, "c", "k")


def active(cs, learner, hour_ms, ms=600_000, version=1):
    h.merge_bucket(cs, learner, hour_ms, ms, hour_ms + 60_000, version, P)


def test_streams_health_absence_makes_learners_disengaged_as_event_time_advances():
    cs = cohort()
    for i in range(4):
        active(cs, f"l{i}", T0)
    healths, alerts = h.advance(cs, T0 + 7 * DAY_MS, P)
    assert healths[0].at_ms == T0 + HOUR_MS and healths[0].disengaged == 0
    assert alerts == []
    # l0..l1 keep working, l2..l3 stop sending anything at all
    for d in range(1, 9):
        active(cs, "l0", T0 + d * DAY_MS, version=d + 1)
        active(cs, "l1", T0 + d * DAY_MS, version=d + 1)
    healths, alerts = h.advance(cs, T0 + 9 * DAY_MS, P)
    # last activity 00:01 → disengaged from the first hour boundary 7 days later
    first = next(x for x in healths if x.disengaged == 2)
    assert first.at_ms == T0 + 7 * DAY_MS + HOUR_MS
    assert first.disengaged_learners == ("l2", "l3") and first.share == 0.5
    assert [(a.state, a.fired_at_ms) for a in alerts] == [("fired", T0 + 7 * DAY_MS + HOUR_MS)]


def test_streams_health_names_disengaged_learners_in_order_whatever_order_they_joined():
    cs = cohort()
    for name in ("l9", "l3", "l7", "l1"):
        active(cs, name, T0)
    for d in range(1, 9):
        active(cs, "l7", T0 + d * DAY_MS, version=d + 1)
    healths, alerts = h.advance(cs, T0 + 9 * DAY_MS, P)
    first = next(x for x in healths if x.disengaged == 3)
    assert first.disengaged_learners == ("l1", "l3", "l9")
    assert [a.health.disengaged_learners for a in alerts] == [("l1", "l3", "l9")]
    assert h.evaluate(cs, T0 + 9 * DAY_MS, T).disengaged_learners == ("l1", "l3", "l9")


def test_streams_health_alert_resolves_with_hysteresis_once_per_episode():
    cs = cohort()
    for i in range(10):
        active(cs, f"l{i}", T0)
    h.advance(cs, T0 + HOUR_MS, P)
    # days 1..8: l0..l4 active every day; l5..l9 go quiet → share 0.5 → fires once
    for d in range(1, 9):
        for i in range(5):
            active(cs, f"l{i}", T0 + d * DAY_MS, version=d + 1)
    _, alerts = h.advance(cs, T0 + 9 * DAY_MS, P)
    assert [a.state for a in alerts] == ["fired"]
    # l5, l6 come back: share 0.3 — between resolve (0.2) and fire (0.5): nothing changes
    for i in (5, 6):
        active(cs, f"l{i}", T0 + 9 * DAY_MS, version=20)
    for i in range(5):
        active(cs, f"l{i}", T0 + 9 * DAY_MS, version=20)
    _, alerts = h.advance(cs, T0 + 9 * DAY_MS + 2 * HOUR_MS, P)
    assert alerts == []
    # l7 returns too: share 0.2 → resolved, with the same alert id
    active(cs, "l7", T0 + 9 * DAY_MS + 2 * HOUR_MS, version=21)
    _, alerts = h.advance(cs, T0 + 9 * DAY_MS + 4 * HOUR_MS, P)
    assert [a.state for a in alerts] == ["resolved"]
    assert alerts[0].alert_id == h.alert_id(cs, T0 + 7 * DAY_MS + HOUR_MS)


def test_streams_health_low_active_time_against_cohort_median():
    t = HealthThresholds(inactive_days=30, low_active_fraction=0.5, alert_share=0.9, min_cohort_size=2)
    p = HealthParams(defaults=t)
    cs = cohort()
    for i, ms in enumerate([3_600_000, 3_000_000, 2_400_000, 600_000]):
        h.merge_bucket(cs, f"l{i}", T0, ms, T0, 1, p)
    (health,), _ = h.advance(cs, T0 + HOUR_MS, p)
    assert health.median_active_ms_7d == 2_700_000
    assert health.disengaged_learners == ("l3",)  # 600,000 < 0.5 × 2,700,000


def test_streams_health_small_cohorts_and_per_school_thresholds_never_alert():
    for school, n in (("s", 3), ("strict", 10)):
        cs = cohort(school)
        for i in range(n):
            active(cs, f"l{i}", T0)
        _, alerts = h.advance(cs, T0 + 10 * DAY_MS, P)
        healths = [cs[st.LAST_RECORDED]]
        assert healths[0][2] == 1.0 and alerts == []


def test_streams_health_redelivered_or_stale_bucket_is_ignored():
    cs = cohort()
    assert h.merge_bucket(cs, "l", T0, 100, T0, 5, P)
    assert not h.merge_bucket(cs, "l", T0, 100, T0, 5, P)
    assert not h.merge_bucket(cs, "l", T0, 50, T0, 4, P)
    assert cs[st.LEARNERS]["l"][st.BUCKETS][str(T0)][st.ACTIVE] == 100


def test_streams_health_evaluation_starts_at_first_learner_whatever_the_arrival_order():
    a, b = cohort(), cohort()
    active(a, "early", T0)
    active(a, "late", T0 + DAY_MS)
    active(b, "late", T0 + DAY_MS)
    active(b, "early", T0)
    ha, _ = h.advance(a, T0 + 2 * DAY_MS, P)
    hb, _ = h.advance(b, T0 + 2 * DAY_MS, P)
    assert ha == hb and ha[0].at_ms == T0 + HOUR_MS


def test_streams_health_global_watermark_waits_for_every_partition_and_skips_idle_ones():
    assert h.global_watermark({"0": [10, False]}, 2) is None
    assert h.global_watermark({"0": [10, False], "1": [20, False]}, 2) == 10
    assert h.global_watermark({"0": [10, True], "1": [20, False]}, 2) == 20
    assert h.global_watermark({"0": [10, True], "1": [None, True]}, 2) == 10


def test_streams_health_a_cohort_stored_by_an_earlier_worker_goes_on_with_the_same_figures():
    # A running deployment's cohort-state table holds documents of workers before
    # 2026-12-06: every learner inside, without a step of its own (advanced with the
    # cohort). A new worker must go on from them as from its own state.
    stored = orjson.loads(
        b'{"school":"s","course":"c","cohort":"k","L":{'
        + b",".join(b'"l%d":{"b":{"%d":[600000,%d,1]},"first":%d,"s7":0,"last":0}' % (i, T0, T0 + 60_000, T0) for i in range(4))
        + b'},"eh":null,"rec":null,"al":null}'
    )
    fresh = cohort()
    for i in range(4):
        active(fresh, f"l{i}", T0)
    for cs in (stored, fresh):
        h.advance(cs, T0 + 3 * HOUR_MS, P)
        active(cs, "l0", T0 + HOUR_MS, version=2)  # behind the evaluated step: folded at once
        active(cs, "l1", T0 + 5 * HOUR_MS, version=2)
    assert [lr["s7"] for lr in stored["L"].values()] == [lr["s7"] for lr in fresh["L"].values()] == [1_200_000, 600_000,
                                                                                                    600_000, 600_000]
    outcomes = [h.advance(cs, T0 + 9 * DAY_MS, P) for cs in (stored, fresh)]
    assert outcomes[0] == outcomes[1]
    assert orjson.dumps(stored) == orjson.dumps(fresh)
    assert stored["al"]["at"] == T0 + 7 * DAY_MS + HOUR_MS and stored["rec"][1] == 4
