"""The sink's batching and delivery rules, with in-memory Kafka/ClickHouse fakes and an injected clock.

What is checked here is ordering and state: offsets committed only after the insert,
the batch held (and partitions paused) while ClickHouse is down, dead letters settled
before the commit, revoked partitions' records dropped. The same code runs against the
real broker and engines in tests/integration/test_sinks_*.py.
"""

from __future__ import annotations

import threading
import time

import pytest
from kafka import TopicPartition

from schemas.errors import InvalidStatement
from sinks.consumer import KafkaClickHouseSink, SinkConfig
from sinks.errors import DeadLetterStorm, SinkMisconfigured

from .fakes import Clock, CommitFailedError, FakeConsumer, FakeEngine, FakeProducer, KafkaError

TOPIC = "t.xapi.statements"
TP0, TP1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)


def to_rows(raw: bytes | None):
    text = (raw or b"").decode()
    if ":" not in text:
        raise InvalidStatement("test.shape", f"no colon in {text!r}")
    k, v = text.split(":", 1)
    return {"t": [(k, v)]}


class Harness:
    def __init__(self, partitions: int = 2, cooperative: bool = True, runner=None, ends_factory=None,
                 owns_engine: bool = False, name: str = "test", after_insert=(), engine=None, tables=("t",),
                 columns=None, rows=to_rows, extra_engines=(), **config):  # fmt: skip
        self.clock = Clock()
        self.engine = engine or FakeEngine()
        self.producer = FakeProducer()
        self.progress: list[dict] = []
        defaults = {
            "max_rows": 3,
            "max_wait_s": 1.0,
            "retry_initial_s": 0.5,
            "retry_max_s": 4.0,
            "progress_interval_s": 1.0,
        }
        defaults.update(config)
        self.config = SinkConfig(
            name=name, bootstrap="unused", topic=TOPIC, group_id="g", deadletter_topic="t.xapi.deadletter",
            tables=tables, cooperative=cooperative, **defaults,
        )  # fmt: skip
        self.consumer: FakeConsumer | None = None

        def consumer_factory(_config, listener):
            self.consumer = FakeConsumer(TOPIC, partitions, listener)
            return self.consumer

        self.sink = KafkaClickHouseSink(
            self.config, self.engine, rows, columns or {"t": ("k", "v")},
            on_progress=lambda _s, prog, n: self.progress.append({tp.partition: (p.committed, p.caught_up_ms) for tp, p in prog.items()}),
            clock=self.clock, consumer_factory=consumer_factory, producer_factory=lambda _c: self.producer,
            # The fake log has no open transactions: its end is its high watermark.
            ends_factory=ends_factory or (lambda _c: self.kafka),
            runner=runner or (lambda fn: fn()),  # inline writer: each step is deterministic
            owns_engine=owns_engine, after_insert=after_insert, extra_engines=extra_engines,
        )  # fmt: skip
        self.loop = self.sink.loop
        self.loop.start()

    @property
    def kafka(self) -> FakeConsumer:
        assert self.consumer is not None
        return self.consumer

    def step(self, n: int = 1, advance: float = 0.0) -> None:
        for _ in range(n):
            self.clock.advance(advance)
            self.loop.run_once()

    def written(self) -> list[tuple[str, str]]:
        return sorted(self.engine.rows("t"))


def test_sinks_batch_closes_by_size_before_the_time_limit():
    h = Harness()
    for i in range(3):
        h.kafka.produce(0, f"a{i}:x".encode())
    h.step()
    assert h.written() == [("a0", "x"), ("a1", "x"), ("a2", "x")]
    assert h.kafka.committed == {TP0: 3}


def test_sinks_batch_below_size_waits_for_max_wait_then_flushes():
    h = Harness()
    h.kafka.produce(1, b"b:1")
    h.step()
    assert h.written() == [] and h.kafka.committed == {}
    h.step(advance=0.5)
    assert h.written() == []
    h.step(advance=0.6)
    assert h.written() == [("b", "1")]
    assert h.kafka.committed == {TP1: 1}


