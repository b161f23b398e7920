"""The whole pipeline on this machine, fed over HTTP at fixed rates: what it accepts, how far
behind each stage falls, how fresh the figures are, what each process costs, next to bare
Kafka and ClickHouse ceilings measured in the same run.

Run as ``python -m benchmarks.bench_end_to_end`` (``--help``). It starts Kafka, ``db migrate``,
the worker and the gateway through the real CLI as separate processes in a private
LEARNPULSE_HOME on free loopback ports (``benchmarks.faults.pipeline.LocalPipeline``; with
``--path server`` Debian's clickhouse-server and a separate ``sink`` process, else chDB and
the gateway runs the sinks). With ``--source simulator`` each step runs ``learnpulse simulate``
into Kafka instead (``benchmarks.end_to_end.simulated``; ``--batch`` = statements per message).
``--path server --clickhouse-replicas N`` runs on the ClickHouse cluster form instead: ZooKeeper
and N clickhouse-server replicas of one shard (``stack up --clickhouse-replicas N``), every table
replicated ON CLUSTER, one sink process per replica writing to its own replica (the others as
``alt_hosts``), as docker-compose.cluster.yml runs them; the freshness probes read replica 1.
``--compare-single`` then also runs the single server first, in the same run, and prints both
tables and the cluster / single ratios.
Per rate of ``--rates`` it posts for ``--duration`` s:
single-statement POSTs (``--batch N``: N per POST) of answered/experienced/completed
statements from ``--learners`` learners across courses and cohorts, over keep-alive
connections of ``--clients`` threads, open loop (requests are due at fixed times whatever the
answers). Columns:

- offered/s, accepted/s: statements due per second, and answered 2xx per second of the step;
  ``answers``: per status, per request; ``lat``: request latency (send → answer) p50/p99;
- lag: per consumer group and topic (the worker's group on the statements topic, each sink's
  on its topic), offsets between the committed offset and the partition ends (records, and
  the commit markers of the gateway's transactions: up to two offsets per statement), sampled
  every 2 s: the max and the last value of the step; ``bounded``: the last value within ~3 s
  of input, or no higher than the highest of the step's first half (flat or draining, not growing);
- held: accepted ≥ 0.98 × offered and every stage bounded; the highest offered rate that held;
- freshness, from a probe's acknowledgement (a few probe statements per second,
  ``--probes``) until (a) GET ?statementId= answers 200, (b) the gateway's
  X-Experience-API-Consistent-Through (seen on its GETs) reaches the statement's stored time,
  (worker) an engagement record of the stream worker on Kafka counts it (day records summed, as
  (c): so (c) minus (worker) is the engagement sink's and ClickHouse's share),
  (c) the probe learner's ``engagement FINAL`` day rows (summed over days) count it; and
  (d) in cohort health, on the run's EVENT CLOCK (``benchmarks.end_to_end.clock``): statements
  (load and probes) are stamped wall time + an offset chosen per step so that event time
  crosses ``H`` + the worker's watermark lag (10 min) — ``H`` an hour boundary, one hour later
  each step, the first some hours in the past — ``min(5 s, duration/4)`` after the step's load
  starts (the cohort stage writes ``cohort_health`` rows at ``H`` once every busy source
  partition's newest statement time − lag has passed ``H``). (d) is, per probe course/cohort,
  from the first acknowledgement of a statement stamped at or after that crossing to the first
  moment a ``cohort_health`` row with ``at = H`` is readable. The shift leaves (a)-(c) as they
  were (the gateway keeps any timestamp; stored times are the gateway's; engagement is summed
  over all days). (c) and (d) read ClickHouse while the pipeline runs: the server path only.
  With ``--source simulator`` the simulator stamps its own simulated times (its clock cannot
  be shifted per step): no event clock, (d) n/a;
- CPU seconds per 1,000 accepted statements over each step, per process (``/proc`` utime +
  stime with descendants; kafka and clickhouse are the servers); ``load generator`` is this
  process (clients, probes, lag sampler);
- the sinks' ClickHouse inserts over each step, per process that runs sinks (its ``/metrics``,
  ``learnpulse_sink_insert_seconds``): inserts per second, seconds inserting per second, the
  mean insert (``benchmarks/end_to_end/inserts.py``);
- ceilings: bare Kafka produce and consume of envelopes of the same statements, and a bare
  insert of the rows the statements sink writes for them (``bench_sinks.run_ceiling``), on the
  same broker and ClickHouse; ratio = highest held rate / ceiling.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field

from benchmarks.end_to_end.ceilings import envelopes, insert_ceiling, kafka_ceilings
from benchmarks.end_to_end.clock import EventClock, crossing_lead_s
from benchmarks.end_to_end.probes import Probes
from benchmarks.end_to_end.report import render, render_comparison
from benchmarks.end_to_end.run import run_step
from benchmarks.end_to_end.sampler import LagSampler
from benchmarks.end_to_end.simulated import SimulatorLoad
from benchmarks.end_to_end.traffic import Load, Shape
from benchmarks.faults.pipeline import LocalPipeline, wait_processes_ready
from benchmarks.faults.procs import elapsed_echo

STARTUP_S = 90  # stack up, migrate, three processes ready: a guess for the time printed at start
CEILINGS_S = 40


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_end_to_end", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--path", choices=("chdb", "server"), default="chdb", help="ClickHouse path (default chdb)")
    ap.add_argument("--clickhouse-replicas", type=int, default=0, metavar="N",
                    help="the ClickHouse cluster form: N replicas of one shard (server path; default 0: one server)")
    ap.add_argument("--compare-single", action="store_true",
                    help="with --clickhouse-replicas: also run the single server first and print the ratios")
    ap.add_argument("--rates", default="100,300,1000", help="statements/s, one step each (default 100,300,1000)")
    ap.add_argument("--duration", type=float, default=30, help="seconds of load per rate (default 30)")
    ap.add_argument("--settle", type=float, default=20,
                    help="at most this many seconds after each step for probes to be seen and lag to drain (20)")
    # The broker's JIT compiles for about a minute under load: after 5 s of warm-up its CPU per
    # 1,000 statements was 0.63, 0.30 and 0.18 s in three 30 s steps at 1,000/s (2026-12-06),
    # and the first step's figures were the warm-up's, taken from the other processes' cores.
    ap.add_argument("--warmup", type=float, default=60,
                    help="seconds of load at the first rate, not reported (60: the broker's JIT settles)")
    ap.add_argument("--batch", type=int, default=1,
                    help="statements per POST (default 1, as browsers send); with --source simulator, "
                         "most statements of a learner per Kafka message")
    ap.add_argument("--source", choices=("http", "simulator"), default="http",
                    help="http: POSTs to the gateway (default); simulator: `learnpulse simulate` into Kafka "
                         "(--scale medium: 10,000 learners; probes still go through the gateway)")
    ap.add_argument("--learners", type=int, default=10_000, help="distinct learners (default 10000)")
    ap.add_argument("--courses", type=int, default=8, help="courses (default 8), each with --cohorts cohorts")
    ap.add_argument("--cohorts", type=int, default=3, help="cohorts per course (default 3)")
    ap.add_argument("--clients", type=int, default=64, help="client threads, one keep-alive connection each (64)")
    ap.add_argument("--probes", type=float, default=2, help="freshness probe statements per second (default 2)")
    ap.add_argument("--ceiling-statements", type=int, default=20_000,
                    help="statements in the ceiling measurements (default 20000; 0: none)")
    args = ap.parse_args(argv)
    if args.clickhouse_replicas and args.path != "server":
        ap.error("--clickhouse-replicas needs --path server (the cluster form is clickhouse-server replicas)")
    if args.clickhouse_replicas < 0 or args.clickhouse_replicas > 9:
        ap.error("--clickhouse-replicas: 0 to 9")
    if args.compare_single and not args.clickhouse_replicas:
        ap.error("--compare-single compares with the cluster form: give --clickhouse-replicas N")
    return args


@dataclass
class FormRun:
    """One pipeline form's run: its steps, ceilings and notes, as render() prints them."""

    form: str
    steps: list = field(default_factory=list)
    ceilings: list = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    clickhouse_live: bool = False
    elapsed: float = 0.0
    interrupted: bool = False


