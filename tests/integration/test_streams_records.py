"""A hand-built statement stream through the real worker: every derived record as expected."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid

import pytest

from schemas.envelope import StatementEntry, StatementEnvelope
from schemas.topics import Topic
from tests.integration.streams_support import (
    DAY,
    HOUR,
    MIN,
    T0,
    DerivedReader,
    EnvelopeProducer,
    assigned_consumer,
    consistent_versions,
    fail_if_exited,
    statement,
    stream_settings,
)

SCHOOL = "school-a"
COURSE = "https://c.example/course-1"
A, B, C = ("a" * 64, "b" * 64, "c" * 64)


def _thresholds(tmp_path):
    path = tmp_path / "thresholds.json"
    path.write_text(
        json.dumps(
            {
                "defaults": {"min_cohort_size": 50},
                "schools": {
                    SCHOOL: {
                        "min_cohort_size": 2, "alert_share": 0.5, "resolve_share": 0.2,
                        "low_active_fraction": 0.0, "inactive_days": 7,
                    }
                },
            }
        )
    )
    return path


def _bkt(p, ok, prior_learn=0.15, guess=0.2, slip=0.1):
    post = p * (1 - slip) / (p * (1 - slip) + (1 - p) * guess) if ok else p * slip / (p * slip + (1 - p) * (1 - guess))
    return post + (1 - post) * prior_learn


@pytest.mark.kafka
def test_streams_hand_built_stream_gives_exact_records(tmp_path, kafka, spawn):
    settings = stream_settings(tmp_path, kafka, thresholds_file=_thresholds(tmp_path))
    wrong = str(uuid.uuid4())
    prod = EnvelopeProducer(kafka)
    prod.send(SCHOOL, A, "c1", COURSE, [
        statement(A, T0, verb="answered", skills=["skill-1"], success=True),
        statement(A, T0 + 5 * MIN, verb="answered", skills=["skill-1"], success=False, sid=wrong),
    ])
    prod.send(SCHOOL, A, "c1", COURSE, [
        statement(A, T0 + 10 * MIN, duration="PT2M"),
        statement(A, T0 + 20 * MIN, voids=wrong),
    ])
    prod.send(SCHOOL, B, "c1", COURSE, [statement(B, T0 + DAY)])
    prod.send(SCHOOL, C, "c2", COURSE, [statement(C, T0 + 9 * DAY)])
    prod.close()

    worker = spawn(["worker"], settings, "worker")
    reader = DerivedReader(kafka)

    alive = fail_if_exited(lambda: [worker])

    try:
        reader.settle(
            lambda r: len(r.latest[Topic.COHORT_HEALTH]) >= 4 and r.latest[Topic.ALERTS], 120, check=alive,
            diagnose=lambda: worker.tail(80),
        )
    finally:
        reader.close()

    eng = reader.latest[Topic.ENGAGEMENT]
    a_hour = eng[(A, COURSE, "hour", T0)]
    # 00:00, 00:05, 00:10 (its 2-minute duration lies inside the bridged gap): 10 minutes,
    # one session; the voiding statement is not learning activity.
    assert (a_hour.statements, a_hour.sessions, a_hour.active_ms, a_hour.last_event_ms) == (3, 1, 10 * MIN, T0 + 10 * MIN)
    assert (a_hour.school, a_hour.cohort, a_hour.version) == (SCHOOL, "c1", 3)
    a_day = eng[(A, COURSE, "day", T0)]
    assert (a_day.statements, a_day.sessions, a_day.active_ms, a_day.version) == (3, 1, 10 * MIN, 3)
    b_hour = eng[(B, COURSE, "hour", T0 + DAY)]
    assert (b_hour.statements, b_hour.sessions, b_hour.active_ms) == (1, 1, 0)
    assert set(eng) == {
        (A, COURSE, "hour", T0), (A, COURSE, "day", T0), (B, COURSE, "hour", T0 + DAY),
        (B, COURSE, "day", T0 + DAY), (C, COURSE, "hour", T0 + 9 * DAY), (C, COURSE, "day", T0 + 9 * DAY),
    }

    # The wrong answer was voided: mastery is the prior updated by the one right answer.
    m = reader.latest[Topic.MASTERY][(A, "skill-1")]
    assert m.p_mastery == pytest.approx(_bkt(0.2, True), abs=1e-9)
    assert (m.observations, m.correct, m.event_ms, m.version) == (1, 1, T0, 3)
    # Before the void arrived the record said: right then wrong.
    before = [r for r in reader.all[Topic.MASTERY] if r.version == 2]
    if before:  # present unless both envelopes fell in one batch
        assert before[0].p_mastery == pytest.approx(_bkt(_bkt(0.2, True), False), abs=1e-9)

    health = sorted(reader.latest[Topic.COHORT_HEALTH].values(), key=lambda r: r.at_ms)
    c1 = [(r.at_ms - T0, r.learners, r.disengaged, r.share, r.median_active_ms_7d) for r in health if r.cohort == "c1"]
    assert c1 == [
        (HOUR, 1, 0, 0.0, 10 * MIN),
        (DAY + HOUR, 2, 0, 0.0, 5 * MIN),  # median of 10 min and 0
        (7 * DAY + HOUR, 2, 1, 0.5, 0),  # A: nothing for 7 days (last 00:10)
        (8 * DAY, 2, 2, 1.0, 0),  # B too
    ]
    assert not [r for r in health if r.cohort == "c2"]  # C's only hour is not yet evaluated

    (alert,) = reader.all[Topic.ALERTS]
    assert (alert.state, alert.at_ms, alert.fired_at_ms, alert.learners, alert.disengaged, alert.share) == (
        "fired", T0 + 7 * DAY + HOUR, T0 + 7 * DAY + HOUR, 2, 1, 0.5
    )
    assert alert.disengaged_learners == (A,) and alert.threshold == 0.5
    for topic, records in reader.all.items():
        consistent_versions(records, topic)

    # The worker's Prometheus gauges per school/cohort.
    body = urllib.request.urlopen(f"http://127.0.0.1:{settings.metrics_port_for(1)}/metrics", timeout=10).read().decode()
    labels = f'cohort="c1",course="{COURSE}",school="{SCHOOL}"'
    assert f"learnpulse_cohort_alert_active{{{labels}}} 1.0" in body
    assert f"learnpulse_cohort_disengaged_share{{{labels}}} 1.0" in body


@pytest.mark.kafka
def test_streams_poison_records_go_to_deadletter_and_worker_keeps_going(tmp_path, kafka, spawn):
    settings = stream_settings(tmp_path, kafka)
    prod = EnvelopeProducer(kafka)
    prod.send_raw(A.encode(), b"{not json")
    prod.send_raw(A.encode(), json.dumps({"v": 99, "school": SCHOOL, "learner": A}).encode())
    bad_ts = statement(A, T0)
    bad_ts["timestamp"] = "yesterday"
    prod.producer.send(
        prod.topic, key=A.encode(),
        value=StatementEnvelope(SCHOOL, A, T0, (StatementEntry(COURSE, "c1", bad_ts),)).encode(),
    )
    prod.send(SCHOOL, A, "c1", COURSE, [statement(A, T0 + MIN), statement(A, T0 + 2 * MIN)])
    prod.close()

    worker = spawn(["worker"], settings, "worker")
    reader = DerivedReader(kafka, [Topic.ENGAGEMENT])
    dlq = assigned_consumer(kafka, [Topic.DEADLETTER])
    try:
        reader.settle(lambda r: (A, COURSE, "hour", T0) in r.latest[Topic.ENGAGEMENT], 90, diagnose=lambda: worker.tail(80))
        dead = []
        deadline = time.monotonic() + 60
        while len(dead) < 3 and time.monotonic() < deadline:
            dead.extend(dlq)
    finally:
        reader.close()
        dlq.close()
    assert worker.popen.poll() is None, worker.tail()
    rules = sorted(dict(m.headers)["rule"].decode() for m in dead)
    assert rules, worker.tail()
    assert rules == ["envelope.json", "envelope.version", "timestamp.format"]
    assert dead[0].value == b"{not json"  # original bytes kept
    assert all(dict(m.headers)["stage"] == b"streams:learner" for m in dead)
    r = reader.latest[Topic.ENGAGEMENT][(A, COURSE, "hour", T0)]
    assert (r.statements, r.active_ms) == (2, MIN)
