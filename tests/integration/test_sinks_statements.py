"""The statements sink against the real broker and both real ClickHouse engines.

Duplicates (the same statement in two envelopes), replays (the same envelope twice),
voids in every arrival order, dead letters, and the consistent-through promise.
Helpers here are shared by the other ``test_sinks_*`` modules.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import orjson
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError

from learnpulse.local_secrets import pseudonym_key
from learnpulse.pipeline import open_clickhouse, start_sinks
from learnpulse.settings import KafkaSettings, Settings
from producers.publisher import school_authority
from reporting.progress import consistent_through, freshness_seconds
from schemas.envelope import StatementEntry, StatementEnvelope
from schemas.identity import pseudonym
from schemas.topics import Topic
from schemas.xapi.canonical import canonicalize
from schemas.xapi.timefmt import parse_ms
from sinks.rows import VOIDED_VERB
from tests.conftest import wait_for

VERBS = ("answered", "completed", "experienced", "attempted")
BASE_MS = 1_767_225_600_000  # 2026-01-01


def agent(name: str) -> dict:
    return {"objectType": "Agent", "mbox": f"mailto:{name}@example.org", "name": name.title()}


def make_statement(school: str, who: dict, ts_ms: int, rng: random.Random, **extra) -> dict:
    verb = rng.choice(VERBS)
    s = {
        "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "actor": who,
        "verb": {"id": f"http://adlnet.gov/expapi/verbs/{verb}"},
        "object": {"id": f"https://c.example/{school}/q{rng.randrange(5)}"},
        "timestamp": datetime.fromtimestamp(ts_ms / 1000, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
    }
    if verb == "answered":
        ok = rng.random() < 0.6
        s["result"] = {"success": ok, "score": {"scaled": 1.0 if ok else 0.0}, "duration": "PT30S"}
    if verb == "completed":
        s["result"] = {"completion": True}
    s.update(extra)
    return canonicalize(s, authority=school_authority(school), stored_ms=ts_ms + 500)


def envelope(settings: Settings, school: str, who: dict, statements: list[dict], course: str = "course-1") -> bytes:
    secret = pseudonym_key(settings)
    entries = tuple(StatementEntry(course, f"{course}/cohort-{hash(who['mbox']) % 2}", s) for s in statements)
    return StatementEnvelope(school, pseudonym(secret, who), int(time.time() * 1000), entries).encode()


def learner_of(settings: Settings, who: dict) -> str:
    return pseudonym(pseudonym_key(settings), who)


class Publisher:
    """Raw bytes onto a topic, acknowledged (acks=all) before ``flush`` returns."""

    def __init__(self, kafka: KafkaSettings, topic: Topic = Topic.STATEMENTS) -> None:
        self.topic = topic.physical(kafka.topic_prefix)
        self.producer = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all", linger_ms=5)

    def send(self, key: bytes, value: bytes) -> None:
        self.producer.send(self.topic, key=key, value=value)

    def flush(self) -> None:
        self.producer.flush(30)

    def close(self) -> None:
        self.producer.close(10)


class GroupOffsets:
    """Committed offsets of a consumer group versus the topic's end offsets."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self.admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
        self.consumer = KafkaConsumer(bootstrap_servers=kafka.bootstrap_servers)

    def lag(self, group: str, topic: str) -> int | None:
        """Messages not yet committed by ``group`` (None while the group coordinator is not ready)."""
        parts = [TopicPartition(topic, p) for p in self.consumer.partitions_for_topic(topic) or ()]
        ends = self.consumer.end_offsets(parts)
        try:
            offsets = self.admin.list_group_offsets(group).get(group, {})
        except KafkaError:
            return None
        committed = {tp: om.offset for tp, om in offsets.items()}
        return sum(max(0, ends[tp] - max(0, committed.get(tp, 0))) for tp in parts)

    def committed(self, group: str) -> int:
        """Sum of ``group``'s committed offsets (-1 while the coordinator is not ready)."""
        try:
            offsets = self.admin.list_group_offsets(group).get(group, {})
        except KafkaError:
            return -1
        return sum(max(0, om.offset) for om in offsets.values())

    def close(self) -> None:
        self.consumer.close()
        self.admin.close()