def forms(args: argparse.Namespace) -> list[int]:
    """The ClickHouse replicas of each pipeline to run, in order (0: one server, or chDB)."""
    if args.compare_single:
        return [0, args.clickhouse_replicas]
    return [args.clickhouse_replicas]


def main(argv: list[str]) -> int:
    args = parse(argv)
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    runs_of = forms(args)
    estimate = len(runs_of) * (STARTUP_S + args.warmup + len(rates) * (args.duration + args.settle) + (
        CEILINGS_S if args.ceiling_statements else 0))  # fmt: skip
    echo = elapsed_echo()
    echo(f"end to end on {args.path}{_replicas_said(runs_of)}: rates {args.rates}/s, {args.duration:.0f}s each, "
         f"{_fed_by(args)}; about {estimate / 60:.1f} min")  # fmt: skip
    signal.signal(signal.SIGTERM, _interrupt)
    runs = []
    for replicas in runs_of:
        run = run_form(args, rates, replicas, echo)
        runs.append(run)
        if run.steps:
            print(render(run.form, _fed_by(args), run.steps, run.ceilings, run.clickhouse_live, run.elapsed,
                         run.notes), flush=True)  # fmt: skip
        if run.interrupted:
            break
    if len(runs) == 2 and all(r.steps for r in runs):
        print(render_comparison(*runs))
    return 0 if runs and all(r.steps for r in runs) else 1


