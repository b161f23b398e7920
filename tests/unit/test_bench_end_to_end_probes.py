"""(worker) of bench_end_to_end: the probe learners' engagement records, read from Kafka.

An engagement record can be on Kafka before the gateway's answer reaches the probe (the
worker reads a committed transaction while the gateway still confirms it in its index and
answers). Such a record must still count: skipping the records of learners without a
pending probe missed them, so a probe was seen only at its learner's next statement, or
never (the benchmark printed (worker) later than (c), which reads ClickHouse after it).
"""

from __future__ import annotations

import orjson

from benchmarks.end_to_end.probes import Probe, WorkerRecords


def record(learner: str, statements: int, day_ms: int = 0, course: str = "c1", grain: str = "day") -> bytes:
    return orjson.dumps({"learner": learner, "course": course, "grain": grain, "period_start_ms": day_ms,
                         "statements": statements})  # fmt: skip


def probe(learner: str, nth: int, acked: float) -> Probe:
    return Probe(f"id-{learner}-{nth}", learner, nth, "c1", "c1/k", acked, 0, at={})


def test_a_record_read_before_its_probe_was_acknowledged_counts_it():
    records = WorkerRecords({"p1", "p2"})
    records.take(b"p1", record("p1", 1))
    records.take(b"other", record("other", 5))  # the load's learners: not decoded, not counted
    assert records.mark([], seen=10.0) == 0
    late = probe("p1", 1, acked=10.5)  # the answer reached the probe after the record was read
    assert records.mark([late], seen=11.0) == 1
    assert late.at["worker"] == 11.0


def test_a_probe_is_seen_once_its_learners_days_add_up_to_it():
    records = WorkerRecords({"p1"})
    waiting = probe("p1", 3, acked=1.0)
    records.take(b"p1", record("p1", 1, day_ms=0))
    records.take(b"p1", record("p1", 1, grain="hour"))  # hour rows are not summed: days hold every statement
    assert records.mark([waiting], seen=2.0) == 0 and "worker" not in waiting.at
    records.take(b"p1", record("p1", 2, day_ms=86_400_000))
    assert records.mark([waiting], seen=3.0) == 1 and waiting.at["worker"] == 3.0


def test_a_record_on_kafka_before_the_acknowledgement_is_seen_at_it_not_before():
    records = WorkerRecords({"p1"})
    records.take(b"p1", record("p1", 1))
    early = probe("p1", 1, acked=5.0)
    assert records.mark([early], seen=4.9) == 1  # read before the answer: 0, never a negative freshness
    assert early.seconds("worker") == 0.0
