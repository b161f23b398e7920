"""The notifier's delivery logic over an in-memory consumer, poster and clock.

Only the Kafka client and HTTP are faked (the same notifier runs against the real broker,
webhook receivers and Alertmanager in tests/integration/test_notifier_*.py): these tests
pin the commit/retry/dead-letter decisions record by record.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

import orjson
import pytest
from kafka import TopicPartition
from kafka.errors import CommitFailedError, KafkaTimeoutError

from schemas.records import AlertRecord
from sinks.errors import DeadLetterStorm
from sinks.notifier import (
    SIGNATURE_HEADER,
    AlertNotifier,
    HttpRequest,
    HttpResponse,
    NotifierConfig,
    Target,
    verify_signature,
)

TP = TopicPartition("p.learnpulse.alerts", 0)
T0 = 1_767_225_600_000


@dataclass
class Msg:
    offset: int
    value: bytes | None
    key: bytes | None = b"k"
    topic: str = TP.topic
    partition: int = 0
    timestamp: int = 0


@dataclass
class FakeConsumer:
    """Just the KafkaConsumer calls the notifier makes."""

    log: deque = field(default_factory=deque)
    paused: set = field(default_factory=set)
    commits: list = field(default_factory=list)
    polls: list = field(default_factory=list)
    fetched: int = 0

    def poll(self, timeout_ms=0, max_records=None):
        self.polls.append(timeout_ms)
        if TP in self.paused:
            return {}
        msgs = list(self.log)[self.fetched :]
        self.fetched += len(msgs)
        return {TP: msgs} if msgs else {}

    def pause(self, *tps):
        self.paused.update(tps)

    def resume(self, *tps):
        self.paused.difference_update(tps)

    fail_commits: int = 0
    assigned: bool = True

    def commit(self, offsets):
        if self.fail_commits:
            self.fail_commits -= 1
            raise CommitFailedError("group rebalanced")
        self.commits.append({tp: om.offset for tp, om in offsets.items()})

    def seek(self, tp, offset):
        if not self.assigned:
            raise ValueError("Unassigned partition")
        self.fetched = offset

    def committed(self, tp):
        return None

    def end_offsets(self, tps):
        return {tp: len(self.log) for tp in tps}

    def position(self, tp):
        return self.fetched


class FakeFuture:
    def __init__(self, fail: bool) -> None:
        self.fail = fail

    def get(self, timeout=None):
        if self.fail:
            raise KafkaTimeoutError("dead-letter topic unavailable")


@dataclass
class FakeProducer:
    sent: list = field(default_factory=list)
    fail: bool = False

    def send(self, topic, key=None, value=None, headers=None):
        if not self.fail:
            self.sent.append((topic, key, value, dict(headers or [])))
        return FakeFuture(self.fail)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Poster:
    """Answers by target URL from a script of statuses (the last one repeats)."""

    def __init__(self, script: dict[str, list[int | None]]) -> None:
        self.script = {url: deque(codes) for url, codes in script.items()}
        self.requests: list[HttpRequest] = []

    def __call__(self, request: HttpRequest, timeout_s: float) -> HttpResponse:
        self.requests.append(request)
        codes = self.script[request.url]
        code = codes.popleft() if len(codes) > 1 else codes[0]
        return HttpResponse(code, "nope" if code and code >= 400 else "ok")

    def to(self, url: str) -> list[HttpRequest]:
        return [r for r in self.requests if r.url == url]


def alert(n: int, state: str = "fired", school: str = "school-001", alert_id: str | None = None) -> AlertRecord:
    at = T0 + n * 3_600_000
    return AlertRecord(alert_id or f"id{n}", school, "course", f"c{n}", state, at, T0, 20, 9, 0.45, 0.4, ("p",), at)


WEBHOOK = Target("hook", "webhook", "http://hook/x", secret=b"k")
ONLY_ONE = Target("one", "webhook", "http://one/x", schools=frozenset({"school-001"}))
AM = Target("alertmanager", "alertmanager", "http://am")


def make(targets, script, **cfg):
    config = NotifierConfig(
        bootstrap="unused", topic=TP.topic, group_id="g", deadletter_topic="dlq", targets=tuple(targets),
        retry_initial_s=1.0, retry_max_s=8.0, resend_s=60.0, **cfg,
    )  # fmt: skip
    clock = Clock()
    poster = Poster(script)
    n = AlertNotifier(config, poster=poster, clock=clock, wall=lambda: clock.t)
    n._consumer = FakeConsumer()
    n._dlq = FakeProducer()
    n._assigned([TP])
    return n, n._consumer, n._dlq, poster, clock


def feed(consumer: FakeConsumer, *values: bytes | None) -> None:
    for v in values:
        consumer.log.append(Msg(len(consumer.log), v))


STOP = threading.Event()


def test_notifier_commits_each_record_after_every_target_accepted_in_order():
    n, c, _dlq, poster, _clock = make([WEBHOOK, AM], {"http://hook/x": [200], "http://am/api/v2/alerts": [200]})
    recs = [alert(1), alert(1, "resolved"), alert(2)]
    feed(c, *(r.encode() for r in recs))
    n.step(STOP)
    assert c.commits == [{TP: 1}, {TP: 2}, {TP: 3}]
    bodies = [orjson.loads(r.body)["alert"] for r in poster.to("http://hook/x")]
    assert [(b["alert_id"], b["state"]) for b in bodies] == [("id1", "fired"), ("id1", "resolved"), ("id2", "fired")]
    for r in poster.to("http://hook/x"):
        assert verify_signature(b"k", r.body, r.headers[SIGNATURE_HEADER])
    assert len(poster.to("http://am/api/v2/alerts")) == 3
    assert TP not in c.paused  # drained: fetching again


def test_notifier_retries_a_5xx_with_backoff_without_committing_or_spinning():
    n, c, _dlq, poster, clock = make(
        [WEBHOOK, AM], {"http://hook/x": [503, 503, 200], "http://am/api/v2/alerts": [200]}
    )
    feed(c, alert(1).encode(), alert(2).encode())
    n.step(STOP)
    assert c.commits == [] and TP in c.paused
    assert len(poster.to("http://hook/x")) == 1
    # Not due yet: more rounds send nothing and the poll waits instead of returning at once.
    for _ in range(5):
        n.step(STOP)
    assert len(poster.to("http://hook/x")) == 1
    assert all(t > 0 for t in c.polls[-5:])
    clock.t += 1.0  # first backoff: retry_initial_s
    n.step(STOP)
    assert len(poster.to("http://hook/x")) == 2 and c.commits == []
    clock.t += 1.0  # second backoff is 2 s: not yet
    n.step(STOP)
    assert len(poster.to("http://hook/x")) == 2
    clock.t += 1.0
    n.step(STOP)
    assert c.commits == [{TP: 1}, {TP: 2}]
    # Alertmanager accepted record 1 the first time: it was not sent again during the retries.
    assert [orjson.loads(r.body)[0]["labels"]["cohort"] for r in poster.to("http://am/api/v2/alerts")] == ["c1", "c2"]


def test_notifier_connection_errors_are_retried_like_5xx():
    n, c, _dlq, _poster, clock = make([WEBHOOK], {"http://hook/x": [None, 200]})
    feed(c, alert(1).encode())
    n.step(STOP)
    assert c.commits == []
    clock.t += 1.0
    n.step(STOP)
    assert c.commits == [{TP: 1}]


def test_notifier_dead_letters_a_4xx_with_the_targets_answer_and_moves_on():
    n, c, dlq, poster, _clock = make([WEBHOOK, AM], {"http://hook/x": [422, 200], "http://am/api/v2/alerts": [200]})
    raw = alert(1).encode()
    feed(c, raw, alert(2).encode())
    n.step(STOP)
    assert c.commits == [{TP: 1}, {TP: 2}]
    assert len(dlq.sent) == 1
    topic, key, value, headers = dlq.sent[0]
    assert (topic, key, value) == ("dlq", b"k", raw)
    assert headers["rule"] == b"notifier.rejected"
    assert headers["target"] == b"hook"
    assert b"HTTP 422: nope" in headers["reason"]
    assert headers["source"] == f"{TP.topic}/0/0".encode()
    assert len(poster.to("http://hook/x")) == 2  # a permanent refusal is not retried


def test_notifier_dead_letters_an_undecodable_record_and_delivers_the_next():
    n, c, dlq, poster, _clock = make([WEBHOOK], {"http://hook/x": [200]})
    feed(c, b'{"not": "an alert"}', alert(1).encode())
    n.step(STOP)
    assert c.commits == [{TP: 1}, {TP: 2}]
    assert [s[2] for s in dlq.sent] == [b'{"not": "an alert"}']
    assert dlq.sent[0][3]["stage"] == b"notifier"
    assert dlq.sent[0][3]["rule"].startswith(b"alert.")
    assert len(poster.requests) == 1


def test_notifier_holds_the_record_when_the_dead_letter_topic_fails():
    n, c, dlq, _poster, clock = make([WEBHOOK], {"http://hook/x": [200]})
    dlq.fail = True
    feed(c, b"garbage")
    n.step(STOP)
    assert c.commits == []
    dlq.fail = False
    clock.t += 1.0
    n.step(STOP)
    assert c.commits == [{TP: 1}] and [s[2] for s in dlq.sent] == [b"garbage"]


def test_notifier_routes_by_school():
    n, c, _dlq, poster, _clock = make([WEBHOOK, ONLY_ONE], {"http://hook/x": [200], "http://one/x": [200]})
    feed(c, alert(1, school="school-001").encode(), alert(2, school="school-002").encode())
    n.step(STOP)
    assert c.commits == [{TP: 1}, {TP: 2}]
    assert len(poster.to("http://hook/x")) == 2
    assert [orjson.loads(r.body)["alert"]["school"] for r in poster.to("http://one/x")] == ["school-001"]


def test_notifier_commits_an_unrouted_record_without_delivering_it():
    n, c, _dlq, poster, _clock = make([ONLY_ONE], {"http://one/x": [200]})
    feed(c, alert(1, school="school-009").encode())
    n.step(STOP)
    assert c.commits == [{TP: 1}] and poster.requests == []


def test_notifier_skips_a_repeated_alert_state():
    n, c, _dlq, poster, _clock = make([WEBHOOK], {"http://hook/x": [200]})
    fired = alert(1).encode()
    # The stream processor re-sends its last alert after a restart.
    feed(c, fired, fired, alert(1, "resolved").encode(), fired)
    n.step(STOP)
    assert c.commits[-1] == {TP: 4}
    states = [orjson.loads(r.body)["alert"]["state"] for r in poster.requests]
    assert states == ["fired", "resolved"]


def test_notifier_drops_held_records_of_a_revoked_partition_uncommitted():
    n, c, _dlq, poster, _clock = make([WEBHOOK], {"http://hook/x": [503]})
    feed(c, alert(1).encode())
    n.step(STOP)
    n._revoked([TP])
    assert n._parts == {}
    n.step(STOP)
    assert c.commits == [] and len(poster.requests) == 1


def test_notifier_resends_fired_alerts_to_alertmanager_until_resolved():
    n, c, _dlq, poster, clock = make([AM], {"http://am/api/v2/alerts": [200]})
    feed(c, alert(1).encode())
    n.step(STOP)
    assert len(poster.requests) == 1
    clock.t += 61
    n.step(STOP)
    assert len(poster.requests) == 2
    (resent,) = orjson.loads(poster.requests[-1].body)
    assert resent["labels"]["cohort"] == "c1"
    # Each re-send extends the end 4 × resend_s past now.
    ends = datetime.fromisoformat(resent["endsAt"]).timestamp()
    assert ends == clock.t + 240  # wall = clock.t here
    feed(c, alert(1, "resolved").encode())
    n.step(STOP)
    clock.t += 61
    n.step(STOP)
    bodies = [orjson.loads(r.body)[0] for r in poster.requests[2:]]
    assert [b["annotations"]["state"] for b in bodies] == ["resolved"]  # no more re-sends


def test_notifier_stops_on_a_storm_of_dead_letters():
    n, c, _dlq, _poster, _clock = make([WEBHOOK], {"http://hook/x": [401]}, storm_min=5, storm_window=10)
    feed(c, *(alert(i).encode() for i in range(20)))
    with pytest.raises(DeadLetterStorm):
        n.step(STOP)
    assert len(c.commits) == 4  # the records before the storm were dead-lettered and committed


def test_notifier_rewinds_a_partition_handed_straight_back_by_an_eager_rebalance():
    # kafka-python keeps the fetch position of a partition that is revoked and re-assigned
    # in one rebalance: without a rewind the dropped records would never be delivered.
    n, c, _dlq, poster, clock = make([WEBHOOK], {"http://hook/x": [503, 200]})
    feed(c, alert(1).encode(), alert(2).encode(), alert(3).encode())
    n.step(STOP)
    assert c.fetched == 3 and c.commits == []
    n._revoked([TP])
    n._assigned([TP])
    assert c.fetched == 0
    clock.t += 1
    for _ in range(3):
        n.step(STOP)
    assert c.commits[-1] == {TP: 3}
    keys = [r.headers["Idempotency-Key"] for r in poster.requests if r is not poster.requests[0]]
    assert keys == ["id1:fired", "id2:fired", "id3:fired"]


def test_notifier_rewinds_after_a_failed_commit_and_delivers_again():
    n, c, _dlq, poster, _clock = make([WEBHOOK], {"http://hook/x": [200]})
    c.fail_commits = 1
    feed(c, alert(1).encode(), alert(2).encode())
    n.step(STOP)
    assert c.commits == [] and c.fetched == 0  # rewound to the uncommitted record
    for _ in range(3):
        n.step(STOP)
    assert c.commits[-1] == {TP: 2}
    # The record whose commit failed is delivered again, with the same key.
    assert [r.headers["Idempotency-Key"] for r in poster.requests] == ["id1:fired", "id1:fired", "id2:fired"]
