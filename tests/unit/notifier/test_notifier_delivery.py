"""The notifier's delivery logic over an in-memory consumer, poster and clock.

Only the Kafka clients (tests/unit/sinks/fakes.py, shared with the sink) and HTTP are
faked (the same notifier runs against the real broker, webhook receivers and Alertmanager
in tests/integration/test_notifier_*.py): these tests pin the commit/retry/dead-letter
decisions record by record.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime

import orjson
import pytest
from kafka import TopicPartition
from kafka.errors import CommitFailedError

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

from ..sinks.fakes import Clock, FakeConsumer, FakeProducer

TP = TopicPartition("p.learnpulse.alerts", 0)
T0 = 1_767_225_600_000


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
    n = AlertNotifier(
        config, poster=poster, clock=clock, wall=lambda: clock.now,
        consumer_factory=lambda _c, listener: FakeConsumer(TP.topic, 1, listener),
        producer_factory=lambda _c: FakeProducer(),
    )  # fmt: skip
    n.loop.start()
    n.loop.assigned({TP})
    return n, n.loop.consumer, n.loop.deadletters.producer, poster, clock


def feed(consumer: FakeConsumer, *values: bytes | None) -> None:
    for v in values:
        consumer.produce(TP.partition, v, key=b"k")


def headers(sent) -> dict[str, bytes]:
    return dict(sent[3])


def test_notifier_commits_each_record_after_every_target_accepted_in_order():
    n, c, _dlq, poster, _clock = make([WEBHOOK, AM], {"http://hook/x": [200], "http://am/api/v2/alerts": [200]})
    recs = [alert(1), alert(1, "resolved"), alert(2)]
    feed(c, *(r.encode() for r in recs))
    n.loop.run_once()
    assert c.commits == [{TP: 1}, {TP: 2}, {TP: 3}]
    bodies = [orjson.loads(r.body)["alert"] for r in poster.to("http://hook/x")]
    assert [(b["alert_id"], b["state"]) for b in bodies] == [("id1", "fired"), ("id1", "resolved"), ("id2", "fired")]
    for r in poster.to("http://hook/x"):
        assert verify_signature(b"k", r.body, r.headers[SIGNATURE_HEADER])
    assert len(poster.to("http://am/api/v2/alerts")) == 3
    assert TP not in c.paused_set  # drained: fetching again


def test_notifier_retries_a_5xx_with_backoff_without_committing_or_spinning():
    n, c, _dlq, poster, clock = make(
        [WEBHOOK, AM], {"http://hook/x": [503, 503, 200], "http://am/api/v2/alerts": [200]}
    )
    feed(c, alert(1).encode(), alert(2).encode())
    n.loop.run_once()
    assert c.commits == [] and TP in c.paused_set
    assert len(poster.to("http://hook/x")) == 1
    # Not due yet: more rounds send nothing and the poll waits instead of returning at once.
    for _ in range(5):
        n.loop.run_once()
    assert len(poster.to("http://hook/x")) == 1
    assert all(t > 0 for t in c.polls[-5:])
    clock.now += 1.0  # first backoff: retry_initial_s
    n.loop.run_once()
    assert len(poster.to("http://hook/x")) == 2 and c.commits == []
    clock.now += 1.0  # second backoff is 2 s: not yet
    n.loop.run_once()
    assert len(poster.to("http://hook/x")) == 2
    clock.now += 1.0
    n.loop.run_once()
    assert c.commits == [{TP: 1}, {TP: 2}]
    # Alertmanager accepted record 1 the first time: it was not sent again during the retries.
    assert [orjson.loads(r.body)[0]["labels"]["cohort"] for r in poster.to("http://am/api/v2/alerts")] == ["c1", "c2"]


def test_notifier_connection_errors_are_retried_like_5xx():
    n, c, _dlq, _poster, clock = make([WEBHOOK], {"http://hook/x": [None, 200]})
    feed(c, alert(1).encode())
    n.loop.run_once()
    assert c.commits == []
    clock.now += 1.0
    n.loop.run_once()
    assert c.commits == [{TP: 1}]


def test_notifier_dead_letters_a_4xx_with_the_targets_answer_and_moves_on():
    n, c, dlq, poster, _clock = make([WEBHOOK, AM], {"http://hook/x": [422, 200], "http://am/api/v2/alerts": [200]})
    raw = alert(1).encode()
    feed(c, raw, alert(2).encode())
    n.loop.run_once()
    assert c.commits == [{TP: 1}, {TP: 2}]
    assert len(dlq.sent) == 1
    topic, key, value, _ = dlq.sent[0]
    assert (topic, key, value) == ("dlq", b"k", raw)
    got = headers(dlq.sent[0])
    assert got["rule"] == b"notifier.rejected"
    assert got["target"] == b"hook"
    assert b"HTTP 422: nope" in got["reason"]
    assert got["source"] == f"{TP.topic}/0/0".encode()
    assert len(poster.to("http://hook/x")) == 2  # a permanent refusal is not retried


def test_notifier_dead_letters_an_undecodable_record_and_delivers_the_next():
    n, c, dlq, poster, _clock = make([WEBHOOK], {"http://hook/x": [200]})
    feed(c, b'{"not": "an alert"}', alert(1).encode())
    n.loop.run_once()
    assert c.commits == [{TP: 1}, {TP: 2}]
    assert [s[2] for s in dlq.sent] == [b'{"not": "an alert"}']
    assert headers(dlq.sent[0])["stage"] == b"notifier"
    assert headers(dlq.sent[0])["rule"].startswith(b"alert.")
    assert len(poster.requests) == 1


def test_notifier_holds_the_record_when_the_dead_letter_topic_fails():
    n, c, dlq, _poster, clock = make([WEBHOOK], {"http://hook/x": [200]})
    dlq.fail = True
    feed(c, b"garbage")
    n.loop.run_once()
    assert c.commits == []
    dlq.fail = False
    clock.now += 1.0
    n.loop.run_once()
    assert c.commits == [{TP: 1}] and [s[2] for s in dlq.sent] == [b"garbage"]


def test_notifier_routes_by_school():
    n, c, _dlq, poster, _clock = make([WEBHOOK, ONLY_ONE], {"http://hook/x": [200], "http://one/x": [200]})
    feed(c, alert(1, school="school-001").encode(), alert(2, school="school-002").encode())
    n.loop.run_once()
    assert c.commits == [{TP: 1}, {TP: 2}]
    assert len(poster.to("http://hook/x")) == 2
    assert [orjson.loads(r.body)["alert"]["school"] for r in poster.to("http://one/x")] == ["school-001"]


def test_notifier_commits_an_unrouted_record_without_delivering_it():
    n, c, _dlq, poster, _clock = make([ONLY_ONE], {"http://one/x": [200]})
    feed(c, alert(1, school="school-009").encode())
    n.loop.run_once()
    assert c.commits == [{TP: 1}] and poster.requests == []


def test_notifier_skips_a_repeated_alert_state():
    n, c, _dlq, poster, _clock = make([WEBHOOK], {"http://hook/x": [200]})
    fired = alert(1).encode()
    # The stream processor re-sends its last alert after a restart.
    feed(c, fired, fired, alert(1, "resolved").encode(), fired)
    n.loop.run_once()
    assert c.commits[-1] == {TP: 4}
    states = [orjson.loads(r.body)["alert"]["state"] for r in poster.requests]
    assert states == ["fired", "resolved"]


def test_notifier_drops_held_records_of_a_revoked_partition_uncommitted():
    n, c, _dlq, poster, _clock = make([WEBHOOK], {"http://hook/x": [503]})
    feed(c, alert(1).encode())
    n.loop.run_once()
    assert n.loop.step.held(TP) == 0
    c.pending_rebalance = ({TP}, set())
    n.loop.run_once()
    assert n._parts == {}
    n.loop.run_once()
    assert c.commits == [] and len(poster.requests) == 1


def test_notifier_resends_fired_alerts_to_alertmanager_until_resolved():
    n, c, _dlq, poster, clock = make([AM], {"http://am/api/v2/alerts": [200]})
    feed(c, alert(1).encode())
    n.loop.run_once()
    assert len(poster.requests) == 1
    clock.now += 61
    n.loop.run_once()
    assert len(poster.requests) == 2
    (resent,) = orjson.loads(poster.requests[-1].body)
    assert resent["labels"]["cohort"] == "c1"
    # Each re-send extends the end 4 × resend_s past now.
    ends = datetime.fromisoformat(resent["endsAt"]).timestamp()
    assert ends == clock.now + 240  # wall = clock.now here
    feed(c, alert(1, "resolved").encode())
    n.loop.run_once()
    clock.now += 61
    n.loop.run_once()
    bodies = [orjson.loads(r.body)[0] for r in poster.requests[2:]]
    assert [b["annotations"]["state"] for b in bodies] == ["resolved"]  # no more re-sends


def test_notifier_stops_on_a_storm_of_dead_letters():
    n, c, _dlq, _poster, _clock = make([WEBHOOK], {"http://hook/x": [401]}, storm_min=5, storm_window=10)
    feed(c, *(alert(i).encode() for i in range(20)))
    with pytest.raises(DeadLetterStorm):
        n.loop.run_once()
    assert len(c.commits) == 4  # the records before the storm were dead-lettered and committed


def test_notifier_rewinds_a_partition_handed_straight_back_by_an_eager_rebalance():
    # kafka-python keeps the fetch position of a partition that is revoked and re-assigned
    # in one rebalance: without a rewind the dropped records would never be delivered.
    n, c, _dlq, poster, clock = make([WEBHOOK], {"http://hook/x": [503, 200]})
    feed(c, alert(1).encode(), alert(2).encode(), alert(3).encode())
    n.loop.run_once()
    assert c.positions[TP] == 3 and c.commits == []
    n.loop.revoked({TP})
    n.loop.assigned({TP})
    assert c.positions[TP] == 0 and c.seeks == [(TP, 0)]
    clock.now += 1
    for _ in range(3):
        n.loop.run_once()
    assert c.commits[-1] == {TP: 3}
    keys = [r.headers["Idempotency-Key"] for r in poster.requests if r is not poster.requests[0]]
    assert keys == ["id1:fired", "id2:fired", "id3:fired"]


def test_notifier_rewinds_after_a_failed_commit_and_delivers_again():
    n, c, _dlq, poster, _clock = make([WEBHOOK], {"http://hook/x": [200]})
    c.commit_error = CommitFailedError("group rebalanced")
    feed(c, alert(1).encode(), alert(2).encode())
    n.loop.run_once()
    assert c.commits == [] and c.positions[TP] == 0  # rewound to the uncommitted record
    for _ in range(3):
        n.loop.run_once()
    assert c.commits[-1] == {TP: 2}
    # The record whose commit failed is delivered again, with the same key.
    assert [r.headers["Idempotency-Key"] for r in poster.requests] == ["id1:fired", "id1:fired", "id2:fired"]