def sink_group(kafka: KafkaSettings, name: str) -> str:
    return f"{kafka.topic_prefix}learnpulse-sink-{name}"


@contextmanager
def running_sinks(settings: Settings, names: list[str], group_id: str | None = None) -> Iterator:
    ch = open_clickhouse(settings)
    sinks = start_sinks(settings, ch, names, group_id)
    try:
        yield ch, sinks
    finally:
        sinks.join()
        ch.close()
    if sinks.errors:
        raise AssertionError(f"sink failed: {sinks.errors[0]!r}")


def wait_committed(settings: Settings, sinks, name: str, timeout: float = 120, topic: Topic = Topic.STATEMENTS) -> None:
    wait_committed_group(settings, sinks, sink_group(settings.kafka, name), timeout, topic)


def wait_committed_group(
    settings: Settings, sinks, group: str, timeout: float = 120, topic: Topic = Topic.STATEMENTS
) -> None:
    k = settings.kafka
    offsets = GroupOffsets(k)

    def done():
        if sinks.errors:
            pytest.fail(f"sink failed: {sinks.errors[0]!r}")
        return offsets.lag(group, topic.physical(k.topic_prefix)) == 0

    try:
        wait_for(done, timeout, f"group {group} to commit everything", interval=0.5)
    finally:
        offsets.close()


def scalar(ch, sql: str, params=None) -> int:
    ((value,),) = ch.query(sql, params)
    return int(value)


@pytest.mark.kafka
def test_sinks_statements_insert_with_duplicate_id_and_replayed_envelopes(settings):
    rng = random.Random(1)
    learners = [agent(f"learner{i}") for i in range(40)]
    statements: dict[str, tuple[dict, dict]] = {}
    pub = Publisher(settings.kafka)
    sent_envelopes = []
    for n in range(100):
        who = rng.choice(learners)
        batch = [make_statement("s-1", who, BASE_MS + n * 60_000 + i, rng) for i in range(rng.randint(1, 6))]
        for s in batch:
            statements[s["id"]] = (s, who)
        raw = envelope(settings, "s-1", who, batch)
        sent_envelopes.append((who, raw))
        pub.send(learner_of(settings, who).encode(), raw)
    # Duplicates: 30 statements sent again, regrouped into new envelopes.
    for s, who in rng.sample(list(statements.values()), 30):
        pub.send(learner_of(settings, who).encode(), envelope(settings, "s-1", who, [s]))
    # Replays: 10 envelopes sent again byte for byte.
    for who, raw in rng.sample(sent_envelopes, 10):
        pub.send(learner_of(settings, who).encode(), raw)
    pub.flush()
    pub.close()
    n = len(statements)

    with running_sinks(settings, ["statements"]) as (ch, sinks):
        wait_committed(settings, sinks, "statements")
        assert scalar(ch, "SELECT count() FROM {db}.statements FINAL") == n
        assert scalar(ch, "SELECT uniqExact(statement_id) FROM {db}.statements") == n
        assert scalar(ch, "SELECT count() FROM {db}.statements_raw FINAL") == n
        assert scalar(ch, "SELECT uniqExactMerge(statements) FROM {db}.activity_daily") == n
        assert scalar(ch, "SELECT uniqExactMerge(learners) FROM {db}.activity_daily") == len(
            {learner_of(settings, who) for _s, who in statements.values()}
        )
        assert scalar(ch, "SELECT count() FROM {db}.xapi_events_all") == n
        assert scalar(ch, "SELECT count() FROM {db}.lrs_statement_ids FINAL") == n
        # The rollup equals a FINAL count for every (course, day), not only in total.
        by_day = ch.query(
            "SELECT course, toString(day), uniqExactMerge(statements) FROM {db}.activity_daily GROUP BY course, day"
            " ORDER BY course, day"
        )
        direct = ch.query(
            # (toStartOfDay: 18.16 cannot select the sorting-key expression toDate(timestamp) under FINAL)
            "SELECT course, toString(toDate(toStartOfDay(timestamp)) AS d), count() FROM {db}.statements FINAL"
            " GROUP BY course, d ORDER BY course, d"
        )
        assert [tuple(map(str, r)) for r in by_day] == [tuple(map(str, r)) for r in direct]
        # Raw JSON is the statement as stored.
        sid = next(iter(statements))
        (raw,) = ch.query(
            "SELECT any(raw) FROM {db}.statements_raw WHERE statement_id = toUUID({id:String})", {"id": sid}
        )
        assert orjson.loads(raw[0]) == statements[sid][0]


