"""Pausing Python's garbage collector while a sink builds a batch's rows."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

# At most this often the objects set aside are collected once, all together (see
# collector_paused): a full collection. Cyclic garbage waits about that long.
SWEEP_INTERVAL_S = 60.0

_lock = threading.Lock()
_pauses = 0
_was_enabled = False
_setting_aside = False
_swept_at = time.monotonic()


def set_aside_after_pauses(enabled: bool = True) -> None:
    """Whether what each pause leaves alive is set aside (see :func:`collector_paused`).

    For a process whose other work makes few reference cycles: a sink process (its
    collections found ~5 cyclic objects per 1,000 statements). Not the gateway's process
    (chDB: it runs the sinks too): its requests' cycles, set aside with the rows, waited
    for the sweep, which then stalled the event loop for up to a second; end to end at
    1,500/s it accepted 1,226 and 1,256/s against 1,430 and 1,343 without (alternated runs).
    """
    global _setting_aside, _swept_at
    with _lock:
        _setting_aside = enabled
        _swept_at = time.monotonic()


@contextmanager
def collector_paused() -> Iterator[None]:
    """No collection while the block runs (in any thread); what it left alive set aside after it
    in a process that asked for it (:func:`set_aside_after_pauses`).

    For a burst that allocates acyclic objects that stay alive (a batch's rows): the
    collections the sink ran there walked them again and again (see benchmarks/bench_sinks).
    After the last overlapping pause they were still walked once, young, and again as they
    aged, until written: 6–11 µs of a statement's ~130 with one statement per Kafka message.
    So everything tracked is frozen then (``gc.freeze``: no collection looks at it again;
    reference counting still frees it). Cycles frozen with it are found by a sweep every
    :data:`SWEEP_INTERVAL_S` (one full collection). Safe from several threads at once.
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
                if _setting_aside:
                    _set_aside_survivors()
                if _was_enabled:
                    gc.enable()


def _set_aside_survivors() -> None:
    global _swept_at
    now = time.monotonic()
    if now - _swept_at >= SWEEP_INTERVAL_S:
        # By time, not by pauses: busy sinks pause hundreds of times a second.
        _swept_at = now
        gc.unfreeze()
        gc.collect()
    gc.freeze()
