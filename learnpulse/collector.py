"""Python's garbage collector tuned for processes that handle records in batches."""

from __future__ import annotations

import gc


# The gateway's young-generation threshold (see collect_young_objects_rarely). Its 1,000
# requests in flight keep ~125k objects alive (coroutines, futures, aiohttp's request objects),
# and at 50k the young collections that came walked tens of thousands of them each: 0.35 s of
# the event loop's CPU in a bench_gateway --browser run (6%, measured with gc.callbacks),
# 0.015 s at 500k. Almost nothing the gateway frees is cyclic (~1,200 objects a run).
GATEWAY_YOUNG_OBJECTS = 500_000


def collect_young_objects_rarely(young: int = 50_000) -> None:
    """Collect young objects every ``young`` net allocations (not 700) and keep today's heap out of it.

    Our long-running processes decode and build many short-lived, acyclic objects per
    request or batch (parsed statements, rows). With the default thresholds the collector
    ran every ~700 allocations and walked the long-lived heap (Kafka clients, tables,
    caches) again and again: measured ~30% of the gateway's CPU per statement and ~45% of
    the sink's row building. Call once start-up is done: everything built so far is frozen
    (never scanned again).
    """
    gc.set_threshold(young, 20, 20)
    gc.freeze()