def _accepted_again(school: str, st: dict, stored_ms: int) -> dict:
    """What a gateway stores when a client retries a statement it stored but never confirmed."""
    offered = {k: v for k, v in st.items() if k not in ("stored", "authority", "version")}
    if st.get("timestamp") == st["stored"]:
        del offered["timestamp"]  # the LRS had set it from stored: it does so again
    return canonicalize(offered, authority=school_authority(school), stored_ms=stored_ms)


@pytest.mark.kafka
def test_sinks_statements_write_a_statement_accepted_twice_once_first_stored_wins(settings):
    # A gateway killed between its Kafka commit and recording the ids accepts the client's
    # retry again with a later stored: both copies reach the topic, in order, same key.
    rng = random.Random(3)
    learners = [agent(f"twice{i}") for i in range(6)]
    first: dict[str, tuple[dict, dict]] = {}
    pub = Publisher(settings.kafka)
    for n in range(30):
        who = rng.choice(learners)
        st = make_statement("s-1", who, BASE_MS + n * 60_000, rng)
        if n % 2:  # half without a timestamp of their own: it is stored, so it differs per copy
            st = _accepted_again("s-1", {k: v for k, v in st.items() if k != "timestamp"}, BASE_MS + n * 60_000)
        first[st["id"]] = (st, who)
        pub.send(learner_of(settings, who).encode(), envelope(settings, "s-1", who, [st]))
    # Ten retries land in the same batch as their first copy.
    for st, who in list(first.values())[:10]:
        again = _accepted_again("s-1", st, parse_ms(st["stored"]) + 30_000)
        pub.send(learner_of(settings, who).encode(), envelope(settings, "s-1", who, [again]))
    pub.flush()
    n = len(first)

    def check(ch):
        assert scalar(ch, "SELECT count() FROM {db}.statements_raw") == n
        assert scalar(ch, "SELECT count() FROM {db}.lrs_statements") == n
        assert scalar(ch, "SELECT count() FROM {db}.lrs_statement_ids") == n
        assert scalar(ch, "SELECT count() FROM {db}.xapi_events_all") == n
        assert scalar(ch, "SELECT count() FROM {db}.statements FINAL") == n
        assert scalar(ch, "SELECT uniqExactMerge(statements) FROM {db}.activity_daily") == n
        raw = dict(ch.query("SELECT toString(statement_id), raw FROM {db}.statements_raw"))
        assert {sid: orjson.loads(r) for sid, r in raw.items()} == {sid: st for sid, (st, _) in first.items()}

    with running_sinks(settings, ["statements"]) as (ch, sinks):
        wait_committed(settings, sinks, "statements")
        check(ch)
        # Twenty more retries, in later batches than their first copy.
        for st, who in list(first.values())[10:]:
            again = _accepted_again("s-1", st, parse_ms(st["stored"]) + 90_000)
            pub.send(learner_of(settings, who).encode(), envelope(settings, "s-1", who, [again]))
        pub.flush()
        pub.close()
        wait_committed(settings, sinks, "statements")
        check(ch)
    # A replay of the whole topic by a new consumer group adds no row to any table (not
    # even before merges): every statement is found written whole.
    replay = "replay-" + uuid.uuid4().hex[:6]
    with running_sinks(settings, ["statements"], group_id=replay) as (ch, sinks):
        wait_committed_group(settings, sinks, f"{replay}-statements")
        check(ch)
        assert scalar(ch, "SELECT count() FROM {db}.statements") == n