def test_sinks_clickhouse_down_holds_batch_pauses_and_commits_nothing_until_insert_succeeds():
    h = Harness()
    h.engine.down = True
    for i in range(3):
        h.kafka.produce(0, f"k{i}:v".encode())
    h.step()
    assert h.kafka.committed == {}
    assert h.kafka.paused_set == {TP0, TP1}
    # More traffic while down: paused partitions are not fetched (memory stays at one batch).
    for i in range(3, 50):
        h.kafka.produce(0, f"k{i}:v".encode())
    for _ in range(20):
        h.step(advance=0.3)
    assert h.kafka.positions[TP0] == 3
    assert h.kafka.committed == {}
    h.engine.down = False
    h.step(advance=5)
    assert h.kafka.committed == {TP0: 3}
    assert h.kafka.paused_set == set()
    h.step(n=20, advance=1.1)
    assert h.kafka.committed == {TP0: 50}
    assert [k for k, _ in h.written()] == sorted(f"k{i}" for i in range(50))


def test_sinks_insert_whose_answer_was_lost_is_retried_with_the_same_token_and_adds_nothing():
    h = Harness()
    h.engine.lose_answers = 1  # written, but the sink hears a network error
    for i in range(3):
        h.kafka.produce(0, f"k{i}:v".encode())
    h.step()
    assert h.kafka.committed == {}
    h.step(advance=5)
    assert h.kafka.committed == {TP0: 3}
    assert h.written() == [("k0", "v"), ("k1", "v"), ("k2", "v")]


def test_sinks_retry_without_tokens_inserts_only_the_rows_not_there_yet():
    # An 18.16 server has no deduplication tokens: the retry asks what is there first.
    h = Harness()
    h.engine.ignores_tokens = True
    h.engine.lose_answers = 1
    asked = []

    def not_there(table, rows):
        asked.append(table)
        present = set(h.engine.rows(table.rsplit(".", 1)[-1]))
        return [r for r in rows if r not in present]

    h.sink.retry_filter = not_there
    for i in range(3):
        h.kafka.produce(0, f"k{i}:v".encode())
    h.step()
    h.step(advance=5)
    assert h.kafka.committed == {TP0: 3}
    assert h.written() == [("k0", "v"), ("k1", "v"), ("k2", "v")]
    assert asked == ["t"]  # only the table whose outcome was unknown, only on the retry


def test_sinks_tokens_follow_content_not_offsets_alone():
    # A topic deleted and made again restarts at offset 0: other records at the same
    # offsets must not be taken for a retry of the old insert.
    h = Harness()
    for i in range(3):
        h.kafka.produce(0, f"old{i}:v".encode())
    h.step()
    again = Harness(engine=h.engine)
    for i in range(3):
        again.kafka.produce(0, f"new{i}:v".encode())
    again.step()
    assert {k for k, _ in again.written()} == {"old0", "old1", "old2", "new0", "new1", "new2"}


def test_sinks_backoff_grows_and_is_capped():
    h = Harness(retry_initial_s=0.5, retry_max_s=2.0)
    h.engine.down = True
    for i in range(3):
        h.kafka.produce(0, f"k{i}:v".encode())
    h.step()
    delays = []
    for _ in range(5):
        delays.append(h.sink._retry_at - h.clock.now)
        h.clock.now = h.sink._retry_at
        h.loop.run_once()
    assert delays[0] < delays[1] < delays[2]
    assert max(delays) <= 2.0 * 1.2 + 1e-9


def test_sinks_failed_second_table_retries_only_that_table():
    def two_tables(raw):
        k, v = raw.decode().split(":")
        return {"t": [(k, v)], "u": [(k,)]}

    h = Harness(tables=("t", "u"), columns={"t": ("k", "v"), "u": ("k",)}, rows=two_tables)
    original = h.engine.insert
    calls = {"u": 0}

    def flaky(table, columns, data, dedup_token=None):
        if table.endswith(".u"):
            calls["u"] += 1
            if calls["u"] == 1:
                from schemas.clickhouse.engine import ClickHouseUnavailable

                raise ClickHouseUnavailable("blip")
        return original(table, columns, data, dedup_token)

    h.engine.insert = flaky
    for i in range(3):
        h.kafka.produce(0, f"k{i}:v".encode())
    h.step()
    assert h.kafka.committed == {}
    h.step(advance=5)
    assert h.kafka.committed == {TP0: 3}
    tables = [t for t, _c, _d in h.engine.inserts]
    assert tables == ["db.t", "db.u"]  # t not inserted twice


