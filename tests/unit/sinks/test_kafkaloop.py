"""The shared Kafka loop (sinks/kafkaloop.py) against the Kafka fakes and a scripted step.

The step here is the smallest one possible: it holds what it is given, per partition,
until the test marks offsets finished; the loop must commit exactly what the step
finished, pause while the step is full, forward rebalances and stop a dead-letter storm.
The sink and the notifier are the loop's real steps (test_sinks_consumer.py,
tests/unit/notifier/test_notifier_delivery.py).
"""

from __future__ import annotations

import threading

import pytest
from kafka import TopicPartition
from kafka.errors import KafkaConnectionError, KafkaTimeoutError

from sinks.errors import DeadLetterStorm, DeadLetterUndelivered
from sinks.kafkaloop import OUTAGE_PAUSE_S, KafkaLoop, LoopConfig

from .fakes import Clock, CommitFailedError, FakeConsumer, FakeProducer

TOPIC = "t.loop"
TP0, TP1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)


class HoldingStep:
    """Holds records per partition; commits the offsets the test finished; full at ``capacity`` records."""

    def __init__(self, capacity: int = 100) -> None:
        self.capacity = capacity
        self.loop: KafkaLoop | None = None
        self.held_records: dict[TopicPartition, list] = {}
        self.finished: dict[TopicPartition, int] = {}
        self.events: list[tuple[str, set]] = []
        self.commit_errors: list[Exception] = []
        self.joined = False

    def size(self) -> int:
        return sum(len(r) for r in self.held_records.values())

    def ready(self) -> bool:
        return True

    def timeout_s(self) -> float:
        return 0.05

    def submit(self, tp, records) -> None:
        self.held_records.setdefault(tp, []).extend(records)

    def poll(self) -> None:
        assert self.loop is not None
        done = {tp: o for tp, o in self.finished.items() if tp in self.held_records}
        err = self.loop.commit(done)
        if err is not None:
            self.commit_errors.append(err)
            return
        for tp, offset in done.items():
            self.held_records[tp] = [r for r in self.held_records[tp] if r.offset >= offset]
        self.finished.clear()

    def blocked(self, assigned):
        return set(assigned) if self.size() >= self.capacity else set()

    def held(self, tp):
        records = self.held_records.get(tp)
        return records[0].offset if records else None

    def revoked(self, tps) -> None:
        self.events.append(("revoked", set(tps)))
        for tp in tps:
            self.held_records.pop(tp, None)

    def assigned(self, tps) -> None:
        self.events.append(("assigned", set(tps)))

    def join(self) -> None:
        self.joined = True


def make(step: HoldingStep, partitions: int = 2, **config) -> tuple[KafkaLoop, FakeConsumer, FakeProducer]:
    producer = FakeProducer()
    settings = {"storm_min": 100, "storm_window": 1_000, **config}
    loop = KafkaLoop(
        LoopConfig(name="test", component="sink", stage="sink:test", client_id="c", bootstrap="unused",
                   topic=TOPIC, group_id="g", deadletter_topic="t.dlq", **settings),
        step, clock=Clock(),
        consumer_factory=lambda _c, listener: FakeConsumer(TOPIC, partitions, listener),
        producer_factory=lambda _c: producer,
    )  # fmt: skip
    step.loop = loop
    loop.start()
    return loop, loop.consumer, producer


def test_kafkaloop_commits_only_what_the_step_finished():
    step = HoldingStep()
    loop, kafka, _ = make(step)
    for i in range(4):
        kafka.produce(0, f"r{i}".encode())
    loop.run_once()
    assert [r.offset for r in step.held_records[TP0]] == [0, 1, 2, 3]
    assert kafka.commits == [], "nothing is committed before the step finished it"
    step.finished[TP0] = 2
    loop.run_once()
    assert kafka.commits == [{TP0: 2}]
    assert step.held(TP0) == 2


def test_kafkaloop_pauses_the_partitions_while_the_step_is_full_and_resumes_after():
    step = HoldingStep(capacity=3)
    loop, kafka, _ = make(step)
    for i in range(5):
        kafka.produce(0, f"r{i}".encode())
    loop.run_once()
    assert kafka.paused_set == {TP0, TP1}
    kafka.produce(1, b"late")
    loop.run_once()
    assert TP1 not in step.held_records, "a paused partition is not fetched"
    step.finished[TP0] = 5
    loop.run_once()  # the step drains: partitions resumed at the end of the round
    assert kafka.paused_set == set()
    loop.run_once()
    assert [r.value for r in step.held_records[TP1]] == [b"late"]


