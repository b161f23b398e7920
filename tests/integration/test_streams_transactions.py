"""The worker reads committed records only: an aborted transaction changes no figure.

The gateway writes each request's envelopes in a Kafka transaction and answers 503 when
it aborts. Here a transactional kafka-python producer (as the gateway's) commits some
envelopes and aborts others; every derived record must come from the committed ones.
"""

from __future__ import annotations

import json
import uuid

import pytest
from kafka import KafkaProducer

from schemas.envelope import StatementEntry, StatementEnvelope
from schemas.topics import Topic
from tests.integration.streams_support import (
    DAY,
    HOUR,
    MIN,
    T0,
    DerivedReader,
    EnvelopeProducer,
    describe_lag,
    fail_if_exited,
    group_lag,
    learner_in,
    partition_for,
    statement,
    stream_settings,
    worker,
)
from tests.conftest import wait_for

SCHOOL = "school-t"
COURSE = "https://c.example/course-t"


def _envelope(learner: str, *statements) -> bytes:
    return StatementEnvelope(SCHOOL, learner, T0, tuple(StatementEntry(COURSE, "c1", s) for s in statements)).encode()


@pytest.mark.kafka
def test_streams_aborted_transaction_changes_no_figure_and_a_committed_one_does(tmp_path, kafka, spawn):
    thresholds = tmp_path / "thresholds.json"
    thresholds.write_text(json.dumps({"defaults": {"min_cohort_size": 2, "low_active_fraction": 0.0}}))
    settings = stream_settings(tmp_path, kafka, thresholds_file=thresholds)
    a = learner_in(3)
    b = learner_in(7)
    assert partition_for(a.encode()) != partition_for(b.encode())
    topic = Topic.STATEMENTS.physical(kafka.topic_prefix)
    tx = KafkaProducer(
        bootstrap_servers=kafka.bootstrap_servers, transactional_id=f"test-{uuid.uuid4().hex[:8]}",
        enable_idempotence=True, acks="all",
    )
    tx.init_transactions()
    tx.begin_transaction()
    tx.send(topic, key=a.encode(), value=_envelope(
        a, statement(a, T0, verb="answered", skills=["skill-t"], success=True),
        statement(a, T0 + 5 * MIN, verb="answered", skills=["skill-t"], success=False),
    ))
    tx.commit_transaction()
    tx.begin_transaction()  # a request the gateway answered 503: never accepted
    tx.send(topic, key=a.encode(), value=_envelope(
        a, statement(a, T0 + 2 * HOUR, verb="answered", skills=["skill-t"], success=True),
        statement(a, T0 + 2 * HOUR + MIN, duration="PT30M"),
    ))
    tx.send(topic, key=b.encode(), value=_envelope(b, statement(b, T0 + 3 * HOUR)))
    tx.flush()
    tx.abort_transaction()
    tx.begin_transaction()
    tx.send(topic, key=a.encode(), value=_envelope(a, statement(a, T0 + 20 * MIN, duration="PT2M")))
    tx.commit_transaction()
    tx.close()
    # B, plain (idempotent, not transactional): nine days later, so event time moves on.
    plain = EnvelopeProducer(kafka)
    plain.send(SCHOOL, b, "c1", COURSE, [statement(b, T0 + DAY), statement(b, T0 + 9 * DAY)])
    plain.close()

    worker = spawn(["worker"], settings, "worker")
    reader = DerivedReader(kafka)

    alive = fail_if_exited(lambda: [worker])

    def done(r: DerivedReader) -> bool:
        # A's partition ends with a transaction marker, not with one of its envelopes: the
        # cohort is evaluated past A's own watermark only if that partition counts as read
        # to its end (idle), which is what this waits for.
        return any(h.at_ms >= T0 + 8 * DAY for h in r.latest[Topic.COHORT_HEALTH].values())

    try:
        reader.settle(done, 120, check=alive, diagnose=lambda: worker.tail(60))
    finally:
        reader.close()

    eng = reader.latest[Topic.ENGAGEMENT]
    hour = eng[(a, COURSE, "hour", T0)]
    # 00:00 and 00:05 answered, 00:20 with two minutes: bridged gaps 5 + 15 min.
    assert (hour.statements, hour.sessions, hour.active_ms) == (3, 1, 20 * MIN)
    day = eng[(a, COURSE, "day", T0)]
    assert (day.statements, day.active_ms) == (3, 20 * MIN)
    # Nothing of the aborted transaction, in any record ever sent.
    assert not [r for r in reader.all[Topic.ENGAGEMENT] if r.period_start_ms == T0 + 2 * HOUR]
    assert not [r for r in reader.all[Topic.ENGAGEMENT] if r.learner == b and r.period_start_ms == T0 + 3 * HOUR]
    assert {r.statements for r in reader.all[Topic.ENGAGEMENT] if r.learner == a and r.grain == "day"} <= {2, 3}
    mastery = reader.latest[Topic.MASTERY][(a, "skill-t")]
    assert (mastery.observations, mastery.correct) == (2, 1)
    assert max(r.observations for r in reader.all[Topic.MASTERY]) == 2
    health = sorted(reader.latest[Topic.COHORT_HEALTH].values(), key=lambda h: h.at_ms)
    # No activity for 7 days: A (last 00:20 on day 0) from 7 days 01:00, B (last on day 1) from day 8.
    assert [(h.at_ms - T0, h.learners, h.disengaged) for h in health if h.at_ms >= T0 + 7 * DAY] == [
        (7 * DAY + HOUR, 2, 1), (8 * DAY, 2, 2),
    ]


