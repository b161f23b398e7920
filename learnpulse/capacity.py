"""How many processes, partitions and bytes a network needs: ``learnpulse capacity``.

Pure arithmetic over figures measured on one machine of the reference kind (2 cores,
Debian 12, Python 3.11); ``deploy/CAPACITY.md`` gives the commands that measured each one,
so they can be measured again on the machine a school network will use. The plan is a
starting point to measure from, not a promise: every stage is one Python process per core
at most (the GIL), so processes are counted in whole cores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# -- measured figures -------------------------------------------------------------------
# CPU-seconds per 1,000 statements of a busy process (deploy/CAPACITY.md gives each run).


@dataclass(frozen=True, slots=True)
class StageCost:
    per_request: float  # per HTTP request (gateway) or Kafka message (worker), per 1,000
    per_statement: float  # per statement inside it, per 1,000

    def per_1000(self, statements_per_request: float) -> float:
        return self.per_statement + self.per_request / statements_per_request


# bench_gateway --browser (2026-12-04, loaded machine, six runs): 310-387 µs per single-statement
# POST (median 330), 62-82 µs per statement at 100 per POST.
GATEWAY = StageCost(per_request=0.26, per_statement=0.072)
# bench_streams (2026-12-04, load 6-10): 9,851-10,833 statements per CPU-second at 1 per
# message, 28,300-30,415 at 9 per message (means 10,342 and 29,358 at 9.25).
WORKER = StageCost(per_request=0.07, per_statement=0.027)
# bench_end_to_end --path server --batch 20 at 1,000/s: the sink process (every sink),
# clickhouse-server and the Kafka broker, per 1,000 statements.
SINKS = 0.33
CLICKHOUSE_SERVER = 0.18
KAFKA_BROKER = 0.30
# Bytes per statement (bench_storage, simulator statements; scale by your statements' JSON size).
SIMULATOR_JSON_BYTES = 1_543
CLICKHOUSE_BYTES = 389  # clickhouse-server: every table the statements sink writes, on disk
KAFKA_BYTES = 133  # xapi.statements, LZ4, per replica
PARTITIONS_DEFAULT = 12  # schemas/topics.py: xapi.statements


# Peak resident memory (MB) per process, the highest of the bench_scaleout runs (deploy/CAPACITY.md, "Memory").
GATEWAY_PEAK_MB = 166.0  # --no-sinks, 32 connections, 100 statements per POST
# The worker peaked at 183 MB with 270 learners and 204-250 MB with 10,000: a base that gives the
# higher figure at 10,000, plus 2.2 MB per 1,000 learners (204 - 183 over 9,730, the two
# runs with the worker stage alone).
WORKER_MB_PER_1000_LEARNERS = 2.2
WORKER_PEAK_MB = 250.0 - 10 * WORKER_MB_PER_1000_LEARNERS
SINKS_PEAK_MB = 430.0  # the statements sink catching up in full batches of 20,000 rows
CLICKHOUSE_PEAK_MB = 522.0
KAFKA_PEAK_MB = 934.0  # heap 512m (LEARNPULSE_KAFKA__HEAP) + the JVM's own + mapped index files


# Resident memory of one process (MB), measured with benchmarks.bench_scaleout (deploy/CAPACITY.md):
# the peak under the benchmark's load (the kernel's VmHWM), and how it grows where that was measured.
@dataclass(frozen=True, slots=True)
class ProcessMemory:
    peak_mb: float  # at the measured load, the state it held then included
    per_1000_learners_mb: float = 0.0  # state held per learner the process owns (the worker's tables)

    def for_learners(self, learners_per_process: float) -> float:
        return self.peak_mb + self.per_1000_learners_mb * learners_per_process / 1000


MEMORY = {
    "gateway": ProcessMemory(peak_mb=GATEWAY_PEAK_MB),
    "stream worker": ProcessMemory(peak_mb=WORKER_PEAK_MB, per_1000_learners_mb=WORKER_MB_PER_1000_LEARNERS),
    "sinks": ProcessMemory(peak_mb=SINKS_PEAK_MB),
    "clickhouse-server": ProcessMemory(peak_mb=CLICKHOUSE_PEAK_MB),
    "kafka broker": ProcessMemory(peak_mb=KAFKA_PEAK_MB),
}


@dataclass(frozen=True, slots=True)
class Workload:
    schools: int
    learners: int
    statements_per_hour: float  # the network's busiest hour
    statements_per_request: float = 1.0
    active_hours_per_day: float = 6.0  # busiest-hour rate held this long on a school day
    school_days_per_year: int = 180
    clickhouse_replicas: int = 1
    kafka_replication: int = 1
    kafka_retention_days: float = 7.0
    statement_json_bytes: float = SIMULATOR_JSON_BYTES
    utilisation: float = 0.6  # plan every core to this share, for bursts and catch-up after outages

    def check(self) -> Workload:
        problems = [
            name for name, ok in (
                ("--schools must be ≥ 1", self.schools >= 1),
                ("--learners must be ≥ 1", self.learners >= 1),
                ("--statements-per-hour must be > 0", self.statements_per_hour > 0),
                ("--per-request must be ≥ 1", self.statements_per_request >= 1),
                ("--utilisation must be in (0, 1]", 0 < self.utilisation <= 1),
                ("--replicas and --kafka-replication must be ≥ 1",
                 self.clickhouse_replicas >= 1 and self.kafka_replication >= 1),
            ) if not ok
        ]  # fmt: skip
        if problems:
            raise ValueError("; ".join(problems))
        return self


@dataclass(frozen=True, slots=True)
class StagePlan:
    name: str
    cpu_seconds_per_1000: float
    cores: float  # at the planned utilisation
    processes: int
    mb_per_process: float = 0.0  # resident memory of each, at peak (MEMORY)

    @property
    def mb(self) -> float:
        return self.mb_per_process * self.processes


@dataclass(frozen=True, slots=True)
class Plan:
    workload: Workload
    peak_per_second: float
    stages: list[StagePlan] = field(default_factory=list)
    partitions: int = PARTITIONS_DEFAULT
    statements_per_year: float = 0.0
    clickhouse_bytes_per_year: float = 0.0
    kafka_bytes_retained: float = 0.0

    @property
    def cores(self) -> float:
        return sum(s.cores for s in self.stages)

    @property
    def mb(self) -> float:
        return sum(s.mb for s in self.stages)


def _stage(name: str, cost: float, per_second: float, utilisation: float) -> StagePlan:
    cores = per_second * cost / 1000 / utilisation
    return StagePlan(name, cost, cores, max(1, math.ceil(cores)))


def _replicated(stage: StagePlan, replicas: int) -> StagePlan:
    """A multi-threaded server, on each of ``replicas`` machines: every replica does the writing
    work again (inserts on each ClickHouse replica, fetches on each broker)."""
    return StagePlan(stage.name, stage.cpu_seconds_per_1000, stage.cores * replicas, replicas)


def _with_memory(stage: StagePlan, learners: int) -> StagePlan:
    """Each process's memory; a worker holds the state of the learners on its partitions."""
    memory = MEMORY[stage.name]
    return StagePlan(stage.name, stage.cpu_seconds_per_1000, stage.cores, stage.processes,
                     memory.for_learners(learners / stage.processes))  # fmt: skip