def test_kafkaloop_pauses_a_partition_assigned_while_the_step_is_full():
    step = HoldingStep(capacity=1)
    loop, kafka, _ = make(step, partitions=3)
    kafka.assigned = {TP0}
    kafka.produce(0, b"r0")
    loop.run_once()
    tp2 = TopicPartition(TOPIC, 2)
    kafka.produce(2, b"z")
    kafka.pending_rebalance = (set(), {tp2})
    loop.run_once()
    assert ("assigned", {tp2}) in step.events
    assert tp2 in kafka.paused_set and kafka.positions[tp2] == 0


def test_kafkaloop_rebalance_mid_batch_drops_the_revoked_partition_uncommitted():
    step = HoldingStep()
    loop, kafka, _ = make(step)
    kafka.produce(0, b"a")
    kafka.produce(1, b"b")
    loop.run_once()
    kafka.pending_rebalance = ({TP1}, set())
    step.finished[TP0] = 1
    step.finished[TP1] = 1  # finished by the step, but revoked in this round's poll first
    loop.run_once()
    assert ("revoked", {TP1}) in step.events
    assert kafka.commits == [{TP0: 1}]


def test_kafkaloop_seeks_a_partition_handed_straight_back_to_its_first_dropped_offset():
    step = HoldingStep()
    loop, kafka, _ = make(step)
    for i in range(3):
        kafka.produce(0, f"r{i}".encode())
    loop.run_once()
    step.finished[TP0] = 1
    loop.run_once()
    # Eager: everything revoked, then the same partitions assigned again.
    loop.revoked({TP0, TP1})
    loop.assigned({TP0, TP1})
    assert kafka.seeks == [(TP0, 1)] and kafka.positions[TP0] == 1
    loop.run_once()
    assert [r.offset for r in step.held_records[TP0]] == [1, 2]


def test_kafkaloop_resumes_a_paused_partition_handed_straight_back_to_an_emptied_step():
    # kafka-python keeps the paused flag of a partition revoked and re-assigned in one rebalance.
    step = HoldingStep(capacity=2)
    loop, kafka, _ = make(step, partitions=1)
    kafka.produce(0, b"r0")
    kafka.produce(0, b"r1")
    loop.run_once()
    assert kafka.paused_set == {TP0}
    loop.revoked({TP0})
    loop.assigned({TP0})
    assert kafka.paused_set == set()
    loop.run_once()
    assert [r.offset for r in step.held_records[TP0]] == [0, 1]


def test_kafkaloop_hands_a_refused_commit_back_to_the_step():
    step = HoldingStep()
    loop, kafka, _ = make(step)
    kafka.produce(0, b"a")
    loop.run_once()
    kafka.commit_error = CommitFailedError("group rebalanced")
    step.finished[TP0] = 1
    loop.run_once()
    assert kafka.commits == [] and isinstance(step.commit_errors[0], CommitFailedError)


def test_kafkaloop_dead_letters_carry_the_contract_headers_and_stop_at_a_storm():
    step = HoldingStep()
    loop, _kafka, producer = make(step, storm_min=3, storm_window=10, storm_share=0.5)
    tp = TP0
    loop.deadletters.passed()
    pending = [loop.deadletters.send(tp, 0, b"k", b"v0", "test.rule", "bad")]
    loop.deadletters.settle(pending)
    (_topic, key, value, headers) = producer.sent[0]
    got = dict(headers)
    assert (key, value) == (b"k", b"v0")
    assert got["rule"] == b"test.rule" and got["source"] == b"t.loop/0/0" and got["stage"] == b"sink:test"
    assert loop.deadletters.write(tp, 1, None, b"v1", "test.rule", "bad", target="hook")
    assert dict(producer.sent[1][3])["target"] == b"hook"
    with pytest.raises(DeadLetterStorm):
        loop.deadletters.send(tp, 2, None, b"v2", "test.rule", "bad")


def test_kafkaloop_dead_letters_kafka_did_not_take_are_resent_and_reported():
    step = HoldingStep()
    loop, _kafka, producer = make(step)
    producer.fail_next = 1
    pending = [loop.deadletters.send(TP0, 0, None, b"v", "test.rule", "bad")]
    with pytest.raises(DeadLetterUndelivered):
        loop.deadletters.settle(pending)
    loop.deadletters.settle(pending)  # the resend went through
    assert [s[2] for s in producer.sent] == [b"v"]
    producer.fail = True
    assert not loop.deadletters.write(TP0, 1, None, b"w", "test.rule", "bad")


