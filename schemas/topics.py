"""Every logical Kafka topic, its key, partitioning and configuration.

Physical names are ``<prefix><logical name>``; the prefix comes from settings so that
tests and several pipelines can share one broker.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


@dataclass(frozen=True)
class TopicSpec:
    """How a topic is created. ``key`` documents what the message key is."""

    partitions: int
    key: str
    configs: dict[str, str] = field(default_factory=dict)


# Statements are kept 7 days: enough to rebuild every derived table and ClickHouse
# after an outage; the durable archive is the ClickHouse raw table.
_WEEK_MS = str(7 * 24 * 3600 * 1000)


class Topic(enum.Enum):
    """Logical topics. The value is the logical name."""

    STATEMENTS = "xapi.statements"
    DEADLETTER = "xapi.deadletter"
    QUARANTINE = "xapi.quarantine"
    ENGAGEMENT = "learnpulse.engagement"
    MASTERY = "learnpulse.mastery"
    COHORT_HEALTH = "learnpulse.cohort_health"
    ALERTS = "learnpulse.alerts"

    def physical(self, prefix: str = "") -> str:
        return f"{prefix}{self.value}"

    @property
    def spec(self) -> TopicSpec:
        return TOPIC_SPECS[self]


# The largest records the stream worker writes: an alert naming every disengaged learner
# and a cohort's member list (~67 bytes a learner each; before 2026-12-06 a cohort's whole
# state, ~165 bytes a learner). Kafka's default limit (1 MB) is ~15,000 learners in one
# cohort: past it the producer refused the record and the worker crashed on it at every
# restart. 16 MiB is ~250,000 learners in one cohort.
WORKER_RECORD_MAX_BYTES = 16 * 1024 * 1024
# A topic's max.message.bytes bounds a whole record batch: room for its framing.
_FRAMING_BYTES = 64 * 1024
WORKER_TOPIC_MAX_MESSAGE_BYTES = str(WORKER_RECORD_MAX_BYTES + _FRAMING_BYTES)
# A dead letter is any topic's record (the largest: a worker topic's) with its key and
# headers (rule, reason, source): a sink or the notifier that cannot dead-letter a record
# stops on it, at every restart.
DEADLETTER_MAX_MESSAGE_BYTES = str(int(WORKER_TOPIC_MAX_MESSAGE_BYTES) + _FRAMING_BYTES)

# Keying: everything about one learner stays in one partition, in order, so the stream
# processor can keep per-learner state locally (co-partitioned changelogs) and a sink
# sees a learner's records in production order. 12 partitions = 2 cores today, room for
# 12 workers/sink consumers before repartitioning.
TOPIC_SPECS: dict[Topic, TopicSpec] = {
    Topic.STATEMENTS: TopicSpec(
        12,
        "learner pseudonym (hex)",
        {"retention.ms": _WEEK_MS, "compression.type": "producer", "max.message.bytes": "4194304"},
    ),
    Topic.DEADLETTER: TopicSpec(
        1, "original key", {"retention.ms": str(30 * 24 * 3600 * 1000), "max.message.bytes": DEADLETTER_MAX_MESSAGE_BYTES}
    ),
    # Statements refused at the edge, with their reasons (schemas/quarantine.py): kept as
    # long as the dead letters; the ClickHouse table holds them for re-drive after that.
    Topic.QUARANTINE: TopicSpec(
        4, "school", {"retention.ms": str(30 * 24 * 3600 * 1000), "max.message.bytes": "1048576"}
    ),
    Topic.ENGAGEMENT: TopicSpec(12, "learner pseudonym", {"retention.ms": _WEEK_MS}),
    Topic.MASTERY: TopicSpec(12, "learner pseudonym", {"retention.ms": _WEEK_MS}),
    Topic.COHORT_HEALTH: TopicSpec(4, "school|course|cohort", {"retention.ms": _WEEK_MS}),
    Topic.ALERTS: TopicSpec(
        1,
        "school|course|cohort",
        {"retention.ms": str(90 * 24 * 3600 * 1000), "max.message.bytes": WORKER_TOPIC_MAX_MESSAGE_BYTES},
    ),
}
