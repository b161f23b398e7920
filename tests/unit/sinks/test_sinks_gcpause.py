"""The sink's collector pause (sinks/gcpause.py)."""

from __future__ import annotations

import gc

import pytest

from sinks.gcpause import collector_paused, set_aside_after_pauses


def test_the_collector_is_paused_while_any_pause_runs_and_restored_after_the_last():
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
        with collector_paused():  # another thread's overlapping pause
            pass
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_disabled_collector_stays_disabled_after_a_pause():
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


class _Row:
    """A tracked object whose collection can be observed (a weak reference to it dies)."""


@pytest.fixture
def setting_aside():
    set_aside_after_pauses(True)
    yield
    set_aside_after_pauses(False)


def test_a_pause_sets_nothing_aside_unless_the_process_asked():
    # The gateway's process runs sinks too (chDB): its requests' cycles must stay collectable.
    with collector_paused():
        rows = [(_Row(), [i]) for i in range(1_000)]
    tracked = {id(o) for generation in range(3) for o in gc.get_objects(generation=generation)}
    assert all(id(row) in tracked for row in rows)


def test_what_a_pause_built_is_set_aside_from_the_collections_that_follow(setting_aside):
    # A batch's rows live until written; every young collection walked all of them
    # (6–11 µs a statement in benchmarks/bench_sinks --per-envelope 1).
    with collector_paused():
        rows = [(_Row(), [i]) for i in range(1_000)]
    young = {id(o) for generation in range(3) for o in gc.get_objects(generation=generation)}
    assert not any(id(row) in young for row in rows)
    gc.collect()  # and they are still alive, of course
    assert all(isinstance(row[0], _Row) for row in rows)


def test_cycles_set_aside_by_a_pause_are_collected_at_a_sweep(setting_aside, monkeypatch):
    import weakref

    from sinks import gcpause

    with collector_paused():
        cycle = [_Row()]
        cycle.append(cycle)
        watch = weakref.ref(cycle[0])
        del cycle
    gc.collect()
    assert watch() is not None  # set aside: no collection sees it before a sweep
    monkeypatch.setattr(gcpause, "SWEEP_INTERVAL_S", 0.0)  # the interval has passed
    with collector_paused():
        pass
    assert watch() is None
