"""Simulated traffic through the learner and cohort stages in memory (no Faust, no Kafka).

The simulator's statements are published as the simulator command publishes them
(canonicalized, pseudonymized, grouped into envelopes), laid out in partitions by learner,
and read back in batches of a chosen size: the learner stage's records go to the cohort
stage (its feed) and to the void feed (read by the learner stage's next batch), as the
Faust agents route them. What comes out is the final figures as the sinks keep them: per
record key, the copy with the highest version (ClickHouse ``ReplacingMergeTree(version)``).
"""

from __future__ import annotations

import asyncio
import itertools
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from producers.publisher import StatementPublisher
from producers.simulator import SCALES, Simulation, SimulationConfig
from schemas.envelope import StatementEnvelope
from schemas.records import AlertRecord, CohortHealthRecord, EngagementRecord, MasteryRecord
from streams.config import StreamsConfig
from streams.health.stage import CohortStage, CohortTopics
from streams.learner.stage import LearnerStage, LearnerTopics
from streams.mastery.logic import load_model

from .fakes import Event, FakeSender, FakeTable, Message

SOURCE_PARTITIONS = 12
FEED_PARTITIONS = 6
LEARNER_TOPICS = LearnerTopics(
    statements="xapi.statements", void_feed="void-feed", engagement="engagement", mastery="mastery",
    cohort_feed="cohort-feed", deadletter="deadletter", source_partitions=SOURCE_PARTITIONS,
    feed_partitions=FEED_PARTITIONS,
)
COHORT_TOPICS = CohortTopics(feed="cohort-feed", cohort_health="cohort_health", alerts="alerts",
                             deadletter="deadletter", source_partitions=SOURCE_PARTITIONS)


class _Captured:
    """The publisher's producer: keeps the envelopes' bytes in publishing order."""

    def __init__(self) -> None:
        self.messages: list[tuple[bytes, bytes]] = []

    def send(self, envelope: StatementEnvelope) -> None:
        self.messages.append((envelope.key, envelope.encode()))

    def send_encoded(self, envelope: StatementEnvelope, value: bytes) -> None:
        self.messages.append((envelope.key, value))

    def flush(self) -> None:
        pass


def simulated_messages(count: int, per_envelope: int = 1, scale: str = "demo", seed: int = 7) -> list[Message]:
    """``count`` simulated statements as ``xapi.statements`` messages, partitioned by learner.

    Deterministic: a fixed pseudonym secret and acceptance time, and no linger (an envelope
    closes at ``per_envelope`` statements or at the end).
    """
    captured = _Captured()
    publisher = StatementPublisher(captured, b"s" * 32, max_per_envelope=per_envelope, linger_s=10**9,
                                   clock_ms=lambda: 1_767_225_600_000)
    sim = iter(Simulation(SimulationConfig(seed=seed, **SCALES[scale])))
    for item in itertools.islice(sim, count):
        publisher.publish(item.school, item.statement)
    publisher.batcher.flush()
    offsets = [0] * SOURCE_PARTITIONS
    out = []
    for key, value in captured.messages:
        p = zlib.crc32(key) % SOURCE_PARTITIONS
        out.append(Message(LEARNER_TOPICS.statements, p, offsets[p], key, value))
        offsets[p] += 1
    return out


@dataclass
class Figures:
    """Final figures per record key (highest version), and how many records were sent.

    The keys are the sorting keys of the sinks' tables (``schemas/clickhouse/migrations/0002_derived.py``).
    """

    engagement: dict[tuple, EngagementRecord]
    mastery: dict[tuple, MasteryRecord]
    cohort_health: dict[tuple, CohortHealthRecord]
    alerts: dict[tuple, AlertRecord]
    sent: int


def _keep_latest(kept: dict[tuple, Any], key: tuple, record: Any) -> None:
    old = kept.get(key)
    if old is None or record.version > old.version:
        kept[key] = record
    elif record.version == old.version and record != old:
        raise AssertionError(f"two records of {key} with version {record.version} differ: {old} {record}")


def _batches(messages: list[Message], size: int) -> Iterator[list[Message]]:
    for i in range(0, len(messages), size):
        yield messages[i:i + size]


def run_stages(messages: list[Message], batch_size: int, config: StreamsConfig | None = None) -> Figures:
    """Every message through the learner stage in batches of ``batch_size``, its feed through the cohort stage."""
    config = config or StreamsConfig()
    model = load_model(config.mastery_file, config.skill_map_file)
    sender, learner_table, cohort_table = FakeSender(), FakeTable(), FakeTable()
    learner = LearnerStage(learner_table, sender, LEARNER_TOPICS, config, model,
                           committed_offset=lambda _p: None,
                           cohort_partition_of=lambda key: zlib.crc32(key) % FEED_PARTITIONS)
    cohort = CohortStage(cohort_table, sender, COHORT_TOPICS, config)
    feed_offsets = itertools.count()
    void_offsets = itertools.count()

    async def drive() -> None:
        voids: list[Event] = []
        for chunk in _batches(messages, batch_size):
            start = len(sender.sent)
            await learner.process_batch(voids + [Event(m) for m in chunk])
            voids, feed = [], []
            for topic, key, value, partition in sender.sent[start:]:
                if topic == LEARNER_TOPICS.cohort_feed:
                    feed.append(Event(Message(topic, partition, next(feed_offsets), key, value)))
                elif topic == LEARNER_TOPICS.void_feed:
                    voids.append(Event(Message(topic, partition, next(void_offsets), key, value)))
            if feed:
                await cohort.process_batch(feed)

    asyncio.run(drive())
    if sender.dead:
        raise AssertionError(f"dead letters: {sender.dead[:3]}")
    figures = Figures({}, {}, {}, {}, len(sender.sent))
    for topic, _key, value, _partition in sender.sent:
        if topic == LEARNER_TOPICS.engagement:
            r = EngagementRecord.decode(value)
            _keep_latest(figures.engagement, (r.school, r.course, r.cohort, r.grain, r.period_start_ms, r.learner), r)
        elif topic == LEARNER_TOPICS.mastery:
            m = MasteryRecord.decode(value)
            _keep_latest(figures.mastery, (m.school, m.course, m.skill, m.learner), m)
        elif topic == COHORT_TOPICS.cohort_health:
            h = CohortHealthRecord.decode(value)
            _keep_latest(figures.cohort_health, (h.school, h.course, h.cohort, h.at_ms), h)
        elif topic == COHORT_TOPICS.alerts:
            a = AlertRecord.decode(value)
            _keep_latest(figures.alerts, (a.school, a.course, a.cohort, a.alert_id, a.state), a)
    return figures
