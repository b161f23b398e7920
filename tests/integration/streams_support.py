"""Helpers for the streams integration tests: build statements, produce envelopes, read derived topics."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError
from kafka.partitioner.default import murmur2

from learnpulse.commands.streams import worker_client_id, worker_instance_id
from learnpulse.settings import KafkaSettings, Settings, StreamsSettings
from schemas.envelope import StatementEntry, StatementEnvelope
from schemas.profile import COURSE_ACTIVITY_TYPE, SKILL_EXTENSION
from schemas.records import AlertRecord, CohortHealthRecord, EngagementRecord, MasteryRecord
from schemas.topics import Topic
from schemas.xapi.timefmt import format_ms
from tests.conftest import free_port, free_port_block

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MIN = 60_000
HOUR = 3_600_000
DAY = 86_400_000


def partition_for(key: bytes, partitions: int = Topic.STATEMENTS.spec.partitions) -> int:
    """The partition Kafka's default partitioner gives ``key`` (murmur2, as every producer here)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def learner_in(partition: int, avoid: set[str] = frozenset(), prefix: str = "") -> str:
    """A hex learner pseudonym whose messages land in ``partition``."""
    for i in range(100_000):
        learner = f"{prefix}{i:x}".rjust(64, "0")
        if learner not in avoid and partition_for(learner.encode()) == partition:
            return learner
    raise AssertionError("no key found")


def stream_settings(tmp_path: Path, kafka: KafkaSettings, **streams: Any) -> Settings:
    """Settings for a worker under test: private home, the test's topics, free ports."""
    return Settings(
        home=tmp_path / "home",
        kafka=kafka,
        metrics_port_base=free_port_block(16),
        web_port=free_port(),
        streams_web_port=free_port(),
        log_level="INFO",
        streams=StreamsSettings(**streams),
    )


def statement(
    learner: str,
    ts: int,
    course: str = "https://c.example/course-1",
    verb: str = "experienced",
    skills: list[str] | None = None,
    success: bool | None = None,
    duration: str | None = None,
    sid: str | None = None,
    voids: str | None = None,
) -> dict[str, Any]:
    """A canonical statement as producers put in envelopes (only what streams read matters)."""
    if voids is not None:
        obj: dict[str, Any] = {"objectType": "StatementRef", "id": voids}
        verb_id = "http://adlnet.gov/expapi/verbs/voided"
    else:
        definition: dict[str, Any] = {"type": "http://adlnet.gov/expapi/activities/cmi.interaction"}
        if skills:
            definition["extensions"] = {SKILL_EXTENSION: skills}
        obj = {"objectType": "Activity", "id": f"{course}/activity-1", "definition": definition}
        verb_id = f"http://adlnet.gov/expapi/verbs/{verb}"
    stmt: dict[str, Any] = {
        "id": sid or str(uuid.uuid4()),
        "actor": {"objectType": "Agent", "account": {"homePage": "https://s.example", "name": learner}},
        "verb": {"id": verb_id},
        "object": obj,
        "timestamp": format_ms(ts),
        "stored": format_ms(ts),
        "context": {"contextActivities": {"parent": [{"id": course, "definition": {"type": COURSE_ACTIVITY_TYPE}}]}},
        "version": "1.0.3",
    }
    result: dict[str, Any] = {}
    if success is not None:
        result["success"] = success
    if duration is not None:
        result["duration"] = duration
    if result:
        stmt["result"] = result
    return stmt


