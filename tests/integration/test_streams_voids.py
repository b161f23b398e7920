"""Voiding by another actor, end to end: a teacher's void undoes a learner's observation.

The voiding statement is keyed by the teacher, so it lands in another partition than the
learner's state; the learner stage looks the target up across partitions (the void feed,
see streams.learner.stage). Both orders are checked — void after the answer, and void
before it — and both give the mastery record of a learner who never gave that answer.
"""

from __future__ import annotations

import uuid

import pytest
from kafka import KafkaAdminClient, TopicPartition
from kafka.errors import KafkaError

from schemas.topics import Topic
from tests.conftest import wait_for
from tests.integration.streams_support import (
    MIN,
    T0,
    DerivedReader,
    EnvelopeProducer,
    fail_if_exited,
    learner_in,
    partition_for,
    statement,
    stream_settings,
    worker,
)

SCHOOL = "school-v"
COURSE = "https://c.example/course-v"


def _committed(kafka, group: str, tp: TopicPartition) -> int:
    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    try:
        offsets = admin.list_group_offsets({group: None}).get(group, {})
    except KafkaError:
        return -1
    finally:
        admin.close()
    meta = offsets.get(tp)
    return -1 if meta is None else meta.offset


def _bkt(p, ok, learn=0.15, guess=0.2, slip=0.1):
    post = p * (1 - slip) / (p * (1 - slip) + (1 - p) * guess) if ok else p * slip / (p * slip + (1 - p) * (1 - guess))
    return post + (1 - post) * learn


@pytest.mark.kafka
def test_streams_void_by_another_actor_undoes_the_learners_observation_in_either_order(tmp_path, kafka, spawn):
    settings = stream_settings(tmp_path, kafka)
    teacher = learner_in(0)
    late_void, early_void, control = learner_in(5), learner_in(9), learner_in(5, {learner_in(5)})
    assert len({partition_for(k.encode()) for k in (teacher, late_void, early_void)}) == 3
    wrong_1, wrong_2 = str(uuid.uuid4()), str(uuid.uuid4())
    app_id = f"voids-{uuid.uuid4().hex[:6]}"
    proc = worker(spawn, settings, app_id, "w")
    prod = EnvelopeProducer(kafka)
    reader = DerivedReader(kafka, [Topic.MASTERY])

    alive = fail_if_exited(lambda: [proc])

    try:
        # Void first: the teacher voids an answer the learner's device has not sent yet; wait
        # until the worker has taken the void to the learner's partition.
        prod.send(SCHOOL, teacher, "c1", COURSE, [statement(teacher, T0, voids=wrong_2)])
        prod.producer.flush()
        feed = TopicPartition(f"{app_id}-void-feed", partition_for(early_void.encode()))

        def void_taken() -> bool:
            alive()
            return _committed(kafka, app_id, feed) >= 1

        wait_for(void_taken, 120, "the void reaching the learner's partition")
        for learner, wrong in ((late_void, wrong_1), (early_void, wrong_2), (control, None)):
            prod.send(SCHOOL, learner, "c1", COURSE, [
                statement(learner, T0 + MIN, verb="answered", skills=["skill-v"], success=True),
                statement(learner, T0 + 2 * MIN, verb="answered", skills=["skill-v"], success=False, sid=wrong),
            ])
        prod.producer.flush()
        reader.settle(
            lambda r: len(r.latest[Topic.MASTERY]) == 3 and r.latest[Topic.MASTERY][(late_void, "skill-v")].observations == 2,
            90, check=alive, diagnose=lambda: proc.tail(60),
        )
        # Void after: once the answers are in (and counted), the teacher voids one of them.
        prod.send(SCHOOL, teacher, "c1", COURSE, [statement(teacher, T0 + 10 * MIN, voids=wrong_1)])
        prod.close()
        reader.settle(
            lambda r: r.latest[Topic.MASTERY][(late_void, "skill-v")].observations == 1, 90, check=alive,
            diagnose=lambda: proc.tail(60),
        )
    finally:
        reader.close()

    latest = reader.latest[Topic.MASTERY]
    counted = [r for r in reader.all[Topic.MASTERY] if r.learner == late_void]
    assert [(r.observations, r.version) for r in counted][-1] == (1, 3)
    assert all(r.observations == 1 for r in reader.all[Topic.MASTERY] if r.learner == early_void)
    for learner in (late_void, early_void):
        r = latest[(learner, "skill-v")]
        # observed and undone, or dropped because voided first: the same record
        assert (r.observations, r.correct, r.event_ms, r.version) == (1, 1, T0 + MIN, 3)
        assert r.p_mastery == pytest.approx(_bkt(0.2, True), abs=1e-9)
    c = latest[(control, "skill-v")]
    assert (c.observations, c.correct) == (2, 1)
    assert c.p_mastery == pytest.approx(_bkt(_bkt(0.2, True), False), abs=1e-9)
    assert (teacher, "skill-v") not in latest