def test_kafkaloop_replaces_a_consumer_stuck_in_a_rebalance():
    from kafka.structs import MemberState

    step = HoldingStep()
    loop, kafka, _ = make(step, rebalance_stall_s=30)
    kafka.produce(0, b"a")
    loop.run_once()
    kafka.group_metadata = lambda: type("M", (), {"state": MemberState.REBALANCING})()
    loop.clock.advance(10)
    loop.run_once()
    loop.clock.advance(25)
    loop.run_once()
    assert loop.consumer is kafka
    loop.clock.advance(10)
    loop.run_once()
    assert loop.consumer is not kafka and kafka.closed and loop.consumer_restarts == 1
    assert ("revoked", {TP0, TP1}) in step.events and step.held_records == {}


def test_kafkaloop_run_joins_the_step_and_closes_on_stop():
    step = HoldingStep()
    loop, kafka, _ = make(step)
    stop = threading.Event()
    loop._consumer_factory = lambda _c, _l: kafka
    rounds = []
    loop.run_once = lambda: rounds.append(1) or stop.set()
    loop.run(stop)
    assert rounds == [1] and step.joined and kafka.closed


def test_kafkaloop_outlives_a_poll_that_fails_while_the_broker_is_unreachable():
    """kafka-python 3 raises from ``poll`` when the group coordinator cannot be reached
    (``KafkaConnectionError: 111 ECONNREFUSED`` while the broker is down): the sink thread died
    with it in test_gateway_kafka_down. The round must count as empty, let the step do its due
    work, and poll again; the records are there when the broker is back."""
    step = HoldingStep()
    loop, kafka, _ = make(step)
    kafka.produce(0, b"r0")
    real_poll, failures = kafka.poll, [KafkaConnectionError("111 ECONNREFUSED"), KafkaTimeoutError("Unable to bootstrap")]
    step_polls = []
    real_step_poll = step.poll

    def unreachable_then_back(*args, **kwargs):
        if failures:
            raise failures.pop(0)
        return real_poll(*args, **kwargs)

    def counted_step_poll():
        step_polls.append(1)
        real_step_poll()

    kafka.poll, step.poll = unreachable_then_back, counted_step_poll
    loop.run_once()
    loop.run_once()
    assert len(step_polls) == 2, "the step's due work runs during an outage too"
    assert TP0 not in step.held_records
    loop.run_once()
    assert [r.offset for r in step.held_records[TP0]] == [0]


def test_kafkaloop_pauses_between_polls_while_the_broker_is_unreachable_even_with_work_due():
    """A step with work due asks ``poll`` not to wait; an unreachable broker refuses at once:
    without a least pause the loop would spin on the CPU for the whole outage."""
    step = HoldingStep()
    step.timeout_s = lambda: 0.0
    loop, kafka, _ = make(step)
    waits = []
    loop._stop.wait = lambda seconds: waits.append(seconds)

    def unreachable(*args, **kwargs):
        raise KafkaConnectionError("111 ECONNREFUSED")

    kafka.poll = unreachable
    loop.run_once()
    assert waits and waits[0] >= OUTAGE_PAUSE_S > 0


def test_kafkaloop_consumer_fetches_wait_for_many_records_but_less_than_a_fifth_of_the_batch_window(monkeypatch):
    # kafka-python asks for 1 byte per fetch: on live traffic (a transaction marker after
    # every request) each fetch came back with a record or two, and the statements sink's
    # network thread used ~0.1 of a core at 100 statements/s.
    import sinks.kafkaloop as kafkaloop
    from sinks.consumer import SinkConfig

    built: list[dict] = []
    monkeypatch.setattr(kafkaloop, "KafkaConsumer", lambda **kw: built.append(kw) or object())
    monkeypatch.setattr(kafkaloop, "subscribe_with_metadata", lambda *a: None)
    for max_wait_s in (1.0, 0.1):
        config = SinkConfig(name="s", bootstrap="127.0.0.1:9", topic=TOPIC, group_id="g", deadletter_topic="d",
                            tables=(), max_wait_s=max_wait_s)
        kafkaloop.kafka_consumer(config.loop_config(), None)
        kw = built[-1]
        assert kw["fetch_min_bytes"] >= 64 * 1024
        assert 0 < kw["fetch_max_wait_ms"] <= max_wait_s * 1000 / 5