def test_sinks_undecodable_record_dead_lettered_with_reason_then_committed():
    h = Harness()
    h.kafka.produce(0, b"good:1")
    h.kafka.produce(0, b"garbage", key=b"learner-1")
    h.kafka.produce(0, b"good:2")
    h.step()
    h.step(advance=1.1)
    assert h.written() == [("good", "1"), ("good", "2")]
    assert len(h.producer.sent) == 1
    topic, key, value, headers = h.producer.sent[0]
    assert (topic, key, value) == ("t.xapi.deadletter", b"learner-1", b"garbage")
    hdr = dict(headers)
    assert hdr["rule"] == b"test.shape" and b"no colon" in hdr["reason"] and hdr["source"] == f"{TOPIC}/0/1".encode()
    assert h.kafka.committed == {TP0: 3}


def test_sinks_dead_letter_not_acknowledged_blocks_commit_until_resent():
    h = Harness()
    h.producer.fail_next = 1
    h.kafka.produce(0, b"garbage")
    h.kafka.produce(0, b"a:1")
    h.kafka.produce(0, b"b:1")
    h.step()
    h.step(advance=1.1)
    assert len(h.engine.inserts) == 1
    assert h.kafka.committed == {}, "committed past a dead letter Kafka did not hold"
    h.step(advance=5)
    assert h.kafka.committed == {TP0: 3}
    assert [s[2] for s in h.producer.sent] == [b"garbage"]


def test_sinks_dead_letter_storm_stops_without_committing():
    h = Harness(storm_min=5, storm_window=10, storm_share=0.5, max_rows=1000)
    for i in range(10):
        h.kafka.produce(0, f"bad{i}".encode())
    with pytest.raises(DeadLetterStorm):
        h.step()
    assert h.kafka.committed == {}


def test_sinks_batch_rejected_by_clickhouse_isolates_the_bad_record():
    h = Harness()
    h.engine.poison = "evil"
    h.kafka.produce(0, b"fine:1")
    h.kafka.produce(0, b"evil:2")
    h.kafka.produce(0, b"fine2:3")
    h.step()
    assert h.written() == [("fine", "1"), ("fine2", "3")]
    assert [s[2] for s in h.producer.sent] == [b"evil:2"]
    assert dict(h.producer.sent[0][3])["rule"] == b"clickhouse.rejected"
    assert h.kafka.committed == {TP0: 3}


def test_sinks_missing_table_stops_the_sink_instead_of_dead_lettering():
    h = Harness()
    h.engine.poison = "x"
    h.engine.error_code = 60  # UNKNOWN_TABLE
    for i in range(3):
        h.kafka.produce(0, f"x:{i}".encode())
    with pytest.raises(SinkMisconfigured):
        h.step()
    assert h.producer.sent == [] and h.kafka.committed == {}


def test_sinks_revoked_partition_records_dropped_not_committed():
    h = Harness(max_rows=100)
    h.kafka.produce(0, b"a:1")
    h.kafka.produce(1, b"b:1")
    h.step()  # both in the batch, not due yet
    h.kafka.pending_rebalance = ({TP1}, set())
    h.step(advance=1.1)
    assert h.written() == [("a", "1")]
    assert h.kafka.committed == {TP0: 1}
    assert TP1 not in h.kafka.committed


def test_sinks_rebalance_during_outage_pauses_newly_assigned_partitions():
    h = Harness(partitions=3)
    h.kafka.assigned = {TP0}
    h.engine.down = True
    for i in range(3):
        h.kafka.produce(0, f"k{i}:v".encode())
    h.step()
    tp2 = TopicPartition(TOPIC, 2)
    h.kafka.produce(2, b"z:1")
    h.kafka.pending_rebalance = (set(), {tp2})
    h.step(advance=0.1)
    assert tp2 in h.kafka.paused_set
    assert h.kafka.positions[tp2] == 0


def test_sinks_eager_reassignment_seeks_back_to_first_dropped_offset():
    h = Harness(cooperative=False, max_rows=100)
    h.kafka.produce(0, b"a:1")
    h.kafka.produce(0, b"a:2")
    h.step()
    # Eager: everything revoked, then the same partitions assigned again (state kept).
    h.kafka.pending_rebalance = ({TP0, TP1}, {TP0, TP1})
    h.kafka.positions[TP0] = 2  # kept position, as kafka-python does for retained partitions
    h.loop.run_once()
    assert (TP0, 0) in h.kafka.seeks
    h.step(advance=1.1)
    h.step(advance=1.1)
    assert h.written() == [("a", "1"), ("a", "2")]
    assert h.kafka.committed[TP0] == 2