def _replicas_said(runs_of: list[int]) -> str:
    said = {0: "one server", **{n: f"a cluster of {n} replicas" for n in runs_of if n}}
    return " (" + ", then ".join(said[n] for n in runs_of) + ")" if any(runs_of) else ""


def run_form(args: argparse.Namespace, rates: list[float], replicas: int, echo) -> FormRun:
    """Start one pipeline (``replicas`` ClickHouse replicas, 0: one server or chDB), run every
    rate step on it, measure the ceilings, tear it down."""
    started = time.monotonic()
    pipeline = LocalPipeline(args.path, clickhouse_replicas=replicas)
    run = FormRun(pipeline.form)
    probes = sampler = load = None
    try:
        pipeline.up(echo)
        wait_processes_ready(pipeline)
        shape = Shape(f"e2e-{uuid.uuid4().hex[:6]}", args.learners, args.courses, args.cohorts)
        credential = pipeline.credential(shape.school)
        _wait_credential_known(pipeline.gateway_url, credential)
        settings = _settings(pipeline)
        live = pipeline.clickhouse_live()
        url = pipeline.env.get("LEARNPULSE_CLICKHOUSE__URL")
        ch = _engine_factory(url) if live else None
        from learnpulse.local_secrets import pseudonym_key

        clock = _event_clock(args, settings, len(rates))
        from schemas.topics import Topic

        engagement_topic = Topic.ENGAGEMENT.physical(settings.kafka.topic_prefix)
        probes = Probes(pipeline.gateway_url, credential, shape, pseudonym_key(settings),
                        per_second=args.probes, clickhouse=ch, clock=clock,
                        kafka=(pipeline.kafka_bootstrap, engagement_topic)).start()  # fmt: skip
        if clock is not None:
            primed = probes.prime()
            echo(f"event clock: first hour {_hour(clock.first)}, one hour per step; {primed} primer statements")
        sampler = LagSampler(pipeline.kafka_bootstrap).start()
        load = (SimulatorLoad(pipeline.env, per_envelope=args.batch) if args.source == "simulator"
                else Load(pipeline.gateway_url, credential, shape, clients=args.clients, batch=args.batch,
                          clock=clock))  # fmt: skip
        if args.warmup:
            echo(f"warming up: {args.warmup:.0f}s at {rates[0]:g}/s")
            if clock is not None:
                clock.next_step(crossing_lead_s(args.warmup))
            load.run(rates[0], args.warmup)
        for rate in rates:
            echo(f"step {rate:g}/s for {args.duration:.0f}s")
            run.steps.append(run_step(pipeline, load, probes, sampler, rate, args.duration, args.settle, echo,
                                      clock))  # fmt: skip
            s = run.steps[-1]
            p50 = s.freshness["by id"][0]
            echo(f"  {rate:g}/s: accepted {s.accepted_per_s():,.0f}/s, held {'yes' if s.held else 'no'}, "
                 f"readable by id p50 {'-' if p50 is None else f'{p50 * 1000:.0f} ms'}")  # fmt: skip
        probes.stop()
        sampler.stop()
        if args.ceiling_statements:
            echo(f"ceilings: {args.ceiling_statements} statements, bare Kafka and ClickHouse")
            run.ceilings = _ceilings(pipeline, settings, shape, args)
    except KeyboardInterrupt:
        echo("interrupted: tearing the pipeline down")
        run.interrupted = True
    finally:
        for part in (probes, sampler):
            if part is not None:
                part.stop()
        echo(f"stopping the pipeline ({pipeline.form})")
        pipeline.down()
    run.notes = _notes(args, run.steps, probes, sampler)
    run.clickhouse_live = pipeline.clickhouse_live()
    run.elapsed = time.monotonic() - started
    return run


