"""Each statement id counts once, through the real worker and broker.

The same simulated statements go to two pipelines (two topic prefixes on one broker):
once, and twice — every envelope as sent, some re-sent right away in the same envelope
(a bridge re-sending a page, a replayed chunk), some re-sent right away one statement per
envelope, and at the end every statement again, regrouped into other envelopes (a
simulator restarted with the same seed, an export replayed by an operator). The final
derived record of every key — engagement, mastery, cohort health, alerts — must be the
same in both, versions included.
"""

from __future__ import annotations

import random
import time
import uuid
from collections import defaultdict

import pytest
from kafka import KafkaProducer

from learnpulse.pipeline import run_simulator
from learnpulse.topics import ensure_topics
from producers.simulator import SimulationConfig
from schemas.envelope import StatementEntry, StatementEnvelope
from schemas.topics import Topic
from tests.integration.streams_support import (
    assigned_consumer,
    collect,
    end_offsets,
    metric,
    same_records,
    stream_settings,
    worker,
)

SIM = SimulationConfig(seed=13, schools=2, courses_per_school=2, learners_per_course=10, days=21,
                       disengaging_share=0.5, sessions_per_day=1.5)
COUNT = 8_000


def _settings(tmp_path, kafka):
    # As in test_streams_faults: cohort figures are batching-independent when the
    # watermark lag exceeds the event-time span of the simulator's envelopes.
    return stream_settings(tmp_path, kafka, watermark_lag_min=8 * 24 * 60)


def _read_statements(kafka) -> dict[int, list[tuple[bytes, bytes]]]:
    """Every record of the topic, read up to its end offsets (not until a pause: on a loaded
    machine the first fetch alone can outlast the consumer's idle timeout)."""
    ends = end_offsets(kafka, [Topic.STATEMENTS])
    consumer = assigned_consumer(kafka, [Topic.STATEMENTS])
    by_partition: dict[int, list[tuple[bytes, bytes]]] = defaultdict(list)
    deadline = time.monotonic() + 180
    try:
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            if time.monotonic() > deadline:
                pytest.fail(f"xapi.statements not read to its end in 180 s: {ends}")
            for tp, messages in consumer.poll(timeout_ms=500).items():
                by_partition[tp.partition].extend((m.key, m.value) for m in messages)
    finally:
        consumer.close()
    return by_partition


def _send_twice(kafka, by_partition, rng: random.Random) -> tuple[int, int]:
    """Returns (statements sent, copies among them)."""
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all", linger_ms=5)
    topic = Topic.STATEMENTS.physical(kafka.topic_prefix)
    sent = copies = 0
    later: dict[str, list] = defaultdict(list)  # learner → [(school, course, cohort, statement)]
    for messages in by_partition.values():
        for key, value in messages:
            env = StatementEnvelope.decode(value)
            producer.send(topic, key=key, value=value)
            sent += len(env.entries)
            later[env.learner].extend((env.school, e.course, e.cohort, e.statement) for e in env.entries)
            roll = rng.random()
            if roll < 0.15:  # the same envelope again, at a new offset
                producer.send(topic, key=key, value=value)
                copies += len(env.entries)
            elif roll < 0.3:  # the same statements again, one per envelope
                for e in env.entries:
                    single = StatementEnvelope(env.school, env.learner, env.received_ms, (e,))
                    producer.send(topic, key=key, value=single.encode())
                    copies += 1
    for learner, items in later.items():  # everything again, seven per envelope
        for i in range(0, len(items), 7):
            chunk = items[i:i + 7]
            env = StatementEnvelope(chunk[0][0], learner, 0, tuple(StatementEntry(c, k, s) for _sc, c, k, s in chunk))
            producer.send(topic, key=learner.encode(), value=env.encode())
            copies += len(chunk)
    producer.flush(60)
    producer.close(10)
    return sent + copies, copies


@pytest.mark.kafka
@pytest.mark.slow
def test_streams_statements_sent_twice_give_the_records_of_sending_once(tmp_path, kafka, spawn):
    once_settings = _settings(tmp_path / "once", kafka)
    assert run_simulator(once_settings, SIM, count=COUNT, rate=None) == COUNT

    twice_kafka = kafka.model_copy(update={"topic_prefix": kafka.topic_prefix + "twice."})
    ensure_topics(twice_kafka.bootstrap_servers, twice_kafka.topic_prefix)
    twice_settings = _settings(tmp_path / "twice", twice_kafka)
    total, copies = _send_twice(twice_kafka, _read_statements(kafka), random.Random(4))
    assert copies > COUNT

    once_id, twice_id = f"once-{uuid.uuid4().hex[:6]}", f"twice-{uuid.uuid4().hex[:6]}"
    once_worker = worker(spawn, once_settings, once_id, "once")
    twice_worker = worker(spawn, twice_settings, twice_id, "twice")
    once = collect(kafka, once_id, lambda: [once_worker])
    twice = collect(twice_kafka, twice_id, lambda: [twice_worker])

    assert once.latest[Topic.MASTERY] and once.latest[Topic.COHORT_HEALTH], "the simulation exercises every figure"
    same_records(once, twice, "statements sent twice")
    port = twice_worker.metrics_port
    assert metric(port, 'learnpulse_stream_statements_total{agent="learner"}') == total
    # Copies inside the engagement horizon are recognised by id; later ones are late (the
    # mastery history recognises those that are observations).
    skipped = metric(port, 'learnpulse_stream_duplicate_statements_total{agent="learner"}')
    late = metric(port, 'learnpulse_stream_late_statements_total{agent="learner"}')
    assert skipped > 0 and skipped + late >= copies