def test_sinks_commit_refused_after_rebalance_drops_batch_without_reinserting():
    h = Harness()
    h.kafka.commit_error = CommitFailedError("group rebalanced")
    for i in range(3):
        h.kafka.produce(0, f"k{i}:v".encode())
    h.step()
    assert len(h.engine.inserts) == 1
    assert h.kafka.committed == {}
    h.step(advance=2)
    assert len(h.engine.inserts) == 1  # the rows were written once; a replay would rewrite keys


def test_sinks_transient_commit_failure_retries_commit_only():
    h = Harness()
    h.kafka.commit_error = KafkaError("coordinator not available")
    for i in range(3):
        h.kafka.produce(0, f"k{i}:v".encode())
    h.step()
    assert h.kafka.committed == {}
    h.step(advance=5)
    assert h.kafka.committed == {TP0: 3}
    assert len(h.engine.inserts) == 1


def test_sinks_progress_caught_up_time_advances_only_while_caught_up():
    h = Harness(max_rows=2)
    h.kafka.produce(0, b"a:1")
    h.kafka.produce(0, b"a:2")
    h.step()  # flushes TP0 (2 rows) and publishes progress of both partitions
    assert h.kafka.committed == {TP0: 2}
    first = h.progress[-1]
    assert first[0][0] == 2 and first[0][1] is not None  # TP0 caught up at its end offset
    assert first[1][0] == 0 and first[1][1] is not None  # TP1 empty: caught up too
    h.kafka.produce(1, b"b:1")
    h.kafka.pause(TP1)  # not consumed: TP1 now lags behind its end offset
    time.sleep(0.01)
    h.step(advance=1.5)
    last = h.progress[-1]
    assert last[0][1] > first[0][1], "a caught-up partition's time advances"
    assert last[1] == first[1], "a lagging partition keeps the last time it was caught up"


class _HighWatermarks:
    """What a ``read_uncommitted`` client reports: the log's end plus records ``held`` back from
    ``read_committed`` readers (an open transaction, or one acknowledged before its markers)."""

    def __init__(self, h: Harness) -> None:
        self.h = h
        self.held: dict[TopicPartition, int] = {}

    def end_offsets(self, tps, timeout_ms=None) -> dict[TopicPartition, int]:
        return {tp: len(self.h.kafka.logs[tp]) + self.held.get(tp, 0) for tp in tps}


def test_sinks_progress_is_not_caught_up_below_the_high_watermark():
    ends: list[_HighWatermarks] = []
    h = Harness(max_rows=2, ends_factory=lambda _c: ends[0])
    ends.append(_HighWatermarks(h))
    ends[0].held[TP0] = 2  # two records of a transaction the readers cannot see yet
    h.kafka.produce(0, b"a:1")
    h.kafka.produce(0, b"a:2")
    h.step()  # writes and commits the two readable records, publishes progress
    assert h.kafka.committed == {TP0: 2}
    assert h.progress[-1][0] == (2, None), "caught up to the readable end only: not caught up"
    assert h.progress[-1][1][1] is not None  # TP1: nothing held, caught up
    # The transaction is committed: its records become readable, and once they are written
    # the partition is caught up to the time the held records were measured.
    ends[0].held.clear()
    h.kafka.produce(0, b"t:1")
    h.kafka.produce(0, b"t:2")
    h.step(advance=1.5)
    assert h.kafka.committed == {TP0: 4}
    assert h.progress[-1][0][1] is not None


def test_sinks_run_stops_flushes_and_closes_on_stop_event():
    h = Harness(max_rows=100)
    h.kafka.produce(0, b"a:1")
    stop = threading.Event()
    h.loop._consumer_factory = lambda _c, _l: h.kafka
    orig_round = h.loop.run_once

    def round_then_stop():
        orig_round()
        stop.set()

    h.loop.run_once = round_then_stop
    h.sink.run(stop)
    assert h.written() == [("a", "1")]
    assert h.kafka.committed == {TP0: 1}
    assert h.kafka.closed
    assert not h.engine.closed, "a shared engine stays open for the process's other users"


def test_sinks_run_closes_a_connection_of_its_own_when_it_stops():
    h = Harness(max_rows=100, owns_engine=True)
    stop = threading.Event()
    stop.set()
    h.loop._consumer_factory = lambda _c, _l: h.kafka
    h.sink.run(stop)
    assert h.engine.closed


