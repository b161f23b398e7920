"""Pausing Python's garbage collector while a sink builds a batch's rows."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# Every this many pauses the objects set aside are collected once, all together (see
# collector_paused). Cyclic garbage waits at most that long; a sink pauses once per poll.
SWEEP_EVERY = 1_000

_lock = threading.Lock()
_pauses = 0
_was_enabled = False
_set_asides = 0


@contextmanager
def collector_paused() -> Iterator[None]:
    """No collection while the block runs (in any thread); what it left alive set aside after it.

    For a burst that allocates acyclic objects that stay alive (a batch's rows): the
    collections the sink ran there walked them again and again (see benchmarks/bench_sinks).
    After the last overlapping pause they were still walked once, young, and again as they
    aged, until written: 6–11 µs of a statement's ~130 with one statement per Kafka message.
    So everything tracked is frozen then (``gc.freeze``: no collection looks at it again;
    reference counting still frees it). Cycles frozen with it are found by a sweep every
    :data:`SWEEP_EVERY` pauses (one full collection). Safe from several threads at once.
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
            if _pauses == 0:
                _set_aside_survivors()
                if _was_enabled:
                    gc.enable()


def _set_aside_survivors() -> None:
    global _set_asides
    _set_asides += 1
    if _set_asides % SWEEP_EVERY == 0:
        gc.unfreeze()
        gc.collect()
    gc.freeze()
