"""The collector tuning our long-running processes apply once started."""

from __future__ import annotations

import gc

from learnpulse.collector import GATEWAY_YOUNG_OBJECTS, collect_young_objects_rarely


def test_young_objects_are_collected_rarely_and_the_start_up_heap_is_frozen():
    before = gc.get_threshold()
    try:
        gc.unfreeze()
        collect_young_objects_rarely()
        assert gc.get_threshold() == (50_000, 20, 20)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_the_gateway_collects_young_objects_more_rarely_still():
    before = gc.get_threshold()
    try:
        gc.unfreeze()
        collect_young_objects_rarely(GATEWAY_YOUNG_OBJECTS)
        assert gc.get_threshold() == (GATEWAY_YOUNG_OBJECTS, 20, 20)
        assert GATEWAY_YOUNG_OBJECTS > 50_000
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
