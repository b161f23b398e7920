"""Exactness after any crash: SIGKILLed sinks, a stopped ClickHouse server, a full replay.

A producer thread publishes statements (with duplicate ids, replayed envelopes, voids,
undecodable records) and engagement records (several versions per key, late and
replayed) while ``learnpulse sink`` runs as its own process. The test SIGKILLs the sink
at random points and restarts it, and on the server engine stops the server for a while
mid-stream and starts it again. Once the sink has committed everything, every figure in
ClickHouse must equal what Kafka acknowledged: distinct statements, raw rows, the rollup
per course and day (statements, learners, completions, passed, failed, voided), voided
flags, engagement rows, the finalized hourly engagement per cohort (``engagement_hourly``). Then a new consumer group replays both topics from offset 0 into
the same tables, and every figure must be unchanged.
"""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict

import pytest

from learnpulse.settings import Settings
from learnpulse.stack import ClickHouseServer
from reporting.progress import consistent_through
from schemas.records import EngagementRecord
from schemas.topics import Topic
from sinks.engines import engine_from_url
from sinks.rows import VOIDED_VERB
from tests.conftest import free_port, free_port_block, wait_for
from tests.integration.test_sinks_statements import (
    BASE_MS,
    GroupOffsets,
    Publisher,
    agent,
    envelope,
    learner_of,
    make_statement,
)

N_ENVELOPES = 900
SINKS = ("statements", "engagement")


class World:
    """Everything published, and the figures ClickHouse must end up with."""

    def __init__(self, settings: Settings, seed: int) -> None:
        self.settings = settings
        self.rng = random.Random(seed)
        self.learners = [agent(f"learner{i}") for i in range(60)]
        self.teacher = agent("teacher")
        self.statements: dict[str, tuple[dict, dict, str]] = {}  # id -> (statement, agent, course)
        self.voided: set[str] = set()
        self.engagement: dict[tuple, EngagementRecord] = {}
        self.garbage = 0
        self.sent = 0
        self.done = threading.Event()
        self.error: BaseException | None = None
        # The last tenth of the stream trickles until this is set, and its last envelope
        # waits for it: every fault hits a running stream however slowly a loaded machine
        # restarts the sink.
        self.faults_done = threading.Event()

    def run(self, duration_s: float) -> None:
        try:
            self._run(duration_s)
        except BaseException as err:  # noqa: BLE001 - reported by the test
            self.error = err
        finally:
            self.done.set()

    def _run(self, duration_s: float) -> None:
        rng, settings = self.rng, self.settings
        stmts, derived = Publisher(settings.kafka), Publisher(settings.kafka, Topic.ENGAGEMENT)
        sent_envelopes: list[tuple[bytes, bytes]] = []
        started = time.monotonic()
        for n in range(N_ENVELOPES):
            if n >= N_ENVELOPES * 9 // 10 and not self.faults_done.is_set():
                self.faults_done.wait(600 if n == N_ENVELOPES - 1 else 0.3)
            who = rng.choice(self.learners)
            course = f"course-{rng.randrange(3)}"
            ts = BASE_MS + n * 90_000  # spans ~2 event-time months: several partitions and days
            batch = [make_statement("s-1", who, ts + i * 1000, rng) for i in range(rng.randint(1, 10))]
            for s in batch:
                self.statements[s["id"]] = (s, who, course)
            key = learner_of(settings, who).encode()
            raw = envelope(settings, "s-1", who, batch, course)
            stmts.send(key, raw)
            sent_envelopes.append((key, raw))
            roll = rng.random()
            if roll < 0.08:  # an earlier statement again, in a new envelope (duplicate id)
                s, w, c = self.statements[rng.choice(list(self.statements))]
                stmts.send(learner_of(settings, w).encode(), envelope(settings, "s-1", w, [s], c))
            elif roll < 0.12:  # an envelope replayed byte for byte
                stmts.send(*rng.choice(sent_envelopes))
            elif roll < 0.14:  # a void of an earlier statement, by the teacher
                target = rng.choice(list(self.statements))
                v = make_statement(
                    "s-1", self.teacher, ts + 500, rng,
                    verb={"id": VOIDED_VERB}, object={"objectType": "StatementRef", "id": target},
                )  # fmt: skip
                self.statements[v["id"]] = (v, self.teacher, course)
                self.voided.add(target)
                stmts.send(
                    learner_of(settings, self.teacher).encode(), envelope(settings, "s-1", self.teacher, [v], course)
                )
            elif roll < 0.15:
                stmts.send(b"garbage", b"\xff not an envelope")
                self.garbage += 1
            # Engagement of this learner and day, a new version each time (sometimes an old one again).
            learner = learner_of(settings, who)
            day = ts - ts % 86_400_000
            k = (course, learner, day)
            prev = self.engagement.get(k)
            version = (prev.version if prev else 0) + 1
            rec = EngagementRecord(
                "s-1", course, "k", learner, "day", day, version * 2, version, version * 1000, ts, version
            )
            self.engagement[k] = rec
            derived.send(learner.encode(), rec.encode())
            if prev is not None and rng.random() < 0.3:
                derived.send(learner.encode(), prev.encode())  # late: an older version after a newer one
            # And of this learner's hour (engagement_hourly sums them per cohort and hour).
            hour = ts - ts % 3_600_000
            hk = (course, learner, "hour", hour)
            hprev = self.engagement.get(hk)
            hv = (hprev.version if hprev else 0) + 1
            hrec = EngagementRecord("s-1", course, "k", learner, "hour", hour, hv + n % 3, hv, hv * 700, ts, hv)
            self.engagement[hk] = hrec
            derived.send(learner.encode(), hrec.encode())
            if hprev is not None and rng.random() < 0.3:
                derived.send(learner.encode(), hprev.encode())
            self.sent += 1
            if n % 50 == 0:
                stmts.flush()
                derived.flush()
                ahead = (n + 1) / N_ENVELOPES * duration_s - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
        stmts.flush()
        derived.flush()
        stmts.close()
        derived.close()

    # -- what ClickHouse must hold ------------------------------------------------------
    def expected_rollup(self) -> dict[tuple[str, str], tuple[int, ...]]:
        groups: dict[tuple[str, str], dict[str, set]] = defaultdict(lambda: defaultdict(set))
        for sid, (s, who, course) in self.statements.items():
            day = s["timestamp"][:10]
            g = groups[(course, day)]
            g["statements"].add(sid)
            g["learners"].add(learner_of(self.settings, who))
            result = s.get("result") or {}
            if result.get("completion") is True:
                g["completed"].add(sid)
            if result.get("success") is True:
                g["passed"].add(sid)
            if result.get("success") is False:
                g["failed"].add(sid)
            if sid in self.voided:
                g["voided"].add(sid)
        keys = ("statements", "learners", "completed", "passed", "failed", "voided")
        return {k: tuple(len(g[name]) for name in keys) for k, g in groups.items()}


