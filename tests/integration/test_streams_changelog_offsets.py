"""The persisted changelog offsets a real worker leaves in its RocksDB tables.

The worker's tables save each changelog partition's highest acknowledged offset once a
second, at a rebalance and at stop, not once per record (``streams.faustutil.OffsetCoalescingTable``;
the unit tests count the puts). Here: the saves reach RocksDB in a running worker, so a
restarted worker's recovery starts at the changelog's last record rather than reading the
whole changelog again. That a restart after a SIGKILL (offsets lagging by up to a second)
gives exact figures is ``test_streams_faults``.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import rocksdict
from kafka import KafkaConsumer, TopicPartition

from learnpulse.pipeline import run_simulator
from producers.simulator import SimulationConfig
from schemas.topics import Topic
from streams.app import TABLES
from tests.integration.streams_support import collect, stream_settings, worker

SIM = SimulationConfig(seed=5, schools=1, courses_per_school=2, learners_per_course=10, days=7)
OFFSET_KEY = b"__faust\0offset__"  # faust-streaming 0.15's key of the persisted offset in a table's RocksDB


def persisted_offset(db_path: Path) -> int | None:
    db = rocksdict.Rdict(str(db_path), options=rocksdict.Options(raw_mode=True),
                         access_type=rocksdict.AccessType.read_only())
    try:
        raw = db.get(OFFSET_KEY)
        return None if raw is None else int(raw)
    finally:
        db.close()


@pytest.mark.kafka
def test_a_stopped_worker_leaves_the_last_changelog_offset_of_every_partition_in_its_tables(tmp_path, kafka, spawn):
    settings = stream_settings(tmp_path, kafka)
    assert run_simulator(settings, SIM, count=3000, rate=None) == 3000
    app_id = f"offsets-{uuid.uuid4().hex[:6]}"
    w = worker(spawn, settings, app_id, "offsets")
    collect(kafka, app_id, lambda: [w], None, [Topic.ENGAGEMENT, Topic.COHORT_HEALTH],
            ready=lambda r: bool(r.latest[Topic.ENGAGEMENT] and r.latest[Topic.COHORT_HEALTH]))
    w.stop()

    consumer = KafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, group_id=None)
    try:
        tps = [TopicPartition(f"{app_id}-{table}-changelog", p) for table, n in TABLES.items() for p in range(n)]
        ends = consumer.end_offsets(tps)
    finally:
        consumer.close()
    written = {tp: end for tp, end in ends.items() if end > 0}
    assert {tp.topic for tp in written} == {f"{app_id}-{table}-changelog" for table in TABLES}, "both tables written"

    datadir = settings.home / "streams"
    found = {}
    for tp in written:
        table = tp.topic.removeprefix(f"{app_id}-").removesuffix("-changelog")
        paths = list(datadir.rglob(f"{table}-{tp.partition}.db"))
        assert len(paths) == 1, f"{tp}: {paths}"
        found[tp] = persisted_offset(paths[0])
    assert found == {tp: end - 1 for tp, end in written.items()}
