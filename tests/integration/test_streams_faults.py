"""Crash safety and determinism of the stream worker, on simulator traffic and the real broker.

Each test processes the same ``xapi.statements`` topic twice — once by one clean worker
(the reference) and once under the condition tested — and compares the final derived
record of every key (engagement, mastery, cohort health, alerts), versions included.
Derived topics are shared, so the second run's records are read from the offsets the
first run ended at.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable

import pytest

from learnpulse.pipeline import run_simulator
from producers.simulator import SimulationConfig
from schemas.topics import Topic
from tests.conftest import wait_for
from tests.integration.streams_support import (
    DECODERS,
    T0,
    DerivedReader,
    EnvelopeProducer,
    assigned_partitions,
    collect,
    consistent_versions,
    end_offsets,
    fail_if_exited,
    group_members,
    learner_in,
    same_records,
    statement,
    stream_settings,
    worker,
)

TOPICS = list(DECODERS)
# Small world, a few weeks of event time: engagement, mastery, and cohorts that go quiet.
SIM = SimulationConfig(seed=11, schools=2, courses_per_school=2, learners_per_course=12, days=28,
                       disengaging_share=0.5, sessions_per_day=1.5)
COUNT = 12_000


def _settings(tmp_path, kafka):
    # Cohort figures are exact however the statements were batched when the watermark lag
    # exceeds the event-time disorder within a partition (see streams.learner.logic). The
    # simulator run unpaced keeps a sparse learner's envelope open for days of event time
    # (its linger is wall-clock): measured up to 5.5 days here, hence 8.
    return stream_settings(tmp_path, kafka, watermark_lag_min=8 * 24 * 60)


def _collect(kafka, start, workers: Callable[[], list], app_id: str) -> DerivedReader:
    """Derived records once the group caught up, with engagement and cohort figures among them."""
    return collect(kafka, app_id, workers, start, TOPICS,
                   ready=lambda r: bool(r.latest[Topic.ENGAGEMENT] and r.latest[Topic.COHORT_HEALTH]))


def _reference(kafka, settings, spawn) -> tuple[DerivedReader, dict]:
    app_id = f"ref-{uuid.uuid4().hex[:6]}"
    ref_worker = worker(spawn, settings, app_id, "ref")
    ref = _collect(kafka, None, lambda: [ref_worker], app_id)
    ref_worker.stop()
    return ref, end_offsets(kafka, TOPICS)


def _same(ref: DerivedReader, other: DerivedReader, what: str) -> None:
    same_records(ref, other, what, TOPICS)
    for topic in TOPICS:  # and across the two runs: one (key, version), one set of figures
        consistent_versions(ref.all[topic] + other.all[topic], topic)
    assert ref.latest[Topic.MASTERY], "the simulation has scored attempts"


@pytest.mark.kafka
@pytest.mark.slow
def test_streams_replay_with_fresh_app_id_and_at_other_speed_gives_identical_records(tmp_path, kafka, spawn):
    settings = _settings(tmp_path, kafka)
    assert run_simulator(settings, SIM, count=COUNT, rate=None) == COUNT
    ref, offsets = _reference(kafka, settings, spawn)

    # The same topic again, by a fresh app id (empty tables, offsets from 0).
    app_id = f"again-{uuid.uuid4().hex[:6]}"
    again_worker = worker(spawn, settings, app_id, "again")
    again = _collect(kafka, offsets, lambda: [again_worker], app_id)
    again_worker.stop()
    _same(ref, again, "fresh app id")

    # The same simulation produced paced (about 100x slower than above: other envelopes,
    # other batches) into a second pipeline gives the same figures.
    slow_kafka = kafka.model_copy(update={"topic_prefix": kafka.topic_prefix + "slow."})
    from learnpulse.topics import ensure_topics

    ensure_topics(slow_kafka.bootstrap_servers, slow_kafka.topic_prefix)
    # The same home: learner pseudonyms come from its secret (a random one per home).
    slow_settings = _settings(tmp_path, slow_kafka)
    assert run_simulator(slow_settings, SIM, count=COUNT, rate=2_000) == COUNT
    app_id = f"slow-{uuid.uuid4().hex[:6]}"
    slow_worker = worker(spawn, slow_settings, app_id, "slow")
    slow = _collect(slow_kafka, None, lambda: [slow_worker], app_id)
    _same(ref, slow, "paced production")


@pytest.mark.kafka
@pytest.mark.slow
def test_streams_sigkill_and_restart_gives_the_same_records(tmp_path, kafka, spawn):
    settings = _settings(tmp_path, kafka)
    assert run_simulator(settings, SIM, count=COUNT, rate=None) == COUNT
    ref, offsets = _reference(kafka, settings, spawn)

    app_id = f"crash-{uuid.uuid4().hex[:6]}"
    current = [worker(spawn, settings, app_id, "crash")]
    watcher = DerivedReader(kafka, [Topic.ENGAGEMENT], offsets)
    try:
        for kill in range(2):
            # Kill as soon as this incarnation has produced something: mid-stream.
            deadline = time.monotonic() + 120
            seen = len(watcher.all[Topic.ENGAGEMENT])
            while len(watcher.all[Topic.ENGAGEMENT]) <= seen + 50 and time.monotonic() < deadline:
                watcher.poll()
            os.kill(current[0].popen.pid, signal.SIGKILL)
            current[0].popen.wait(10)
            current[0] = worker(spawn, settings, app_id, "crash", web_port=current[0].web_port)  # same state, member
    finally:
        watcher.close()
    crashed = _collect(kafka, offsets, lambda: current, app_id)
    _same(ref, crashed, "SIGKILL and restart")


@pytest.mark.kafka
@pytest.mark.slow
def test_streams_state_rebuilt_from_the_changelogs_alone_goes_on_with_the_same_figures(tmp_path, kafka, spawn):
    # The stages write their tables' changelog records themselves (streams.faustutil
    # .ChangelogWrites). A worker whose local state is lost (a new machine, a wiped disk)
    # rebuilds it from the changelogs only: the figures of what comes next must be those of
    # a worker that never stopped.
    import shutil

    from tests.integration.streams_support import DAY, MIN

    settings = stream_settings(tmp_path, kafka)
    learners = [f"{i:064x}" for i in range(1, 41)]
    course = "https://c.example/course-1"

    def produce(first_minute: int, day: int) -> None:
        prod = EnvelopeProducer(kafka)
        for i, learner in enumerate(learners):
            cohort = "a" if i % 2 else "b"
            ts = T0 + day * DAY + (first_minute + i % 7) * MIN
            prod.send("school-a", learner, cohort, course, [statement(learner, ts, course, duration="PT4M"),
                                                             statement(learner, ts + 2 * MIN, course, duration="PT3M")])
        prod.close()

    from learnpulse.topics import ensure_topics

    ensure_topics(kafka.bootstrap_servers, kafka.topic_prefix)  # the derived topics, to read from their ends
    start = end_offsets(kafka, TOPICS)
    produce(0, 0)
    produce(5, 1)
    app_id = f"wiped-{uuid.uuid4().hex[:6]}"
    first = worker(spawn, settings, app_id, "wiped")
    _collect(kafka, start, lambda: [first], app_id).close()
    # SIGKILL, not a stop: no final commit, flush or store close. The restarted worker's
    # recovery reads the changelogs, and with the fetcher already running the records it
    # queued during the seek to the committed offsets were once dropped by Faust's second
    # flow-control resume: it processed nothing (see streams.transport.ResumingFlowControl).
    os.kill(first.popen.pid, signal.SIGKILL)
    first.popen.wait(10)
    state = settings.home.resolve() / "streams" / "wiped"
    assert any(p.is_file() for p in state.rglob("*")), "the worker kept local state"
    shutil.rmtree(state)

    # The same hours again (engagement totals grow from the stored ones) and a week later
    # (the cohorts' steps: who went quiet, from the stored hour buckets).
    produce(30, 1)
    produce(0, 9)
    again = worker(spawn, settings, app_id, "wiped", web_port=first.web_port)
    rebuilt = _collect(kafka, start, lambda: [again], app_id)
    again.stop()

    ref_id = f"ref-{uuid.uuid4().hex[:6]}"
    ref_worker = worker(spawn, settings, ref_id, "ref")
    ref = _collect(kafka, end_offsets(kafka, TOPICS), lambda: [ref_worker], ref_id)
    same_records(ref, rebuilt, "state rebuilt from the changelogs", TOPICS)
    assert len(ref.latest[Topic.COHORT_HEALTH]) >= 2 and ref.latest[Topic.ENGAGEMENT]


@pytest.mark.kafka
@pytest.mark.slow
def test_streams_two_workers_give_the_same_records_as_one(tmp_path, kafka, spawn):
    settings = _settings(tmp_path, kafka)
    assert run_simulator(settings, SIM, count=COUNT, rate=None) == COUNT
    ref, offsets = _reference(kafka, settings, spawn)

    app_id = f"two-{uuid.uuid4().hex[:6]}"
    pair = [worker(spawn, settings, app_id, "one"), worker(spawn, settings, app_id, "two")]
    both = _collect(kafka, offsets, lambda: pair, app_id)
    _same(ref, both, "two workers")


# Where each crash run kills its worker: the share of the reference run's engagement records
# seen so far. Spread over the stream, late points included: there the learner stage has
# hours behind its watermark (final, no longer kept once sent) in every batch.
KILL_POINTS = (0.25, 0.4, 0.55, 0.7, 0.8)


def _kill_after(kafka, start, current: list, share_of: int, deadline_s: float = 180) -> None:
    """SIGKILL ``current[0]`` once ``share_of`` engagement records of this run were produced: mid-stream.

    Record counts depend on batching (a batch sends one record per key), so a run can end
    below the reference's count: a worker that went quiet for 10 s is killed there.
    """
    watcher = DerivedReader(kafka, [Topic.ENGAGEMENT], start)
    try:
        seen, deadline, last = 0, time.monotonic() + deadline_s, time.monotonic()
        while seen < share_of and time.monotonic() < deadline and not (seen and time.monotonic() - last > 10):
            # poll(), not iteration: iteration returns only after a pause of the stream,
            # which would put every kill at the end.
            n = sum(len(batch) for batch in watcher.consumer.poll(timeout_ms=100).values())
            if n:
                seen, last = seen + n, time.monotonic()
            fail_if_exited(lambda: current)()
        assert seen, f"no engagement records in {deadline_s}s"
    finally:
        watcher.close()
    os.kill(current[0].popen.pid, signal.SIGKILL)
    current[0].popen.wait(10)


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.timeout(1800)  # a reference and five crash runs
def test_streams_worker_sigkill_repeatedly_gives_the_clean_runs_cohort_figures_and_alerts(tmp_path, kafka, spawn):
    """Issue 12: cohort figures and alerts after a worker SIGKILL equal a clean run, versions included.

    One clean reference, then one crash run per kill point, each on its own app id over
    the same input: the worker is killed mid-stream and restarted under the same name
    (same state directory, same static group membership). Every run must give the reference's
    latest record of every key — cohort_health, alerts, engagement and mastery — and no
    (key, version) may carry other figures in any run. All runs are made before judging,
    so a failure says in how many of them the figures differed.
    """
    settings = _settings(tmp_path, kafka)
    assert run_simulator(settings, SIM, count=COUNT, rate=None) == COUNT
    ref, _offsets = _reference(kafka, settings, spawn)
    assert ref.latest[Topic.ALERTS], "the simulation raises alerts: the comparison covers them"
    total = len(ref.all[Topic.ENGAGEMENT])
    failures: list[str] = []
    everything = list(ref.all[t] for t in TOPICS)
    for run, share in enumerate(KILL_POINTS):
        start = end_offsets(kafka, TOPICS)
        app_id = f"kill{run}-{uuid.uuid4().hex[:6]}"
        name = f"kill{run}"
        current = [worker(spawn, settings, app_id, name)]
        _kill_after(kafka, start, current, int(total * share))
        # Same name and web port: same state directory and static group membership.
        current[0] = worker(spawn, settings, app_id, name, web_port=current[0].web_port)
        crashed = _collect(kafka, start, lambda: current, app_id)
        fails = len(failures)
        current[0].stop()
        try:
            same_records(ref, crashed, f"run {run} (killed at {share:.0%})", TOPICS)
        except AssertionError as err:
            failures.append(str(err))
        print(f"crash run {run} (killed at {share:.0%}): {'differs' if len(failures) > fails else 'same'}")
        for i, t in enumerate(TOPICS):
            everything[i] = everything[i] + crashed.all[t]
    for i, t in enumerate(TOPICS):  # one set of figures per (key, version) across every run
        consistent_versions(everything[i], t)
    assert not failures, f"{len(failures)} of {len(KILL_POINTS)} crash runs differ from the clean run:\n" + "\n".join(
        f[:1500] for f in failures)



@pytest.mark.kafka
@pytest.mark.slow
def test_streams_restarted_worker_takes_its_partitions_back_without_waiting_for_the_dead_session(
    tmp_path, kafka, spawn
):
    """A SIGKILLed worker restarted under its name replaces its dead self in the group at once.

    Workers are static group members (group.instance.id from --name). The dead member's
    session here is 10 minutes, far beyond this test's deadlines: a dynamic member could
    only join after it expired, so the new process holding every partition of a stable
    group of one member within the deadline, and processing new input, is the proof; so
    is that member carrying the worker's instance id.
    """
    from kafka import KafkaAdminClient

    from learnpulse.commands.streams import worker_instance_id

    settings = stream_settings(tmp_path, kafka, session_timeout_s=600)
    app_id = f"static-{uuid.uuid4().hex[:6]}"
    partitions = Topic.STATEMENTS.spec.partitions

    def alone_with_every_partition(w) -> bool:
        fail_if_exited(lambda: [w])()
        return group_members(kafka, app_id) == ("Stable", [w.member]) and assigned_partitions(w) == partitions

    first = worker(spawn, settings, app_id, "static")
    wait_for(lambda: alone_with_every_partition(first), 180, "the first worker holding every partition")
    first.kill()  # SIGKILL: no goodbye; its session would last 10 minutes
    second = worker(spawn, settings, app_id, "static", web_port=first.web_port)
    wait_for(lambda: alone_with_every_partition(second), 240, "the restarted worker holding every partition")
    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    try:
        (member,) = admin.describe_groups([app_id])[app_id]["members"]
    finally:
        admin.close()
    assert member["group_instance_id"] == worker_instance_id("static")
    # And it processes: new input on every partition gives its engagement records.
    producer = EnvelopeProducer(kafka)
    learners = [learner_in(p, prefix="static") for p in range(partitions)]
    for learner in learners:
        producer.send("s-1", learner, "c-1", "https://c.example/course-1", [statement(learner, T0)])
    producer.close()
    reader = DerivedReader(kafka, [Topic.ENGAGEMENT])
    try:
        reader.settle(lambda r: {k[0] for k in r.latest[Topic.ENGAGEMENT]} >= set(learners), 180, quiet_s=1,
                      check=fail_if_exited(lambda: [second]))
    finally:
        reader.close()
