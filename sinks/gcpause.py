"""Pausing Python's garbage collector while a sink builds a batch's rows."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

# At most this often the objects set aside are collected once, all together (see
# collector_paused): a full collection, which in the gateway's process (chDB: it runs the
# sinks) also walks the requests in flight. Cyclic garbage waits about that long.
SWEEP_INTERVAL_S = 60.0

_lock = threading.Lock()
_pauses = 0
_was_enabled = False
_swept_at = time.monotonic()


@contextmanager
def collector_paused() -> Iterator[None]:
    """No collection while the block runs (in any thread); what it left alive set aside after it.

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
                _set_aside_survivors()
                if _was_enabled:
                    gc.enable()


def _set_aside_survivors() -> None:
    global _swept_at
    now = time.monotonic()
    if now - _swept_at >= SWEEP_INTERVAL_S:
        # Counted by pauses first (every 1,000): six sinks busy in the gateway's process
        # pause hundreds of times a second, and its full collections every 2–4 s took 2.6 %
        # of its time (py-spy, bench_end_to_end at 1,500/s).
        _swept_at = now
        gc.unfreeze()
        gc.collect()
    gc.freeze()