@pytest.mark.kafka
def test_sinks_statements_void_marks_target_in_any_arrival_order(settings):
    rng = random.Random(2)
    ada, bob, cid, teacher = agent("ada"), agent("bob"), agent("cid"), agent("teacher")
    pub = Publisher(settings.kafka)

    def send(school, who, batch):
        pub.send(learner_of(settings, who).encode(), envelope(settings, school, who, batch))
        pub.flush()

    def void(school, target_id, ts):
        return make_statement(
            school, teacher, ts, rng, verb={"id": VOIDED_VERB}, object={"objectType": "StatementRef", "id": target_id}
        )

    t1 = make_statement("s-1", ada, BASE_MS + 1_000, rng)
    t2 = make_statement("s-1", bob, BASE_MS + 2_000, rng)
    t3 = make_statement("s-1", cid, BASE_MS + 3_000, rng)
    t4 = make_statement("s-1", ada, BASE_MS + 4_000, rng)
    keep = make_statement("s-1", bob, BASE_MS + 5_000, rng)
    v1, v2 = void("s-1", t1["id"], BASE_MS + 10_000), void("s-1", t2["id"], BASE_MS + 11_000)
    v3 = make_statement(
        "s-1",
        cid,
        BASE_MS + 12_000,
        rng,
        verb={"id": VOIDED_VERB},
        object={"objectType": "StatementRef", "id": t3["id"]},
    )
    v4 = void("s-2", t4["id"], BASE_MS + 13_000)  # another school cannot void s-1's statement

    with running_sinks(settings, ["statements"]) as (ch, sinks):
        send("s-1", ada, [t1, t4])
        send("s-1", bob, [keep])
        wait_committed(settings, sinks, "statements")
        send("s-1", teacher, [v1, v2])  # t1 stored before its void; v2 before t2
        wait_committed(settings, sinks, "statements")
        send("s-1", bob, [t2])
        send("s-1", cid, [t3, v3])  # target and void in one envelope
        send("s-2", teacher, [v4])
        wait_committed(settings, sinks, "statements")
        pub.close()

        voided = dict(ch.query("SELECT toString(statement_id), voided FROM {db}.statements FINAL WHERE school = 's-1'"))
        assert {k: int(v) for k, v in voided.items()} == {
            t1["id"]: 1, t2["id"]: 1, t3["id"]: 1, t4["id"]: 0, keep["id"]: 0, v1["id"]: 0, v2["id"]: 0, v3["id"]: 0,
        }  # fmt: skip
        assert scalar(ch, "SELECT count() FROM {db}.statement_voids FINAL") == 4
        current = {r[0] for r in ch.query("SELECT toString(statement_id) FROM {db}.statements_current")}
        assert current == {t4["id"], keep["id"]}
        assert scalar(ch, "SELECT uniqExactIfMerge(voided) FROM {db}.activity_daily WHERE school = 's-1'") == 3


