"""The worker's batch timing (issue 16 part 3: a commit must never stall the worker for seconds):
each batch's duration and the pause before it reach the agent's histograms."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY

from streams.faustutil import BatchClock


def bucket(name: str, agent: str, le: str) -> float:
    return REGISTRY.get_sample_value(f"{name}_bucket", {"agent": agent, "le": le}) or 0.0


def count(name: str, agent: str) -> float:
    return REGISTRY.get_sample_value(f"{name}_count", {"agent": agent}) or 0.0


def test_a_long_pause_between_two_batches_and_their_durations_are_observed():
    # The clock's readings: each batch takes 0.3 s; 3 s pass between them (e.g. a commit held the agent up).
    readings = iter([100.0, 100.3, 103.3, 103.6])
    timing = BatchClock("test-clock-pause", lambda: next(readings))
    seen = []

    async def process(events):
        seen.append(events)

    async def run() -> None:
        await timing.run(process, [1])
        await timing.run(process, [2])

    asyncio.run(run())
    assert seen == [[1], [2]]
    busy, pause = "learnpulse_stream_batch_seconds", "learnpulse_stream_batch_pause_seconds"
    assert count(busy, "test-clock-pause") == 2
    assert bucket(busy, "test-clock-pause", "0.25") == 0 and bucket(busy, "test-clock-pause", "0.5") == 2
    # No pause before the first batch (nothing to measure from); the second one's is 3 s.
    assert count(pause, "test-clock-pause") == 1
    assert bucket(pause, "test-clock-pause", "2.0") == 0 and bucket(pause, "test-clock-pause", "5.0") == 1


def test_a_failing_batch_is_timed_and_its_error_goes_on():
    readings = iter([100.0, 101.5])  # the batch takes 1.5 s
    timing = BatchClock("test-clock-fails", lambda: next(readings))

    async def fails(events):
        raise RuntimeError("broken batch")

    with pytest.raises(RuntimeError, match="broken batch"):
        asyncio.run(timing.run(fails, []))
    assert count("learnpulse_stream_batch_seconds", "test-clock-fails") == 1
    assert bucket("learnpulse_stream_batch_seconds", "test-clock-fails", "1.0") == 0
    assert timing.ended == 101.5