@pytest.mark.kafka
def test_streams_commits_past_the_marker_of_every_single_statement_transaction(tmp_path, kafka, spawn):
    """Browsers send one statement per request: a transaction marker follows every record.

    Faust's own commit rule moved a few offsets per commit (every 2.8 s) behind such
    records, so the group's committed offset fell further behind with every request; here
    800 offsets would have taken it about ten minutes. Committed means processed too: the
    learner's engagement counts every statement.
    """
    settings = stream_settings(tmp_path, kafka)
    a = learner_in(5)
    topic = Topic.STATEMENTS.physical(kafka.topic_prefix)
    requests = 400
    tx = KafkaProducer(
        bootstrap_servers=kafka.bootstrap_servers, transactional_id=f"test-{uuid.uuid4().hex[:8]}",
        enable_idempotence=True, acks="all",
    )
    tx.init_transactions()
    for i in range(requests):
        tx.begin_transaction()
        tx.send(topic, key=a.encode(), value=_envelope(a, statement(a, T0 + i * 1000, duration="PT1S")))
        tx.commit_transaction()
    tx.close()
    app_id = f"markers-{uuid.uuid4().hex[:6]}"
    w = worker(spawn, settings, app_id, "markers")
    alive = fail_if_exited(lambda: [w])

    def committed_to_the_last_marker() -> bool:
        alive()
        lag = group_lag(kafka, app_id)
        if lag is None:
            return False
        # The partition's last offset is the last transaction's marker: no consumer is
        # given it, so a group caught up keeps a lag of one there (as Kafka's own do).
        return all(n == (1 if tp.topic == topic and tp.partition == 5 else 0) for tp, n in lag.items())

    reader = DerivedReader(kafka, [Topic.ENGAGEMENT])
    try:
        wait_for(committed_to_the_last_marker, 240, f"the worker's commits past every marker ({describe_lag(kafka, app_id)})")
        reader.settle(lambda r: (a, COURSE, "day", T0) in r.latest[Topic.ENGAGEMENT], 120, check=alive)
    finally:
        reader.close()
    assert reader.latest[Topic.ENGAGEMENT][(a, COURSE, "day", T0)].statements == requests