@pytest.mark.kafka
def test_sinks_statements_undecodable_records_go_to_the_deadletter_topic(settings):
    rng = random.Random(3)
    who = agent("ada")
    good = [make_statement("s-1", who, BASE_MS + i, rng) for i in range(3)]
    pub = Publisher(settings.kafka)
    pub.send(b"k1", b"\x00not json")
    wrong_version = orjson.dumps({"v": 99, "school": "s-1", "learner": "x", "received": 1, "statements": []})
    pub.send(b"k2", wrong_version)
    pub.send(learner_of(settings, who).encode(), envelope(settings, "s-1", who, good))
    pub.flush()
    pub.close()
    with running_sinks(settings, ["statements"]) as (ch, sinks):
        wait_committed(settings, sinks, "statements")
        assert scalar(ch, "SELECT count() FROM {db}.statements FINAL") == 3
    consumer = KafkaConsumer(
        Topic.DEADLETTER.physical(settings.kafka.topic_prefix),
        bootstrap_servers=settings.kafka.bootstrap_servers, auto_offset_reset="earliest", consumer_timeout_ms=5000,
    )  # fmt: skip
    letters = list(consumer)
    consumer.close()
    assert sorted((m.key, m.value) for m in letters) == [(b"k1", b"\x00not json"), (b"k2", wrong_version)]
    rules = sorted(dict(m.headers)["rule"].decode() for m in letters)
    assert rules == ["envelope.json", "envelope.version"]
    for m in letters:
        h = dict(m.headers)
        assert h["stage"] == b"sink:statements" and h["reason"] and h["source"].startswith(b"t")


@pytest.mark.kafka
def test_sinks_statements_readable_once_consistent_through_passes_their_ack(settings):
    rng = random.Random(4)
    learners = [agent(f"l{i}") for i in range(24)]
    with running_sinks(settings, ["statements"]) as (ch, _sinks):
        wait_for(lambda: consistent_through(ch) is not None, 60, "first progress of every partition")
        pub = Publisher(settings.kafka)
        n = 0
        for i in range(200):
            who = learners[i % len(learners)]
            batch = [make_statement("s-1", who, BASE_MS + i * 1000 + j, rng) for j in range(3)]
            pub.send(learner_of(settings, who).encode(), envelope(settings, "s-1", who, batch))
            n += len(batch)
        pub.flush()
        acked = datetime.now(UTC)
        pub.close()
        through = wait_for(
            lambda: (t := consistent_through(ch)) is not None and t >= acked and t,
            60,
            "consistent-through past the acks",
        )
        # The promise: everything Kafka acknowledged before `through` is readable now.
        assert scalar(ch, "SELECT count() FROM {db}.statements FINAL") == n
        assert through <= datetime.now(UTC)
        fresh = freshness_seconds(ch)
        assert fresh is not None and 0 <= fresh < 60


@pytest.mark.kafka
def test_sinks_consistent_through_advances_while_traffic_never_pauses(settings):
    """Caught-up progress must not wait for a lull: a busy LRS has none.

    A producer keeps every partition busy (an envelope every few ms) for the whole test;
    consistent-through must still pass the moment a marked statement was acknowledged,
    and that statement must then be readable. (Before: progress was measured only with
    an empty batch, so the header stood still while records kept arriving.)
    """
    rng = random.Random(5)
    learners = [agent(f"busy{i}") for i in range(48)]
    stop = threading.Event()
    sent = [0]

    def produce() -> None:
        pub = Publisher(settings.kafka)
        try:
            i = 0
            while not stop.is_set():
                who = learners[i % len(learners)]
                stmt = make_statement("s-1", who, BASE_MS + i * 1000, rng)
                pub.send(learner_of(settings, who).encode(), envelope(settings, "s-1", who, [stmt]))
                sent[0] += 1
                i += 1
                time.sleep(0.005)
            pub.flush()
        finally:
            pub.close()

    with running_sinks(settings, ["statements"]) as (ch, _sinks):
        wait_for(lambda: consistent_through(ch) is not None, 60, "first progress of every partition")
        producer = threading.Thread(target=produce, daemon=True)
        producer.start()
        try:
            wait_for(lambda: sent[0] > 500, 60, "traffic flowing")
            marker = make_statement("s-1", agent("marked"), BASE_MS, random.Random(6))
            pub = Publisher(settings.kafka)
            pub.send(learner_of(settings, agent("marked")).encode(), envelope(settings, "s-1", agent("marked"), [marker]))
            pub.flush()
            acked = datetime.now(UTC)
            pub.close()
            wait_for(lambda: (t := consistent_through(ch)) is not None and t >= acked, 90,
                     "consistent-through past the marked statement while traffic continues")
            assert producer.is_alive(), "the traffic paused: the test proves nothing"
            assert scalar(ch, "SELECT count() FROM {db}.statements FINAL WHERE statement_id = {id:UUID}",
                          {"id": marker["id"]}) == 1
        finally:
            stop.set()
            producer.join(60)