def figures(ch) -> dict[str, object]:
    """Every figure the test compares, read the way the docs tell researchers to read them."""

    def one(sql):
        ((v,),) = ch.query(sql)
        return int(v)

    rollup = {
        (str(r[0]), str(r[1])): tuple(int(x) for x in r[2:])
        for r in ch.query(
            "SELECT course, toString(day), uniqExactMerge(statements), uniqExactMerge(learners),"
            " uniqExactIfMerge(completed), uniqExactIfMerge(passed), uniqExactIfMerge(failed), uniqExactIfMerge(voided)"
            " FROM {db}.activity_daily GROUP BY course, day"
        )
    }
    # The finalized totals (migration 0020): additive over verbs and cohorts, learners aside.
    totals = {
        (str(r[0]), str(r[1])): tuple(int(x) for x in r[2:])
        for r in ch.query(
            "SELECT course, toString(day), sum(statements), sum(completed), sum(passed), sum(failed), sum(voided)"
            " FROM {db}.activity_totals FINAL GROUP BY course, day"
        )
    }
    engagement = {
        (str(r[0]), str(r[1])): (int(r[2]), int(r[3]), int(r[4]))
        for r in ch.query("SELECT course, learner, count(), sum(version), sum(active_ms) FROM {db}.engagement FINAL GROUP BY course, learner")
    }  # fmt: skip
    # The finalized hourly engagement (migration 0023): sums per cohort and hour.
    hourly = {
        (str(r[0]), str(r[1])): tuple(int(x) for x in r[2:])
        for r in ch.query(
            "SELECT course, toString(period_start), statements, sessions, active_ms, learners"
            " FROM {db}.engagement_hourly FINAL"
        )
    }
    return {
        "statements_final": one("SELECT count() FROM {db}.statements FINAL"),
        "distinct_ids": one("SELECT uniqExact(statement_id) FROM {db}.statements"),
        "raw_final": one("SELECT count() FROM {db}.statements_raw FINAL"),
        "voided": {
            str(r[0]) for r in ch.query("SELECT toString(statement_id) FROM {db}.statements FINAL WHERE voided = 1")
        },
        "rollup": rollup,
        "totals": totals,
        "engagement": engagement,
        "hourly": hourly,
    }