class GatedEngine(FakeEngine):
    """Inserts block until ``gate`` opens (a slow ClickHouse), optionally failing while closed."""

    def __init__(self, fail_while_closed: bool = False) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.fail_while_closed = fail_while_closed

    def insert(self, table, columns, data, dedup_token=None):
        self.entered.set()
        if self.fail_while_closed and not self.gate.is_set():
            from schemas.clickhouse.engine import ClickHouseUnavailable

            raise ClickHouseUnavailable("down")
        self.gate.wait(10)
        return super().insert(table, columns, data, dedup_token)


def _threaded(engine: FakeEngine, **config) -> Harness:
    return Harness(runner=lambda fn: threading.Thread(target=fn, daemon=True).start(), engine=engine, **config)


def _until(h: Harness, predicate, steps: int = 400, advance: float = 0.05) -> None:
    for _ in range(steps):
        if predicate():
            return
        h.step(advance=advance)
        time.sleep(0.002)
    raise AssertionError("condition not reached")


def test_sinks_next_batch_is_read_while_one_is_written_and_commits_stay_in_order():
    h = _threaded(GatedEngine())
    for i in range(3):
        h.kafka.produce(0, f"a{i}:x".encode())
    h.step()  # batch 1 handed to the writer, which blocks in insert
    assert h.engine.entered.wait(2)
    for i in range(3, 5):
        h.kafka.produce(0, f"a{i}:x".encode())
    h.step()
    assert h.kafka.positions[TP0] == 5, "the next records are read while the first batch is written"
    assert h.kafka.committed == {}, "nothing committed before ClickHouse acknowledged"
    h.engine.gate.set()
    _until(h, lambda: h.kafka.committed.get(TP0) == 5)
    assert [c[TP0] for c in h.kafka.commits] == [3, 5]
    assert [k for k, _ in h.written()] == [f"a{i}" for i in range(5)]


def test_sinks_failed_write_is_retried_before_the_records_read_meanwhile():
    h = _threaded(GatedEngine(fail_while_closed=True), retry_initial_s=0.2, retry_max_s=0.4)
    for i in range(3):
        h.kafka.produce(0, f"a{i}:x".encode())
    h.step()
    assert h.engine.entered.wait(2)
    _until(h, lambda: h.sink._paused)  # the failure came back: partitions paused
    h.kafka.produce(0, b"late:x")
    for _ in range(5):
        h.step(advance=0.05)
    assert h.kafka.committed == {}
    h.engine.gate.set()
    _until(h, lambda: h.kafka.committed.get(TP0) == 4)
    assert all(a[TP0] < b[TP0] for a, b in zip(h.kafka.commits, h.kafka.commits[1:], strict=False))
    assert sorted(k for k, _ in h.written()) == ["a0", "a1", "a2", "late"]


def test_sinks_partition_revoked_while_its_batch_is_written_is_not_committed():
    h = _threaded(GatedEngine(), max_rows=2)
    h.kafka.produce(0, b"a:1")
    h.kafka.produce(1, b"b:1")
    h.step()
    assert h.engine.entered.wait(2)
    h.kafka.pending_rebalance = ({TP1}, set())
    h.step()
    h.engine.gate.set()
    _until(h, lambda: TP0 in h.kafka.committed)
    assert TP1 not in h.kafka.committed


def test_sinks_commit_retry_keeps_polling_so_a_rebalance_can_complete():
    # kafka-python answers RebalanceInProgressError until poll() finishes the rebalance:
    # a sink that stopped polling while its commit is pending would never commit again.
    h = Harness(max_rows=3)
    for i in range(6):
        h.kafka.produce(0, f"k{i}:v".encode())
    h.kafka.commit_error = KafkaError("rebalance in progress")
    h.step()  # batch 1 written, commit refused
    assert h.kafka.committed == {}
    polls = []
    original = h.kafka.poll
    h.kafka.poll = lambda *a, **k: polls.append(1) or original(*a, **k)
    h.step(n=5, advance=0.3)
    assert polls, "poll() must run while the commit is pending"
    h.step(n=30, advance=0.5)
    assert h.kafka.committed == {TP0: 6}
    assert [c[TP0] for c in h.kafka.commits] == [6]


