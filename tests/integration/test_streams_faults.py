"""Crash safety and determinism of the stream worker, on simulator traffic and the real broker.

Each test processes the same ``xapi.statements`` topic twice — once by one clean worker
(the reference) and once under the condition tested — and compares the final derived
record of every key (engagement, mastery, cohort health, alerts), versions included.
Derived topics are shared, so the second run's records are read from the offsets the
first run ended at.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable

import pytest

from learnpulse.pipeline import run_simulator
from producers.simulator import SimulationConfig
from schemas.topics import Topic
from tests.integration.streams_support import (
    DECODERS,
    DerivedReader,
    collect,
    consistent_versions,
    end_offsets,
    same_records,
    stream_settings,
    worker,
)

TOPICS = list(DECODERS)
# Small world, a few weeks of event time: engagement, mastery, and cohorts that go quiet.
SIM = SimulationConfig(seed=11, schools=2, courses_per_school=2, learners_per_course=12, days=28,
                       disengaging_share=0.5, sessions_per_day=1.5)
COUNT = 12_000


def _settings(tmp_path, kafka):
    # Cohort figures are exact however the statements were batched when the watermark lag
    # exceeds the event-time disorder within a partition (see streams.learner.logic). The
    # simulator run unpaced keeps a sparse learner's envelope open for days of event time
    # (its linger is wall-clock): measured up to 5.5 days here, hence 8.
    return stream_settings(tmp_path, kafka, watermark_lag_min=8 * 24 * 60)


def _collect(kafka, start, workers: Callable[[], list], app_id: str) -> DerivedReader:
    """Derived records once the group caught up, with engagement and cohort figures among them."""
    return collect(kafka, app_id, workers, start, TOPICS,
                   ready=lambda r: bool(r.latest[Topic.ENGAGEMENT] and r.latest[Topic.COHORT_HEALTH]))


def _reference(kafka, settings, spawn) -> tuple[DerivedReader, dict]:
    app_id = f"ref-{uuid.uuid4().hex[:6]}"
    ref_worker = worker(spawn, settings, app_id, "ref")
    ref = _collect(kafka, None, lambda: [ref_worker], app_id)
    ref_worker.stop()
    return ref, end_offsets(kafka, TOPICS)


def _same(ref: DerivedReader, other: DerivedReader, what: str) -> None:
    same_records(ref, other, what, TOPICS)
    for topic in TOPICS:  # and across the two runs: one (key, version), one set of figures
        consistent_versions(ref.all[topic] + other.all[topic], topic)
    assert ref.latest[Topic.MASTERY], "the simulation has scored attempts"


@pytest.mark.kafka
@pytest.mark.slow
def test_streams_replay_with_fresh_app_id_and_at_other_speed_gives_identical_records(tmp_path, kafka, spawn):
    settings = _settings(tmp_path, kafka)
    assert run_simulator(settings, SIM, count=COUNT, rate=None) == COUNT
    ref, offsets = _reference(kafka, settings, spawn)

    # The same topic again, by a fresh app id (empty tables, offsets from 0).
    app_id = f"again-{uuid.uuid4().hex[:6]}"
    again_worker = worker(spawn, settings, app_id, "again")
    again = _collect(kafka, offsets, lambda: [again_worker], app_id)
    again_worker.stop()
    _same(ref, again, "fresh app id")

    # The same simulation produced paced (about 100x slower than above: other envelopes,
    # other batches) into a second pipeline gives the same figures.
    slow_kafka = kafka.model_copy(update={"topic_prefix": kafka.topic_prefix + "slow."})
    from learnpulse.topics import ensure_topics

    ensure_topics(slow_kafka.bootstrap_servers, slow_kafka.topic_prefix)
    slow_settings = _settings(tmp_path / "slow", slow_kafka)
    assert run_simulator(slow_settings, SIM, count=COUNT, rate=2_000) == COUNT
    app_id = f"slow-{uuid.uuid4().hex[:6]}"
    slow_worker = worker(spawn, slow_settings, app_id, "slow")
    slow = _collect(slow_kafka, None, lambda: [slow_worker], app_id)
    _same(ref, slow, "paced production")


@pytest.mark.kafka
@pytest.mark.slow
def test_streams_sigkill_and_restart_gives_the_same_records(tmp_path, kafka, spawn):
    settings = _settings(tmp_path, kafka)
    assert run_simulator(settings, SIM, count=COUNT, rate=None) == COUNT
    ref, offsets = _reference(kafka, settings, spawn)

    app_id = f"crash-{uuid.uuid4().hex[:6]}"
    current = [worker(spawn, settings, app_id, "crash")]
    watcher = DerivedReader(kafka, [Topic.ENGAGEMENT], offsets)
    try:
        for kill in range(2):
            # Kill as soon as this incarnation has produced something: mid-stream.
            deadline = time.monotonic() + 120
            seen = len(watcher.all[Topic.ENGAGEMENT])
            while len(watcher.all[Topic.ENGAGEMENT]) <= seen + 50 and time.monotonic() < deadline:
                watcher.poll()
            os.kill(current[0].popen.pid, signal.SIGKILL)
            current[0].popen.wait(10)
            current[0] = worker(spawn, settings, app_id, "crash")  # same state directory
    finally:
        watcher.close()
    crashed = _collect(kafka, offsets, lambda: current, app_id)
    _same(ref, crashed, "SIGKILL and restart")


@pytest.mark.kafka
@pytest.mark.slow
def test_streams_two_workers_give_the_same_records_as_one(tmp_path, kafka, spawn):
    settings = _settings(tmp_path, kafka)
    assert run_simulator(settings, SIM, count=COUNT, rate=None) == COUNT
    ref, offsets = _reference(kafka, settings, spawn)

    app_id = f"two-{uuid.uuid4().hex[:6]}"
    pair = [worker(spawn, settings, app_id, "one"), worker(spawn, settings, app_id, "two")]
    both = _collect(kafka, offsets, lambda: pair, app_id)
    _same(ref, both, "two workers")