class EnvelopeProducer:
    """Sends envelopes (one learner's statements each) to the test's ``xapi.statements``."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self.topic = Topic.STATEMENTS.physical(kafka.topic_prefix)
        self.producer = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all", linger_ms=5)

    def send(self, school: str, learner: str, cohort: str, course: str, statements: Iterable[dict[str, Any]]) -> None:
        env = StatementEnvelope(
            school, learner, T0, tuple(StatementEntry(course, cohort, s) for s in statements)
        )
        self.producer.send(self.topic, key=env.key, value=env.encode())

    def send_raw(self, key: bytes, value: bytes) -> None:
        self.producer.send(self.topic, key=key, value=value)

    def close(self) -> None:
        self.producer.flush(30)
        self.producer.close(10)


DECODERS: dict[Topic, Callable[[bytes], Any]] = {
    Topic.ENGAGEMENT: EngagementRecord.decode,
    Topic.MASTERY: MasteryRecord.decode,
    Topic.COHORT_HEALTH: CohortHealthRecord.decode,
    Topic.ALERTS: AlertRecord.decode,
}


def record_key(topic: Topic, r: Any) -> tuple:
    if topic is Topic.ENGAGEMENT:
        return (r.learner, r.course, r.grain, r.period_start_ms)
    if topic is Topic.MASTERY:
        return (r.learner, r.skill)
    if topic is Topic.COHORT_HEALTH:
        return (r.school, r.course, r.cohort, r.at_ms)
    return (r.alert_id, r.state)


def assigned_consumer(
    kafka: KafkaSettings, topics: list[Topic], start: dict[TopicPartition, int] | None = None
) -> KafkaConsumer:
    """A group-less consumer assigned every partition of ``topics``, from ``start`` (default: the beginning)."""
    consumer = KafkaConsumer(
        bootstrap_servers=kafka.bootstrap_servers, enable_auto_commit=False, group_id=None, consumer_timeout_ms=500
    )
    tps = [TopicPartition(t.physical(kafka.topic_prefix), p) for t in topics for p in range(t.spec.partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    for tp, offset in (start or {}).items():
        if tp in tps:
            consumer.seek(tp, offset)
    return consumer


def group_caught_up(kafka: KafkaSettings, app_id: str) -> bool:
    """True when the worker group ``app_id`` has committed the end of xapi.statements and of its cohort feed."""
    lag = group_lag(kafka, app_id)
    return lag is not None and not any(lag.values())


def group_members(kafka: KafkaSettings, app_id: str) -> tuple[str, list[str]]:
    """The worker group's state (``Stable``, ``PreparingRebalance``…) and its members' names.

    A member's name is its static membership id (``group.instance.id``: workers have one,
    from ``--name``), else its client id. Kafka keeps a static member's client id when a
    restarted process takes its place, so only the instance id names it.
    """
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    try:
        group = admin.describe_groups([app_id]).get(app_id) or {}
    except KafkaError:
        return "unknown", []
    finally:
        admin.close()
    members = group.get("members") or ()
    return group.get("group_state") or "unknown", sorted(m.get("group_instance_id") or m["client_id"] for m in members)


def describe_lag(kafka: KafkaSettings, app_id: str) -> str:
    """The group's uncommitted records per partition, for a failure message."""
    lag = group_lag(kafka, app_id)
    if lag is None:
        return f"group {app_id}: no committed offsets or no cohort feed yet"
    behind = {f"{tp.topic}/{tp.partition}": n for tp, n in sorted(lag.items()) if n}
    return f"group {app_id} lag: {behind or 'none'}"


