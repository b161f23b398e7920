"""Ceilings measured in the same run, on the same broker and ClickHouse: bare Kafka produce
and consume of records shaped like the pipeline's (envelopes of the benchmark's statements,
``batch`` per envelope, as ``producers.publisher`` makes them), and a bare ClickHouse insert
of the rows the statements sink would write for them (``benchmarks.bench_sinks.run_ceiling``:
prebuilt rows, same engine, no Kafka, no decoding, no commits)."""

from __future__ import annotations

import resource
import time
import uuid
from dataclasses import dataclass
from functools import partial

from benchmarks.bench_sinks import _Capture, produce, run_ceiling
from producers.publisher import StatementPublisher
from schemas.clickhouse.ddl import needs_mapping
from sinks.engines import engine_from_url
from sinks.rows import MODERN_RANGE, OLD_SERVER_RANGE, statement_rows
from sinks.specs import SPECS

from .traffic import Shape, learner_statement

SECRET = b"e2e-ceiling-secret"


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


@dataclass
class Ceiling:
    what: str
    per_second: float  # statements/s
    cpu_per_1k: float  # CPU seconds of this process per 1,000 statements
    note: str = ""


def envelopes(shape: Shape, count: int, batch: int) -> list:
    capture = _Capture()
    publisher = StatementPublisher(capture, SECRET, max_per_envelope=batch, linger_s=3600)  # type: ignore[arg-type]
    for seq in range(count):
        publisher.publish(shape.school, learner_statement(shape, seq))
    publisher.flush()
    return capture.envelopes


def kafka_ceilings(bootstrap: str, partitions: int, envs: list, statements: int) -> list[Ceiling]:
    from kafka import KafkaAdminClient, KafkaConsumer
    from kafka.admin import NewTopic

    topic = f"e2e-ceiling-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        admin.close()
    t0, c0 = time.perf_counter(), _cpu()
    produce(bootstrap, topic, envs)  # bench_sinks' producer: acks=all, lz4, as a publisher sends
    produced = Ceiling("Kafka produce (kafka-python, acks=all)", statements / (time.perf_counter() - t0),
                       (_cpu() - c0) / statements * 1000, f"{len(envs)} records")  # fmt: skip
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                             enable_auto_commit=False, max_poll_records=5000)  # fmt: skip
    try:
        got, t0, c0 = 0, time.perf_counter(), _cpu()
        deadline = time.monotonic() + 120
        while got < len(envs) and time.monotonic() < deadline:
            got += sum(len(v) for v in consumer.poll(500).values())
        consumed = Ceiling("Kafka consume (kafka-python)", statements * got / len(envs) / (time.perf_counter() - t0),
                           (_cpu() - c0) / statements * 1000, f"{got} of {len(envs)} records")  # fmt: skip
    finally:
        consumer.close()
    return [produced, consumed]


def insert_ceiling(base_url: str, envs: list, statements: int, block: int, cluster: str | None = None) -> Ceiling:
    """``base_url`` names the engine with the database left to add (``…/`` or ``…?database=``);
    ``cluster``: into the replicated tables of this cluster (the cluster form), else plain ones."""
    probe = engine_from_url(base_url + "learnpulse")
    limits = OLD_SERVER_RANGE if needs_mapping(probe.server_version()) else MODERN_RANGE
    probe.close()
    build = partial(statement_rows, SECRET, limits)
    rows_by_table: dict[str, list[tuple]] = {}
    for env in envs:
        for table, rows in build(env.encode()).items():
            rows_by_table.setdefault(table, []).extend(rows)
    first = SPECS["statements"].tables[0]
    wall, cpu = run_ceiling(base_url + f"ceiling_{uuid.uuid4().hex[:8]}", rows_by_table, block, first, cluster)
    tables = "replicated statements sink tables" if cluster else "statements sink tables"
    return Ceiling(f"ClickHouse bare insert ({tables}, blocks of {block})", statements / wall,
                   cpu / statements * 1000, "CPU: this process only")  # fmt: skip