@pytest.mark.kafka
def test_sinks_consumer_joins_a_fresh_group_with_the_topic_in_its_metadata(kafka, monkeypatch):
    """The group leader's first assignment already knows every partition of the topic.

    A leader that joined before any metadata response assigned with an empty metadata
    snapshot, rejoined at the next response, and kafka-python 3.0.12 could hang that
    second SyncGroup until the member was evicted (a 30 s stall per sink start). So every
    assignment this consumer computes as leader must have been made with the topic's
    partitions in its snapshot — the first one above all.

    The number of generations is not the measure: on a loaded machine kafka-python can
    give up waiting for a SyncGroup answer when a short ``poll`` times out and simply join
    again (a second, harmless generation; measured at load average 20+), which says
    nothing about the metadata.
    """
    from kafka.coordinator.consumer import ConsumerCoordinator

    from sinks.consumer import SinkConfig
    from sinks.kafkaloop import kafka_consumer

    # kafka-python 3.0.12: the leader computes the assignment in _perform_assignment and
    # keeps the metadata snapshot it used as _assignment_snapshot (a later difference from
    # the current snapshot is what makes it rejoin). Record it at every assignment, from
    # the class: the first join may start on the client's own I/O thread.
    used: dict[str, list[dict]] = {}
    perform = ConsumerCoordinator._perform_assignment

    def recording(self, *args, **kwargs):
        result = perform(self, *args, **kwargs)
        snapshot = {t: set(p) for t, p in (self._assignment_snapshot or {}).items()}
        used.setdefault(self.group_id, []).append(snapshot)
        return result

    monkeypatch.setattr(ConsumerCoordinator, "_perform_assignment", recording)
    topic = Topic.STATEMENTS.physical(kafka.topic_prefix)
    everything = set(range(Topic.STATEMENTS.spec.partitions))
    for attempt in range(3):  # the race was timing-dependent: several fresh consumers
        assigned: list[set] = []

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked):
                pass

            def on_partitions_assigned(self, parts):
                assigned.append(set(parts))

        config = SinkConfig(name=f"join-{attempt}", bootstrap=kafka.bootstrap_servers, topic=topic,
                            group_id=f"join-{uuid.uuid4().hex[:8]}", deadletter_topic="unused", tables=())
        consumer = kafka_consumer(config.loop_config(), Listener())
        try:
            deadline = time.monotonic() + 120
            while not assigned and time.monotonic() < deadline:
                consumer.poll(timeout_ms=200)
            assert assigned, "no assignment within 120 s"
            # Past two heartbeat intervals: a rejoin for a metadata difference would have started by now.
            settle = time.monotonic() + 2.5 * max(1.0, config.session_timeout_ms / 4000)
            while time.monotonic() < settle:
                consumer.poll(timeout_ms=200)
            snapshots = used.get(config.group_id)
            assert snapshots, "this consumer, alone in its group, never computed an assignment"
            assert all(snapshot == {topic: everything} for snapshot in snapshots), (attempt, snapshots)
            assert {tp.partition for tp in consumer.assignment()} == everything
        finally:
            consumer.close(autocommit=False)


