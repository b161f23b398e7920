"""The sink's collector pause (sinks/gcpause.py)."""

from __future__ import annotations

import gc

from sinks.gcpause import collector_paused


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
