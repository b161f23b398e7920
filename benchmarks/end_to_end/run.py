"""One rate step after another against a pipeline started here, then the ceilings."""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass, field

from .clock import EventClock, StepClock, crossing_lead_s
from .disk import DiskReading, read_disks
from .inserts import Inserts, read_inserts, sink_metrics_urls
from .server_work import ServerWork, read_server_work
from .probes import PER_PROBE, Probes
from .rules import held, lag_bounded, percentile
from .sampler import LagSampler, cpu_seconds, machine_cpu_seconds
from .traffic import Load, StepLoad

#: processes whose CPU is reported, as named in benchmarks.faults.pipeline (a name ending in
#: "*": every process so named, one per replica of the cluster form: sink, sink-2, clickhouse-r1 …)
PROCESSES = ("gateway", "worker", "sink*", "kafka", "zookeeper", "clickhouse*")


def reported_processes(names) -> list[str]:
    """``names`` (a pipeline's processes) in the order of :data:`PROCESSES`, those it reports."""
    out = []
    for pattern in PROCESSES:
        if pattern.endswith("*"):
            out += sorted(n for n in names if n.startswith(pattern[:-1]))
        elif pattern in names:
            out.append(pattern)
    return out


def own_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


@dataclass
class Lag:
    max: int
    final: int
    bounded: bool
    samples: list[int]


@dataclass
class StepResult:
    rate: float
    duration: float
    load: StepLoad
    lags: dict[tuple[str, str], Lag] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds over the step, per process
    # Wall seconds between the two CPU readings, and the whole machine's busy and total CPU
    # seconds over them (every core; see sampler.machine_cpu_seconds).
    measured_s: float = 0.0
    machine: tuple[float, float] = (0.0, 0.0)
    disks: DiskReading | None = None  # the machine's disks over the same seconds
    # The sinks' ClickHouse inserts over the step, per process that runs sinks.
    inserts: dict[str, Inserts] = field(default_factory=dict)
    # What the ClickHouse server counted over the step (server path; None: not read).
    server_work: ServerWork | None = None
    freshness: dict[str, tuple[float | None, float | None, int, int]] = field(default_factory=dict)
    # Probes whose first GET by id after the acknowledgement answered 200, of those read.
    first_reads: tuple[int, int] = (0, 0)
    floor: int = 0
    held: bool = False
    clock: StepClock | None = None  # the step's event clock (None: wall-clock stamps, no (d))

    def accepted_per_s(self) -> float:
        return self.load.accepted / self.duration

    def latency(self, q: float) -> float | None:
        return percentile(self.load.latencies, q)


def lag_floor(rate: float) -> int:
    """Lag any stage may show and still be keeping up: ~3 s of input (a Faust commit interval,
    a sink's flush wait) at up to two offsets per statement (the gateway writes in
    transactions: a single-statement request takes its record and a commit marker), at least 100."""
    return max(100, int(rate * 3 * 2))


def run_step(pipeline, load: Load, probes: Probes, sampler: LagSampler, rate: float, duration: float,
             settle: float, echo, clock: EventClock | None = None) -> StepResult:  # fmt: skip
    # On the chDB path the sinks (and chDB) run inside the gateway process: say so in the column.
    label = {"gateway": "gateway+sinks"} if getattr(pipeline, "sinks_in", None) == "gateway" else {}
    procs = {label.get(n, n): pipeline.processes[n] for n in reported_processes(pipeline.processes)}
    cpu0 = {n: cpu_seconds(p.pid()) for n, p in procs.items()} | {"load generator": own_cpu()}
    wall0, machine0, disks0 = time.monotonic(), machine_cpu_seconds(), read_disks()
    insert_urls = sink_metrics_urls(pipeline)
    inserts0 = {n: read_inserts(url) for n, url in insert_urls.items()}
    work0 = _server_work(pipeline)
    health = None
    if clock is not None:
        step_clock = clock.next_step(crossing_lead_s(duration))
        health = probes.expect_health(step_clock.boundary_ms)
    probes.sending(True)
    step = load.run(rate, duration)
    end = time.monotonic()
    probes.sending(False)
    cpu1 = {n: cpu_seconds(p.pid()) for n, p in procs.items()} | {"load generator": own_cpu()}
    wall1, machine1, disks1 = time.monotonic(), machine_cpu_seconds(), read_disks()
    inserts1 = {n: read_inserts(url) for n, url in insert_urls.items()}
    work1 = _server_work(pipeline)
    result = StepResult(rate, duration, step, floor=lag_floor(rate), clock=clock.step if clock else None)
    result.cpu = {n: cpu1[n] - cpu0[n] for n in cpu0}
    result.measured_s = wall1 - wall0
    result.machine = (machine1[0] - machine0[0], machine1[1] - machine0[1])
    result.disks = disks1 - disks0 if disks0 is not None and disks1 is not None else None
    result.inserts = {n: after - before for n, before in inserts0.items()
                      if before is not None and (after := inserts1.get(n)) is not None}  # fmt: skip
    result.server_work = work1 - work0 if work0 is not None and work1 is not None else None
    echo(f"  {rate:g}/s: {step.sent} sent, {step.accepted} accepted of {step.offered} offered; "
         f"{dict(step.statuses)}; settling up to {settle:.0f}s")  # fmt: skip
    time.sleep(min(sampler.every + 0.5, settle))  # one lag sample after the load
    samples = sampler.between(step.started, time.monotonic())
    stages = sorted({k for _t, lags in samples for k in lags})
    for stage in stages:
        series = [(t, lags[stage]) for t, lags in samples if stage in lags]
        values = [v for _t, v in series]
        result.lags[stage] = Lag(max(values), values[-1], lag_bounded(series, result.floor), values)
    result.held = held(step.offered, step.accepted, (lag.bounded for lag in result.lags.values()))
    # Give the probes of this step time to be seen everywhere (bounded by `settle`).
    mine = probes.between(step.started, end)
    give_up = time.monotonic() + settle
    while time.monotonic() < give_up and (probes.pending(mine) or _behind(sampler, result.floor)):
        time.sleep(0.5)
    for measure in (m for m in PER_PROBE if m != "worker" or probes.measured(m)):
        seen = [s for s in (p.seconds(measure) for p in mine) if s is not None]
        result.freshness[measure] = (percentile(seen, 50), percentile(seen, 99), len(seen), len(mine))
    read = [p.first_read_ok for p in mine if p.first_read_ok is not None]
    result.first_reads = (sum(read), len(read))
    # (d) per probe cohort, from the first acknowledgement of a statement stamped past the crossing.
    seen = health.seconds_after(clock.crossed_at) if health is not None else []
    total = len(health.seen) if health is not None else 0
    result.freshness["health"] = (percentile(seen, 50), percentile(seen, 99), len(seen), total)
    return result


def _server_work(pipeline) -> ServerWork | None:
    """The ClickHouse server's counters now (None on the chDB path, or if it did not answer)."""
    if not pipeline.clickhouse_live():
        return None
    with pipeline.clickhouse() as ch:
        return read_server_work(ch)


def _behind(sampler: LagSampler, floor: int) -> bool:
    """Whether the last lag sample shows a stage still behind (the next step starts after it drained)."""
    last = sampler.samples[-1][1] if sampler.samples else {}
    return any(lag > floor for lag in last.values())