@pytest.mark.kafka
def test_sinks_consistent_through_never_passes_an_acknowledged_statement_held_by_an_open_transaction(settings):
    """A transaction left open (a gateway killed mid-transaction, open until Kafka aborts it)
    holds every later record of its partition from ``read_committed`` readers, acknowledged
    ones included. Consistent-Through must not pass those acknowledgements meanwhile.

    (Before: a partition's end was measured as a ``read_committed`` reader sees it, the last
    stable offset, which stops at the open transaction: the sink counted itself caught up and
    Consistent-Through moved on past statements nobody could read. The same happened, for a
    few milliseconds, after every commit: Kafka acknowledges a commit before it writes the
    transaction's markers.)
    """
    rng = random.Random(8)
    topic = Topic.STATEMENTS.physical(settings.kafka.topic_prefix)
    hung_who, acked_who = agent("hung"), agent("after-hung")
    hung = make_statement("s-1", hung_who, BASE_MS, rng)
    after = make_statement("s-1", acked_who, BASE_MS + 1000, rng)
    prefix = f"{settings.kafka.topic_prefix}test-open-txn-{uuid.uuid4().hex[:6]}"
    left_open = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, transactional_id=f"{prefix}-a",
                              transaction_timeout_ms=120_000)  # fmt: skip
    committed = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, transactional_id=f"{prefix}-b")
    count = "SELECT count() FROM {db}.statements FINAL WHERE statement_id = {id:UUID}"
    with running_sinks(settings, ["statements"]) as (ch, _sinks):
        try:
            wait_for(lambda: consistent_through(ch) is not None, 60, "first progress of every partition")
            left_open.init_transactions()
            left_open.begin_transaction()
            left_open.send(topic, partition=0, key=learner_of(settings, hung_who).encode(),
                           value=envelope(settings, "s-1", hung_who, [hung]))  # fmt: skip
            left_open.flush(30)
            committed.init_transactions()
            committed.begin_transaction()
            committed.send(topic, partition=0, key=learner_of(settings, acked_who).encode(),
                           value=envelope(settings, "s-1", acked_who, [after]))  # fmt: skip
            committed.commit_transaction()
            acked = datetime.now(UTC)
            # Several progress intervals and batch windows of the sink.
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline:
                through = consistent_through(ch)
                assert through is None or through < acked, (through, acked)
                time.sleep(0.25)
            assert scalar(ch, count, {"id": after["id"]}) == 0  # still held by the open transaction
            left_open.abort_transaction()
            wait_for(lambda: (t := consistent_through(ch)) is not None and t >= acked, 90,
                     "consistent-through past the acknowledged statement once the open transaction ended")
            assert scalar(ch, count, {"id": after["id"]}) == 1
            assert scalar(ch, count, {"id": hung["id"]}) == 0
        finally:
            left_open.close(10)
            committed.close(10)


@pytest.mark.kafka
def test_sinks_commit_reaches_the_partition_end_past_a_transactions_marker(settings):
    """Every gateway request is a Kafka transaction, and a transaction ends with a marker at
    the offset after its records. The sink commits its consumer's position, which passes
    the marker, so the group's lag reaches 0 (before: the last record + 1, one short for
    ever when no record followed, and a measured end was covered only by the next batch)."""
    rng = random.Random(9)
    topic = Topic.STATEMENTS.physical(settings.kafka.topic_prefix)
    who = agent("transactional")
    statements = [make_statement("s-1", who, BASE_MS + i * 1000, rng) for i in range(3)]
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers,
                             transactional_id=f"{settings.kafka.topic_prefix}test-marker-{uuid.uuid4().hex[:6]}")  # fmt: skip
    with running_sinks(settings, ["statements"]) as (ch, sinks):
        try:
            producer.init_transactions()
            producer.begin_transaction()
            for s in statements:
                producer.send(topic, partition=1, key=learner_of(settings, who).encode(),
                              value=envelope(settings, "s-1", who, [s]))  # fmt: skip
            producer.commit_transaction()
            wait_committed(settings, sinks, "statements")
            count = "SELECT count() FROM {db}.statements FINAL WHERE statement_id = {id:UUID}"
            assert [scalar(ch, count, {"id": s["id"]}) for s in statements] == [1, 1, 1]
        finally:
            producer.close(10)
