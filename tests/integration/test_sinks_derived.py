"""Derived-record sinks on the real broker and both engines: a replayed or late record never adds.

Every record type is published with several versions per key, shuffled (older versions
after newer ones) and partly twice; the tables must hold exactly one row per key with the
highest version's values.
"""

from __future__ import annotations

import random

import pytest

from schemas.records import AlertRecord, CohortHealthRecord, EngagementRecord, MasteryRecord
from schemas.topics import Topic
from tests.integration.test_sinks_statements import Publisher, running_sinks, scalar, wait_committed

HOUR = 3_600_000
DAY = 24 * HOUR
T0 = 1_767_225_600_000


def _publish(settings, topic: Topic, records, rng: random.Random) -> None:
    records = list(records)
    replays = rng.sample(records, len(records) // 3)
    todo = records + replays
    rng.shuffle(todo)
    pub = Publisher(settings.kafka, topic)
    for r in todo:
        key = getattr(r, "learner", None) or f"{r.school}|{r.course}|{r.cohort}"
        pub.send(key.encode(), r.encode())
    pub.flush()
    pub.close()


@pytest.mark.kafka
def test_sinks_derived_records_replace_by_version_never_add(settings):
    rng = random.Random(5)
    learners = [f"{i:064x}" for i in range(1, 9)]
    engagement, mastery, health, alerts = [], [], [], []
    for li, learner in enumerate(learners):
        for day in range(3):
            for v in range(1, 5):  # four updates of the same day, growing
                engagement.append(
                    EngagementRecord(
                        "s-1",
                        "c-1",
                        f"k-{li % 2}",
                        learner,
                        "day",
                        T0 + day * DAY,
                        v * 3,
                        v,
                        v * 60_000,
                        T0 + day * DAY + v * 1000,
                        v,
                    )
                )
        for skill in ("sk-a", "sk-b"):
            for v in range(1, 6):
                mastery.append(
                    MasteryRecord("s-1", "c-1", learner, skill, round(0.1 * v, 2), v, v - 1, T0 + v * HOUR, v)
                )
    for cohort in ("k-0", "k-1"):
        for step in range(4):
            health.append(
                CohortHealthRecord("s-1", "c-1", cohort, T0 + step * DAY, 4, step, step / 4, 600_000, step + 1)
            )
        alert_id = f"alert-{cohort}"
        fired = AlertRecord(alert_id, "s-1", "c-1", cohort, "fired", T0 + 2 * DAY, T0 + 2 * DAY, 4, 2, 0.5, 0.4,
                            learners[:2], 1)  # fmt: skip
        resolved = AlertRecord(alert_id, "s-1", "c-1", cohort, "resolved", T0 + 3 * DAY, T0 + 2 * DAY, 4, 1, 0.25, 0.4,
                               learners[:1], 2)  # fmt: skip
        alerts.extend([fired, resolved])
    _publish(settings, Topic.ENGAGEMENT, engagement, rng)
    _publish(settings, Topic.MASTERY, mastery, rng)
    _publish(settings, Topic.COHORT_HEALTH, health, rng)
    _publish(settings, Topic.ALERTS, alerts, rng)
    # A record outside the contract is dead-lettered, not written, and does not stop the sink.
    pub = Publisher(settings.kafka, Topic.ENGAGEMENT)
    pub.send(b"x", EngagementRecord("s-1", "c-1", "k", learners[0], "week", T0, 1, 1, 1, T0, 99).encode())
    pub.flush()
    pub.close()

    names = ["engagement", "mastery", "cohort_health", "alerts"]
    topics = [Topic.ENGAGEMENT, Topic.MASTERY, Topic.COHORT_HEALTH, Topic.ALERTS]
    with running_sinks(settings, names) as (ch, sinks):
        for name, topic in zip(names, topics, strict=True):
            wait_committed(settings, sinks, name, topic=topic)

        assert scalar(ch, "SELECT count() FROM {db}.engagement FINAL") == len(learners) * 3
        assert ch.query(
            "SELECT min(version), max(version), sum(statements), sum(active_ms) FROM {db}.engagement FINAL"
        ) == [(4, 4, 12 * 24, 240_000 * 24)]
        assert scalar(ch, "SELECT count() FROM {db}.engagement FINAL WHERE grain = 'week'") == 0
        assert scalar(ch, "SELECT count() FROM {db}.mastery FINAL") == len(learners) * 2
        assert ch.query("SELECT min(p_mastery), max(p_mastery), min(observations) FROM {db}.mastery FINAL") == [
            (0.5, 0.5, 5)
        ]
        assert scalar(ch, "SELECT count() FROM {db}.cohort_health FINAL") == 8
        latest = ch.query(
            "SELECT cohort, argMax(disengaged, (at, version)) FROM {db}.cohort_health GROUP BY cohort ORDER BY cohort"
        )
        assert [(str(c), int(d)) for c, d in latest] == [("k-0", 3), ("k-1", 3)]
        states = ch.query(
            "SELECT alert_id, argMax(state, version), count() FROM {db}.alerts FINAL GROUP BY alert_id ORDER BY alert_id"
        )
        assert [(a, s, int(n)) for a, s, n in states] == [("alert-k-0", "resolved", 2), ("alert-k-1", "resolved", 2)]