def test_sinks_stalled_rebalance_replaces_the_consumer_and_rereads_uncommitted_records():
    from kafka.structs import MemberState

    h = Harness(max_rows=100, max_wait_s=60, rebalance_stall_s=30)
    h.kafka.produce(0, b"a:1")
    h.step()  # in the batch, not written yet
    stuck = h.kafka
    stuck.group_metadata = lambda: type("M", (), {"state": MemberState.REBALANCING})()
    h.step(advance=10)  # first seen unsettled
    h.step(advance=25)
    assert h.consumer is stuck, "a rebalance may take a while"
    h.step(advance=10)  # unsettled for 35 s: replaced
    assert h.consumer is not stuck and stuck.closed and h.loop.consumer_restarts == 1
    assert not h.sink._batch, "uncommitted records were dropped, to be re-read by the new consumer"
    assert stuck.committed == {}
    h.consumer.logs = stuck.logs  # the new consumer sees the same partitions, from the committed offsets
    h.step()
    h.step(advance=61)
    assert h.written() == [("a", "1")] and h.consumer.committed == {TP0: 1}


def test_sinks_idle_poll_blocks_until_the_next_progress_measurement_not_a_tenth_of_a_second():
    # kafka-python wakes its network thread at every poll: ten empty rounds a second cost an
    # idle sink as much CPU as its fetches. Records end a poll as soon as they arrive, so an
    # idle sink blocks until its next due work, the progress measurement.
    h = Harness(progress_interval_s=1.0)
    h.step()  # measures progress (due at once), so the next is due 1 s from now
    assert h.progress, "progress is published on the first round"
    h.clock.advance(0.25)
    h.step()
    assert h.kafka.polls[-1] == 750, h.kafka.polls
    h.kafka.produce(0, b"a:1")
    h.step()
    h.step()  # a batch is open: polls stay short so that it closes on time
    assert h.kafka.polls[-1] <= 100, h.kafka.polls


def test_sinks_idle_poll_is_never_longer_than_a_second_nor_zero():
    h = Harness(progress_interval_s=30.0)
    h.step()
    h.step()
    assert h.kafka.polls[-1] == 1000, "at most a second: the loop also watches its group membership"
    h.clock.advance(30.0)
    h.step()  # progress was due: measured now, the poll before it still given time
    assert min(h.kafka.polls) > 0, h.kafka.polls


def test_sinks_a_record_is_covered_by_the_commit_of_the_batch_it_is_in_under_continuous_traffic():
    # Consistent-Through: a partition is caught up to a time once a commit reaches the end
    # measured then. Under continuous traffic the end measured at a commit is already past it,
    # so only a measurement taken while the batch was open can cover that batch's records.
    ends: list[_HighWatermarks] = []
    h = Harness(max_rows=100, max_wait_s=1.0, progress_interval_s=1.0, busy_progress_interval_s=0.25,
                ends_factory=lambda _c: ends[0])  # fmt: skip
    ends.append(_HighWatermarks(h))
    h.step()  # idle: measured once, the next measurement a second away
    time.sleep(0.01)
    h.kafka.produce(0, b"a:1")
    acked_ms = int(time.time() * 1000)
    time.sleep(0.01)
    h.step(advance=0.3)  # the record opens a batch
    h.step(advance=0.3)  # a quarter of a second later: measured while the batch is open
    ends[0].held[TP0] = 5  # more records acknowledged, not fetched yet when the batch is written
    h.step(advance=0.8)  # the batch's window has passed: written and committed
    assert h.kafka.committed == {TP0: 1}
    assert h.progress[-1][0][1] >= acked_ms, "the record's own batch made the partition caught up past it"
    h.step(advance=0.1)
    assert h.kafka.polls[-1] >= 500, "nothing held: the idle pace again"


def test_sinks_without_a_busy_interval_the_batch_after_the_records_covers_them():
    ends: list[_HighWatermarks] = []
    h = Harness(max_rows=100, max_wait_s=1.0, progress_interval_s=1.0, ends_factory=lambda _c: ends[0])
    ends.append(_HighWatermarks(h))
    h.step()
    time.sleep(0.01)
    h.kafka.produce(0, b"a:1")
    acked_ms = int(time.time() * 1000)
    time.sleep(0.01)
    h.step(advance=0.3)
    h.step(advance=0.3)
    ends[0].held[TP0] = 5
    h.step(advance=0.8)
    assert h.kafka.committed == {TP0: 1}
    assert h.progress[-1][0][1] < acked_ms