def plan(w: Workload) -> Plan:
    w.check()
    per_second = w.statements_per_hour / 3600
    size = w.statement_json_bytes / SIMULATOR_JSON_BYTES
    stages = [
        _stage("gateway", GATEWAY.per_1000(w.statements_per_request), per_second, w.utilisation),
        # A request's statements of one learner travel in one message (DESIGN.md).
        _stage("stream worker", WORKER.per_1000(w.statements_per_request), per_second, w.utilisation),
        _stage("sinks", SINKS, per_second, w.utilisation),
        _replicated(_stage("clickhouse-server", CLICKHOUSE_SERVER, per_second, w.utilisation), w.clickhouse_replicas),
        _replicated(_stage("kafka broker", KAFKA_BROKER, per_second, w.utilisation), w.kafka_replication),
    ]
    stages = [_with_memory(s, w.learners) for s in stages]
    consumers = max(stages[1].processes, stages[2].processes)
    # Every worker and sink process needs a partition of its own; twice that leaves room to
    # add processes without repartitioning (which would move learners between partitions).
    partitions = max(PARTITIONS_DEFAULT, 2 * consumers)
    per_year = w.statements_per_hour * w.active_hours_per_day * w.school_days_per_year
    per_day = w.statements_per_hour * w.active_hours_per_day
    return Plan(
        workload=w,
        peak_per_second=per_second,
        stages=stages,
        partitions=partitions,
        statements_per_year=per_year,
        clickhouse_bytes_per_year=per_year * CLICKHOUSE_BYTES * size * w.clickhouse_replicas,
        kafka_bytes_retained=per_day * w.kafka_retention_days * KAFKA_BYTES * size * w.kafka_replication,
    )


def _bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:,.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def render(p: Plan) -> str:
    w = p.workload
    lines = [
        f"{w.schools:,} schools, {w.learners:,} learners; busiest hour {w.statements_per_hour:,.0f} statements "
        f"({p.peak_per_second:,.1f}/s), {w.statements_per_request:g} per request",
        "",
        f"{'stage':<30} {'CPU-s / 1,000':>14} {'cores':>7} {'processes':>10} {'MB each':>8} {'MB in all':>10}",
    ]
    for s in p.stages:
        lines.append(f"{s.name:<30} {s.cpu_seconds_per_1000:>14.2f} {s.cores:>7.2f} {s.processes:>10}"
                     f" {s.mb_per_process:>8,.0f} {s.mb:>10,.0f}")  # fmt: skip
    lines += [
        f"{'every stage':<30} {'':>14} {p.cores:>7.2f} {'':>10} {'':>8} {p.mb:>10,.0f}",
        "",
        f"xapi.statements partitions: {p.partitions} (each worker and sink process needs its own; twice that "
        "leaves room to grow)",
        f"statements per year: {p.statements_per_year:,.0f} ({w.active_hours_per_day:g} busy hours × "
        f"{w.school_days_per_year} school days)",
        f"ClickHouse storage per year: {_bytes(p.clickhouse_bytes_per_year)} "
        f"({w.clickhouse_replicas} replica(s); statements, raw JSON, LRS index, rollups)",
        f"Kafka xapi.statements retained: {_bytes(p.kafka_bytes_retained)} "
        f"({w.kafka_retention_days:g} days × replication {w.kafka_replication})",
        f"cores at {w.utilisation:.0%} utilisation (servers: over all their replicas); Python stages: one core per "
        "process at most; figures measured on a 2-core machine, see deploy/CAPACITY.md",
        "memory: resident peak per process under load (Kafka: its JVM heap included; ClickHouse: without "
        "the OS page cache it also wants for reads)",
    ]
    if w.statements_per_hour / w.learners > 600:
        lines.append("note: more than 600 statements per learner in the busiest hour: is --statements-per-hour "
                     "the whole network's?")
    return "\n".join(lines)
