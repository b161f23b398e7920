"""The event clock of benchmarks/bench_end_to_end: a mistake here leaves (d) "in cohort health"
empty or measured from the wrong moment."""

from __future__ import annotations

import threading

from benchmarks.end_to_end.clock import (
    HOUR_MS, PRIMER_BEFORE_MS, EventClock, crossing_lead_s, first_boundary, plan_step,
)

LAG = 10 * 60_000
LEAD = 5_000
WALL = 1_796_000_000_000 + 1_234_567  # any instant within an hour


def test_the_crossing_is_lead_after_the_step_start_at_an_hour_plus_the_lag():
    first = first_boundary(WALL, steps=3)
    step = plan_step(WALL, LEAD, LAG, None, first)
    assert step.boundary_ms % HOUR_MS == 0 and step.boundary_ms == first
    assert step.crossing_ms == step.boundary_ms + LAG
    assert step.crossing_wall_ms() == WALL + LEAD
    # a statement stamped at the start is in H's hour, short of the crossing by the lead
    assert WALL + step.offset_ms == step.crossing_ms - LEAD


def test_steps_move_one_hour_each_and_offsets_never_decrease():
    first = first_boundary(WALL, steps=4)
    steps, wall = [], WALL
    for _ in range(4):
        steps.append(plan_step(wall, LEAD, LAG, steps[-1] if steps else None, first))
        wall += 45_000  # a 20 s step, its settle, the probes' wait
    assert [s.boundary_ms - first for s in steps] == [0, HOUR_MS, 2 * HOUR_MS, 3 * HOUR_MS]
    assert all(b.offset_ms >= a.offset_ms for a, b in zip(steps, steps[1:], strict=False))
    for s in steps:
        assert s.crossing_wall_ms() == s.started_ms + LEAD


def test_a_step_more_than_an_hour_later_skips_hours_rather_than_going_back_in_event_time():
    first = first_boundary(WALL, steps=2)
    one = plan_step(WALL, LEAD, LAG, None, first)
    later = WALL + 3 * HOUR_MS + 60_000
    two = plan_step(later, LEAD, LAG, one, first)
    assert two.offset_ms >= one.offset_ms
    assert two.boundary_ms == one.boundary_ms + 4 * HOUR_MS
    assert two.crossing_wall_ms() == later + LEAD


def test_planned_steps_stamp_before_the_wall_clock():
    steps = 5
    first = first_boundary(WALL, steps)
    assert first <= WALL - steps * HOUR_MS
    previous, wall = None, WALL
    for _ in range(steps):
        previous = plan_step(wall, LEAD, LAG, previous, first)
        wall += 120_000
        # the newest stamp of the step (at its end, two minutes later) is still in the past
        assert wall + previous.offset_ms < wall


def test_the_lead_is_five_seconds_or_a_quarter_of_a_short_step():
    assert crossing_lead_s(20) == 5.0
    assert crossing_lead_s(8) == 2.0


def test_only_an_acknowledged_stamp_past_the_crossing_counts_and_the_earliest_wins():
    clock = EventClock(LAG, steps=2)
    step = clock.next_step(1.0)
    assert clock.primer_ms() == clock.first - PRIMER_BEFORE_MS < step.boundary_ms
    clock.acknowledged(step.crossing_ms - 1, at=10.0)
    assert clock.crossed_at is None
    clock.acknowledged(step.crossing_ms + 50, at=12.0)
    clock.acknowledged(step.crossing_ms, at=11.5)  # answered earlier, from another thread
    assert clock.crossed_at == 11.5
    _iso, ms = clock.stamp()
    assert step.crossing_ms - 1_500 < ms < step.crossing_ms + 60_000
    clock.next_step(1.0)
    assert clock.crossed_at is None  # a new step waits for its own crossing


def test_an_ack_of_the_previous_step_does_not_count_for_the_next():
    clock = EventClock(LAG, steps=2)
    old = clock.next_step(1.0)
    clock.next_step(1.0)
    clock.acknowledged(old.crossing_ms + 1, at=5.0)  # past the old crossing, short of the new one
    assert clock.crossed_at is None


def test_stamps_from_many_threads_never_go_back_across_steps():
    clock = EventClock(LAG, steps=3)
    clock.next_step(0.01)
    before = [clock.stamp()[1] for _ in range(10)]
    clock.next_step(0.01)
    after = []
    threads = [threading.Thread(target=lambda: after.append(clock.stamp()[1])) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert min(after) > max(before)


def test_d_is_measured_from_the_crossing_ack_per_cohort_seen():
    from benchmarks.end_to_end.probes import HealthWait

    wait = HealthWait(0, {("c0", "c0/cohort/0"): 14.0, ("c1", "c1/cohort/0"): 12.5, ("c2", "c2/cohort/0"): None})
    assert sorted(wait.seconds_after(10.0)) == [2.5, 4.0]  # the cohort not seen is no figure
    assert wait.seconds_after(None) == []  # nothing acknowledged past the crossing: nothing measured


def test_the_table_says_what_d_is_and_when_it_is_not_measured():
    from benchmarks.end_to_end.report import render
    from benchmarks.end_to_end.run import StepResult
    from benchmarks.end_to_end.traffic import StepLoad

    def step(clock):
        s = StepResult(500, 20, StepLoad(offered=10, sent=10, accepted=10), clock=clock)
        s.freshness = {"by id": (0.01, 0.02, 3, 3), "consistent": (1.0, 2.0, 3, 3), "engagement": (2.0, 3.0, 3, 3),
                       "health": (4.0, 4.5, 5, 6)}  # fmt: skip
        return s

    first = first_boundary(WALL, steps=1)
    clocked = render("server", "POSTs", [step(plan_step(WALL, LEAD, LAG, None, first))], [], True, 1.0)
    assert "4,000/4,500 (5/6)" in clocked and "cohort_health row with at = H" in clocked
    assert "H = " in clocked
    unclocked = render("server", "simulator", [step(None)], [], True, 1.0)
    assert "4,000/4,500" not in unclocked and "(d): n/a: no event clock" in unclocked