def _phase_count(sink: str, phase: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("learnpulse_sink_batch_phase_seconds_count", {"sink": sink, "phase": phase}) or 0.0


def test_sinks_batch_phases_are_timed_one_observation_per_written_batch():
    def totals_step(_engine, _rows):
        pass

    phases = ("filling", "rows", "insert", "totals_step", "commit", "progress")
    before = {p: _phase_count("phased", p) for p in phases}
    h = Harness(name="phased", after_insert=(totals_step,))
    for i in range(3):
        h.kafka.produce(0, f"a{i}:x".encode())
    h.step()
    assert h.written() == [("a0", "x"), ("a1", "x"), ("a2", "x")]
    assert {p: _phase_count("phased", p) - before[p] for p in phases} == dict.fromkeys(phases, 1.0)


def test_sinks_commit_passes_the_transaction_marker_after_the_batchs_records():
    # A read_committed consumer's position passes the commit marker that follows a
    # transaction's records (kafka-python skips it); the commit takes the position, as Kafka's
    # own clients do, not the last record + 1, which leaves the group one offset behind.
    h = Harness(max_rows=100, max_wait_s=1.0)
    h.kafka.produce(0, b"a:1")
    h.kafka.produce(0, b"b:2")
    h.kafka.marker(0)
    h.step()
    h.step(advance=1.1)
    assert h.written() == [("a", "1"), ("b", "2")]
    assert h.kafka.committed == {TP0: 3}


def _now_ms() -> int:
    return int(time.time() * 1000)


def test_sinks_a_due_batch_reads_up_to_the_ends_measured_when_it_fell_due_before_it_closes():
    # Consistent-Through: the ends measured when the batch falls due are read before it
    # closes, so its own commit covers every record Kafka acknowledged before that instant;
    # closed at once, a transaction still open then would wait for the next batch's commit.
    h = Harness(max_rows=100, max_wait_s=1.0, progress_interval_s=30.0, closing_wait_s=0.25)
    h.step()
    h.kafka.produce(0, b"a:1")
    h.kafka.marker(0)
    h.kafka.open_transaction(0)
    h.kafka.produce(0, b"b:2")  # acknowledged by the broker, its transaction not committed yet
    time.sleep(0.01)
    acked_ms = _now_ms()
    time.sleep(0.01)
    h.step()  # a:1 opens the batch
    h.step(advance=1.1)  # due: the ends measured (3), only 2 read: the batch stays open
    assert h.kafka.committed == {} and h.written() == []
    h.kafka.commit_open(0)
    reached, cut = _phase_count("test", "closing"), _phase_count("test", "closing_cut")
    h.step()  # b:2 and the marker read: up to the measured end, so the batch closes
    assert (_phase_count("test", "closing") - reached, _phase_count("test", "closing_cut") - cut) == (1, 0)
    assert h.written() == [("a", "1"), ("b", "2")]
    assert h.kafka.committed == {TP0: 4}
    assert h.progress[-1][0][1] >= acked_ms, "the batch's own commit made the partition caught up past b:2"


def test_sinks_the_closing_wait_is_bounded_by_a_transaction_left_open():
    h = Harness(max_rows=100, max_wait_s=1.0, progress_interval_s=30.0, closing_wait_s=0.25)
    h.step()
    h.kafka.produce(0, b"a:1")
    h.kafka.marker(0)
    h.kafka.open_transaction(0)  # a producer killed mid-transaction: open until the broker aborts it
    h.kafka.produce(0, b"b:2")
    h.step()
    h.step(advance=1.1)
    assert h.kafka.committed == {}
    cut = _phase_count("test", "closing_cut")
    h.step(advance=0.3)
    assert h.written() == [("a", "1")] and h.kafka.committed == {TP0: 2}
    assert _phase_count("test", "closing_cut") - cut == 1


def test_sinks_a_batch_behind_by_more_than_it_can_hold_closes_without_the_wait():
    h = Harness(max_rows=5, max_wait_s=1.0, progress_interval_s=30.0, closing_wait_s=0.25)
    h.step()
    h.kafka.produce(0, b"a:1")
    h.kafka.open_transaction(0)
    for i in range(10):
        h.kafka.produce(0, f"b{i}:x".encode())
    h.step()
    h.step(advance=1.1)  # ten records to read before the measured end, room for four: no wait
    assert h.written() == [("a", "1")] and h.kafka.committed == {TP0: 1}