def _notes(args, steps, probes, sampler) -> list[str]:
    notes = []
    behind = [s for s in steps if s.load.sent < s.load.offered]
    if behind and args.source == "simulator":
        notes.append(f"sent < offered at {', '.join(f'{s.rate:g}/s' for s in behind)}: the simulator did not send "
                     "all its statements (see answers)")  # fmt: skip
    elif behind:
        notes.append(f"sent < offered at {', '.join(f'{s.rate:g}/s' for s in behind)}: all {args.clients} clients "
                     "were waiting for answers (each keeps one request in flight; --clients for more)")  # fmt: skip
    if probes is not None and (probes.refused or probes.clickhouse_errors):
        notes.append(f"probes: {probes.refused} not acknowledged; {probes.clickhouse_errors} ClickHouse reads failed "
                     f"(last: {probes.last_error or '-'})")  # fmt: skip
    if sampler is not None and sampler.errors:
        notes.append(f"lag sampler: {sampler.errors} samples failed (broker busy)")
    return notes


def _event_clock(args, settings, steps: int) -> EventClock | None:
    """The run's event clock (see the module docstring, (d)); None with the simulator as the
    source, which stamps its own simulated times."""
    if args.source == "simulator":
        return None
    lag_ms = int(settings.streams.watermark_lag_min * 60_000)
    return EventClock(lag_ms, steps + (1 if args.warmup else 0))


def _hour(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(ms / 1000))


def _fed_by(args) -> str:
    if args.source == "simulator":
        return f"the simulator, at most {args.batch} statement(s) per message, 10,000 learners"
    return f"{args.batch} statement(s) per POST, {args.learners} learners"


def _ceilings(pipeline, settings, shape, args):
    from kafka import KafkaConsumer

    from schemas.topics import Topic

    envs = envelopes(shape, args.ceiling_statements, args.batch)
    consumer = KafkaConsumer(bootstrap_servers=pipeline.kafka_bootstrap)
    try:
        partitions = len(consumer.partitions_for_topic(Topic.STATEMENTS.physical(settings.kafka.topic_prefix)) or [1])
    finally:
        consumer.close()
    out = kafka_ceilings(pipeline.kafka_bootstrap, partitions, envs, args.ceiling_statements)
    if args.path == "server":
        base = pipeline.env["LEARNPULSE_CLICKHOUSE__URL"].rsplit("/", 1)[0] + "/"
    else:
        base = f"chdb://{pipeline.home / 'ceiling-chdb'}?database="
    # The pipeline's cluster (its processes' environment, not this one's): its replicated tables.
    cluster = pipeline.env.get("LEARNPULSE_CLICKHOUSE__CLUSTER__NAME") or None
    out.append(insert_ceiling(base, envs, args.ceiling_statements, settings.sink.max_rows, cluster))
    return out


def _wait_credential_known(gateway_url: str, credential: tuple[str, str], timeout: float = 60) -> None:
    """Gateways reload credentials every few seconds: ask until this one is known, before the
    load (a burst of 401s would also trip the gateway's guard against guessing)."""
    from benchmarks.end_to_end.traffic import Client

    client = Client(gateway_url, credential)
    deadline = time.monotonic() + timeout
    try:
        while True:
            status, _h, _b = client.request("GET", "/statements?limit=1")
            if status == 200:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the gateway does not take the new credential: {status} after {timeout:.0f}s")
            time.sleep(1)
    finally:
        client.close()


def _settings(pipeline):
    from learnpulse.settings import Settings

    return Settings(home=pipeline.home)


def _engine_factory(url: str):
    from sinks.engines import engine_from_url

    return lambda: engine_from_url(url)


def _interrupt(_signum, _frame):
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