def expected_figures(world: World) -> dict[str, object]:
    eng: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    hourly: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for (course, learner, *_period), rec in world.engagement.items():
        e = eng[(course, learner)]
        e[0] += 1
        e[1] += rec.version
        e[2] += rec.active_ms
        if rec.grain == "hour":
            at = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(rec.period_start_ms // 1000))
            h = hourly[(course, at)]
            h[0] += rec.statements
            h[1] += rec.sessions
            h[2] += rec.active_ms
            h[3] += 1
    n = len(world.statements)
    rollup = world.expected_rollup()
    return {
        "statements_final": n,
        "distinct_ids": n,
        "raw_final": n,
        "voided": set(world.voided),
        "rollup": rollup,
        "totals": {k: (v[0], *v[2:]) for k, v in rollup.items()},
        "engagement": {k: tuple(v) for k, v in eng.items()},
        "hourly": {k: tuple(v) for k, v in hourly.items()},
    }


def _start_sink(spawn, settings, tag: str, group: str | None = None):
    # Static membership: the restarted process takes the killed one's partitions back at
    # once instead of waiting for its session to time out.
    args = ["sink", "--instance-id", "exactness", *[a for name in SINKS for a in ("--table", name)]]
    if group:
        args += ["--group", group]
    return spawn(args, settings, f"sink-{tag}", {"LEARNPULSE_METRICS_PORT": str(free_port())})


def _wait_all_committed(settings, group_prefix: str, proc, timeout: float = 180) -> None:
    k = settings.kafka
    offsets = GroupOffsets(k)
    topics = {"statements": Topic.STATEMENTS, "engagement": Topic.ENGAGEMENT}

    def done():
        if proc.popen.poll() is not None:
            pytest.fail(f"sink exited {proc.popen.returncode}:\n{proc.tail()}")
        return all(
            offsets.lag(f"{group_prefix}-{name}", topic.physical(k.topic_prefix)) == 0 for name, topic in topics.items()
        )

    try:
        wait_for(done, timeout, f"group {group_prefix} to commit everything", interval=1.0)
    finally:
        offsets.close()


@pytest.mark.slow
@pytest.mark.kafka
def test_sinks_exact_after_sigkills_server_outage_and_full_replay(
    request, settings, spawn, clickhouse_url, tmp_path
):  # fmt: skip
    server = None
    if clickhouse_url.startswith("clickhouse://"):
        server = ClickHouseServer(
            Settings(home=request.getfixturevalue("stack_home"),
                     clickhouse=request.getfixturevalue("clickhouse_server_settings"))
        )  # fmt: skip
    world = World(settings, seed=11)
    faults = random.Random(12)
    producer = threading.Thread(target=world.run, args=(90.0,), daemon=True)
    group_prefix = f"{settings.kafka.topic_prefix}learnpulse-sink"
    offsets = GroupOffsets(settings.kafka)
    statements_topic = Topic.STATEMENTS.physical(settings.kafka.topic_prefix)
    sink = _start_sink(spawn, settings, "0")
    producer.start()
    kills = 0
    outage_s = 0.0
    plan = ["kill", "kill", "outage" if server else "kill", "kill", "kill"]
    try:
        for step, fault in enumerate(plan):
            # Strike while the sink is busy: after it committed something new (it joined the
            # group and writes), at a random point within the next couple of batches.
            before = offsets.committed(f"{group_prefix}-statements")
            wait_for(
                lambda b=before: world.done.is_set() or offsets.committed(f"{group_prefix}-statements") > b
                or offsets.lag(f"{group_prefix}-statements", statements_topic) == 0,
                180, "the sink to make progress (or catch up with the trickle)",
            )  # fmt: skip
            time.sleep(faults.uniform(0.2, 2.0))
            if fault == "kill":
                sink.kill()  # SIGKILL: no flush, no commit, no goodbye
                kills += 1
                sink = _start_sink(spawn, settings, str(step + 1))
            else:
                # The outage is for a running sink (it holds its batch and retries). A sink just
                # restarted may still be in its start-up, which refuses to start without
                # ClickHouse (by design): with the "caught up" shortcut above the outage could
                # strike there and leave no sink at all.
                wait_for(lambda s=sink: "sinks running" in s.log.read_text(errors="replace"), 120, "the sink to start")
                down = time.monotonic()
                server.stop()
                time.sleep(8)
                server.up(timeout=90)
                outage_s = time.monotonic() - down
        faults_done_while_producing = not world.done.is_set()
    finally:
        world.faults_done.set()
        offsets.close()
    producer.join(120)
    assert world.done.is_set() and world.error is None, world.error
    assert faults_done_while_producing, "the faults must hit a running stream (the producer waits for them)"
    _wait_all_committed(settings, group_prefix, sink)
    assert sink.stop() == 0, sink.tail()

    expected = expected_figures(world)
    ch = engine_from_url(settings.clickhouse_url)
    try:
        got = figures(ch)
        assert got == expected
        assert consistent_through(ch) is not None
        dead = ch.query("SELECT count() FROM {db}.statements WHERE verb_id = ''")  # nothing half-decoded
        assert int(dead[0][0]) == 0
    finally:
        ch.close()
    print(  # the figures the report quotes
        f"\nexactness[{clickhouse_url.split(':')[0]}]: {world.sent} envelopes, {len(world.statements)} distinct statements,"
        f" {len(world.voided)} voided, {world.garbage} undecodable, {len(world.engagement)} engagement keys;"
        f" {kills} SIGKILLs, server outage {outage_s:.0f}s; all figures equal"
    )

    # A full replay of both topics from offset 0 by a new consumer group: nothing changes.
    group = f"{settings.kafka.topic_prefix}replay"
    replay = _start_sink(spawn, settings, "replay", group=group)
    _wait_all_committed(settings, group, replay)
    assert replay.stop() == 0, replay.tail()
    ch = engine_from_url(settings.clickhouse_url)
    try:
        assert figures(ch) == expected
    finally:
        ch.close()


def _members(settings: Settings, group: str) -> int:
    """Members of a consumer group now (0 while its coordinator is not known yet)."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    try:
        described = admin.describe_groups([group])
    except KafkaError:
        return 0
    finally:
        admin.close()
    groups = described.values() if isinstance(described, dict) else described
    return sum(len(g["members"] if isinstance(g, dict) else g.members) for g in groups)


@pytest.mark.slow
@pytest.mark.kafka
@pytest.mark.clickhouse_server
def test_two_sink_processes_sharing_the_partitions_write_what_one_writes(tmp_path, kafka, server_url, spawn):
    """Sinks scale out as one consumer group: two processes split the partitions of each topic,
    one is SIGKILLed and restarted mid-stream (its partitions move and come back), and every
    figure equals what one sink writes: nothing lost, nothing twice."""
    settings = Settings(home=tmp_path / "home", kafka=kafka, clickhouse={"url": server_url},
                        metrics_port_base=free_port_block(16), log_level="WARNING")  # fmt: skip
    world = World(settings, seed=21)
    group_prefix = f"{settings.kafka.topic_prefix}learnpulse-sink"

    def start(name: str, tag: str):
        args = ["sink", "--instance-id", name, *[a for t in SINKS for a in ("--table", t)]]
        return spawn(args, settings, f"sink-{tag}", {"LEARNPULSE_METRICS_PORT": str(free_port())})

    one, two = start("one", "one-0"), start("two", "two-0")
    producer = threading.Thread(target=world.run, args=(60.0,), daemon=True)
    offsets = GroupOffsets(settings.kafka)
    producer.start()
    try:
        wait_for(lambda: _members(settings, f"{group_prefix}-statements") == 2, 180,
                 "both sink processes in the statements group")  # fmt: skip
        wait_for(lambda: world.done.is_set() or offsets.committed(f"{group_prefix}-statements") > 0, 180,
                 "the sinks to commit something")  # fmt: skip
        time.sleep(2)
        two.kill()
        two = start("two", "two-1")
    finally:
        world.faults_done.set()
        offsets.close()
    producer.join(180)
    assert world.done.is_set() and world.error is None, world.error
    _wait_all_committed(settings, group_prefix, one)
    _wait_all_committed(settings, group_prefix, two)
    assert one.stop() == 0, one.tail()
    assert two.stop() == 0, two.tail()
    ch = engine_from_url(settings.clickhouse_url)
    try:
        assert figures(ch) == expected_figures(world)
    finally:
        ch.close()
