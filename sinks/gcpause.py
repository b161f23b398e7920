"""Pausing Python's garbage collector while a sink builds a batch's rows."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_pauses = 0
_was_enabled = False


@contextmanager
def collector_paused() -> Iterator[None]:
    """No collection while the block runs (in any thread); the collector as it was after it.

    For a burst that allocates acyclic objects that stay alive (a batch's rows): the
    collections the sink ran there walked them again and again (see benchmarks/bench_sinks).
    Allocations still count, so the first one after the last overlapping pause collects as
    usual (learnpulse/collector.py sets how often). Safe from several threads at once.
    """
    global _pauses, _was_enabled
    with _lock:
        if _pauses == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _lock:
            _pauses -= 1
            if _pauses == 0 and _was_enabled:
                gc.enable()