def group_lag(kafka: KafkaSettings, app_id: str) -> dict[TopicPartition, int] | None:
    """End offset minus committed offset of the group ``app_id`` on its inputs (None: not yet known)."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    consumer = KafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, group_id=None)
    try:
        statements = Topic.STATEMENTS.physical(kafka.topic_prefix)
        tps = [TopicPartition(statements, p) for p in range(Topic.STATEMENTS.spec.partitions)]
        tps += [TopicPartition(f"{app_id}-cohort-feed", p) for p in range(Topic.COHORT_HEALTH.spec.partitions)]
        try:
            ends = consumer.end_offsets(tps)
        except KeyError:  # the worker has not created its cohort feed yet
            return None
        try:
            offsets = admin.list_group_offsets({app_id: None}).get(app_id, {})
        except KafkaError:  # the group does not exist yet
            return None
        committed = {tp: meta.offset for tp, meta in offsets.items()}
        return {tp: max(0, end - committed.get(tp, 0)) for tp, end in ends.items()}
    finally:
        consumer.close()
        admin.close()


def end_offsets(kafka: KafkaSettings, topics: list[Topic], timeout_s: float = 30.0) -> dict[TopicPartition, int]:
    """The end offset of every partition of ``topics``.

    Asked again while the broker's metadata lacks one of them: kafka-python raises KeyError
    for a topic created a moment ago (``ensure_topics`` just before), seen under load.
    """
    tps = [TopicPartition(t.physical(kafka.topic_prefix), p) for t in topics for p in range(t.spec.partitions)]
    deadline = time.monotonic() + timeout_s
    while True:
        consumer = KafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, group_id=None)
        try:
            return dict(consumer.end_offsets(tps))
        except KeyError:
            if time.monotonic() > deadline:
                raise
        finally:
            consumer.close()
        time.sleep(0.5)


class DerivedReader:
    """Reads derived topics from the beginning; keeps every record and the latest version per key."""

    def __init__(
        self, kafka: KafkaSettings, topics: Iterable[Topic] = tuple(DECODERS),
        start: dict[TopicPartition, int] | None = None,
    ) -> None:
        self.names = {t.physical(kafka.topic_prefix): t for t in topics}
        self.consumer = assigned_consumer(kafka, list(self.names.values()), start)
        self.all: dict[Topic, list[Any]] = {t: [] for t in self.names.values()}
        self.latest: dict[Topic, dict[tuple, Any]] = {t: {} for t in self.names.values()}

    def poll(self) -> int:
        n = 0
        for msg in self.consumer:
            topic = self.names[msg.topic]
            r = DECODERS[topic](msg.value)
            self.all[topic].append(r)
            key = record_key(topic, r)
            old = self.latest[topic].get(key)
            if old is None or r.version >= old.version:
                self.latest[topic][key] = r
            n += 1
        return n

    def settle(self, done: Callable[[DerivedReader], bool], timeout: float, quiet_s: float = 3.0,
               check: Callable[[], None] | None = None, diagnose: Callable[[], str] | None = None) -> None:
        """Poll until ``done`` has held, and nothing new arrived, for ``quiet_s``; fail on timeout.

        Quiet is counted from when ``done`` started to hold too: a worker that has just
        joined its group (``done``) may still have records to send after a long silence.
        """
        deadline = time.monotonic() + timeout
        quiet_since = time.monotonic()
        done_since: float | None = None
        while time.monotonic() < deadline:
            if check is not None:
                check()
            if self.poll():
                quiet_since = time.monotonic()
            elif done(self):
                done_since = done_since or time.monotonic()
                if time.monotonic() - max(quiet_since, done_since) >= quiet_s:
                    return
            else:
                done_since = None
        counts = {t.value: len(v) for t, v in self.latest.items()}
        raise AssertionError(
            f"derived records did not settle in {timeout}s: {counts}\n{diagnose() if diagnose else ''}"
        )

    def close(self) -> None:
        self.consumer.close()


def consistent_versions(records: list[Any], topic: Topic) -> dict[tuple, Any]:
    """Every (key, version) seen must carry the same figures; returns them."""
    seen: dict[tuple, Any] = {}
    for r in records:
        k = (*record_key(topic, r), r.version)
        if k in seen and seen[k] != r:
            raise AssertionError(f"two different records with key/version {k}: {seen[k]} vs {r}")
        seen[k] = r
    return seen


def worker(spawn, settings: Settings, app_id: str, name: str, web_port: int | None = None):
    """A ``learnpulse worker`` process on its own app id, ports and state directory (``.metrics_port``).

    ``web_port``: a restarted worker passes its predecessor's (``.web_port``), as a real
    restart with the same settings does: Faust's assignor ties a static member to its URL.
    """
    port = free_port()
    web_port = web_port or free_port()
    proc = spawn(
        ["worker", "--app-id", app_id, "--name", name, "--web-port", str(web_port)],
        settings, f"worker-{name}", extra_env={"LEARNPULSE_METRICS_PORT": str(port)},
    )
    proc.metrics_port = port
    proc.web_port = web_port
    proc.client_id = worker_client_id(name, proc.popen.pid)
    proc.member = worker_instance_id(name)
    return proc


def assigned_partitions(w) -> int:
    """Partitions of xapi.statements the worker process ``w`` holds (0 while its metrics are not up)."""
    try:
        return int(metric(w.metrics_port, "learnpulse_stream_assigned_partitions"))
    except OSError:
        return 0


def fail_if_exited(workers: Callable[[], list]) -> Callable[[], None]:
    """A check that fails the test, with the worker's log, as soon as one of ``workers()`` exited."""

    def check() -> None:
        for w in workers():
            if w.popen.poll() is not None:
                pytest.fail(f"worker exited {w.popen.returncode}:\n{w.tail()}")

    return check


def collect(
    kafka: KafkaSettings, app_id: str, workers: Callable[[], list], start: dict[TopicPartition, int] | None = None,
    topics: Iterable[Topic] = tuple(DECODERS), timeout: float = 300,
    ready: Callable[[DerivedReader], bool] | None = None,
) -> DerivedReader:
    """Derived records from ``start`` once the group ``app_id`` committed the end of its inputs
    (a quiet period alone is no proof on a loaded machine), ``ready`` holds (if given) and the
    stream has been quiet."""
    reader = DerivedReader(kafka, topics, start)
    caught_up = [False]

    def done(r: DerivedReader) -> bool:
        if not caught_up[0]:
            # Committed offsets at the end are not enough: after a SIGKILL the restarted
            # worker takes the partitions back only once it has joined — and only then
            # reports them idle, which lets the cohort stage evaluate the last hours. So the
            # group must also be stable with exactly the live workers in it, and those live
            # processes (not a dead member of the same name) must hold every partition.
            state, members = group_members(kafka, app_id)
            live = workers()
            caught_up[0] = (state == "Stable" and members == sorted(w.member for w in live)
                            and sum(assigned_partitions(w) for w in live) == Topic.STATEMENTS.spec.partitions
                            and group_caught_up(kafka, app_id))
            return False
        return ready is None or ready(r)

    try:
        reader.settle(done, timeout, quiet_s=8, check=fail_if_exited(workers), diagnose=lambda: "\n".join(
            [describe_lag(kafka, app_id), "group state %s, members %s" % group_members(kafka, app_id),
             f"live workers {sorted(w.member for w in workers())}, "
             f"partitions they hold {[assigned_partitions(w) for w in workers()]}"]
            + [w.tail(20) for w in workers()]))
    finally:
        reader.close()
    return reader


def same_records(ref: DerivedReader, other: DerivedReader, what: str, topics: Iterable[Topic] = tuple(DECODERS)) -> None:
    """The latest record of every key is the same, versions included; no (key, version) carries two figures."""
    for topic in topics:
        a, b = ref.latest[topic], other.latest[topic]
        diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        assert not diff, (
            f"{what}: {topic.value}: {len(diff)} of {len(a)} keys differ, e.g.\n{a.get(diff[0])}\n{b.get(diff[0])}\n"
            f"{_describe_diff(diff, a, b)}"
        )
        consistent_versions(ref.all[topic], topic)
        consistent_versions(other.all[topic], topic)


def _describe_diff(diff: list[tuple], a: dict, b: dict) -> str:
    """Differing keys grouped by all but their last field (cohort, learner…): how many, first and last."""
    groups: dict[tuple, list] = {}
    for k in diff:
        groups.setdefault(k[:-1], []).append(k[-1])
    lines = []
    for head, tails in sorted(groups.items())[:20]:
        only_a = sum(1 for t in tails if (*head, t) not in b)
        only_b = sum(1 for t in tails if (*head, t) not in a)
        lines.append(f"  {head}: {len(tails)} keys ({only_a} only in the first, {only_b} only in the second), "
                     f"{min(tails)}..{max(tails)}")
    return "\n".join(lines)


def metric(port: int, name: str) -> float:
    """A counter of a worker's /metrics (0 when absent)."""
    import re
    import urllib.request

    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    m = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", body, re.MULTILINE)
    return float(m.group(1)) if m else 0.0
