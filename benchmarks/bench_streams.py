"""How many statements/s does one stream worker process? Next to a bare aiokafka consumer.

Run as ``python -m benchmarks.bench_streams`` (``--count N``, ``--rounds R``,
``--per-envelope 1`` for the shape of browsers' traffic, one statement per message,
``--bootstrap HOST:PORT`` to use a running broker, ``--two-workers`` for a second row
with two worker processes sharing the partitions, ``--rate N`` for a row fed live at N
statements/s, see :class:`LiveFeed`).

Set-up: a private Kafka broker (our launcher), the simulator (``--scale medium``: 20
schools, 10,000 learners) writes ``--count`` statements to ``xapi.statements`` (each
message one learner's envelope of up to 20 statements). Then, per round:

- **ceiling**: a bare ``aiokafka`` consumer reads every message of the topic from the
  start (no decoding, no state, nothing produced) — what any Python consumer of this topic
  on this machine can at best do;
- **ceiling + decode**: the same, decoding each envelope (``StatementEnvelope.decode``);
- **worker**: ``learnpulse worker`` with a fresh app id (so it starts from offset 0 with
  empty tables) in its own process, computing everything (engagement, mastery, activity,
  cohort feed and health) with RocksDB tables and changelogs. Its rate is read from its
  own Prometheus counter, from the first processed batch to the last statement (Faust's
  start-up is not counted).

The machine is shared (Kafka, the worker and the reader all run here, and other users may
load it): rows alternate within each round and each row keeps its best round.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import NamedTuple

from benchmarks.ports import free_port

REPO = Path(__file__).resolve().parents[1]


async def _read_all(
    bootstrap: str, topic: str, decode: bool, partitions: int = 12
) -> tuple[int, int, float, float]:
    """Read every message of ``topic``; returns (messages, statements, seconds, CPU seconds)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from schemas.envelope import StatementEnvelope

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, max_partition_fetch_bytes=8 << 20,
        fetch_max_bytes=64 << 20,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > 0}
        messages = statements = 0
        started = time.perf_counter()
        cpu = time.process_time()
        while remaining:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for tp, msgs in batch.items():
                messages += len(msgs)
                if decode:
                    for m in msgs:
                        statements += len(StatementEnvelope.decode(m.value).entries)
                if msgs and msgs[-1].offset + 1 >= ends[tp]:
                    remaining.discard(tp)
        return messages, statements, time.perf_counter() - started, time.process_time() - cpu
    finally:
        await consumer.stop()


def _counter(port: int) -> float:
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return 0.0
    m = re.search(r'learnpulse_stream_statements_total\{agent="learner"\} ([0-9.e+]+)', body)
    return float(m.group(1)) if m else 0.0


def _longest_pause_bound(port: int) -> float:
    """The worker's longest pause between two learner batches, as its histogram knows it: the
    smallest bucket bound (s) that holds every pause (``inf``: beyond the last bucket; 0: none yet)."""
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return 0.0
    buckets = re.findall(
        r'learnpulse_stream_batch_pause_seconds_bucket\{agent="learner",le="([^"]+)"\} ([0-9.e+]+)', body)
    total = max((float(n) for _le, n in buckets), default=0.0)
    if not total:
        return 0.0
    return min(float(le) for le, n in buckets if float(n) >= total)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class WorkerRun(NamedTuple):
    """Statements/s from the last poll that saw none counted to the one that saw the last, by
    the wall clock and per CPU-second the workers used in that span, and the longest time in that span in which
    their statements counter did not move (a stalled commit shows here; resolution: one
    poll of /metrics, about 0.1 s), and the longest pause between two batches of a worker's
    learner agent as its own histogram bounds it (a bucket bound, s)."""

    per_wall: float
    per_cpu: float
    longest_stall_s: float
    longest_pause_bound_s: float


def _assigned_partitions(port: int) -> float:
    """The worker's ``learnpulse_stream_assigned_partitions`` gauge (0: none yet, or no answer)."""
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return 0.0
    m = re.search(r"^learnpulse_stream_assigned_partitions ([0-9.e+]+)", body, re.MULTILINE)
    return float(m.group(1)) if m else 0.0


def _run_workers(
    settings, total: int, workers: int, timeout: float, hooks=None, ready=None, poll_s: float = 0.1,
) -> WorkerRun:
    """Start ``workers`` processes on a fresh app id and measure them (see :class:`WorkerRun`).

    ``hooks``: told each process's pid once ``started`` and before ``stopping`` it
    (bench_scaleout samples their memory). ``ready``: called with the workers' metrics ports
    once they run, before the measurement starts (the live row starts its feed there).
    ``poll_s``: how often the workers' /metrics are read (each read costs the worker a few ms:
    at a live trickle, 0.1 s would add about a tenth to its CPU per statement).
    """
    app_id = f"{settings.kafka.topic_prefix}bench-{uuid.uuid4().hex[:6]}"
    procs, ports = [], []
    for i in range(workers):
        port = free_port()
        env = {**os.environ, **settings.to_env(), "LEARNPULSE_METRICS_PORT": str(port)}
        log = open(settings.home / f"worker-{app_id}-{i}.log", "wb")  # noqa: SIM115 (closed with the process)
        procs.append((subprocess.Popen(
            [sys.executable, "-m", "learnpulse", "worker", "--name", f"{app_id}-{i}", "--app-id", app_id,
             "--web-port", str(free_port())],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
        ), log))
        ports.append(port)
        if hooks is not None:
            hooks.started(procs[-1][0].pid)
    try:
        if ready is not None:
            ready(ports, procs)
        # The span starts at the last poll that saw nothing counted yet (its time and the
        # workers' CPU then): a small run can be counted whole between two polls, and a
        # span from the first poll that saw statements would then be empty.
        before_t, before_cpu = time.monotonic(), sum(_cpu_seconds(p.pid) for p, _log in procs)
        first_t = first_cpu = None
        deadline = time.monotonic() + timeout
        n = last_n = 0.0
        moved_at = longest_stall = 0.0
        while time.monotonic() < deadline:
            n = sum(_counter(p) for p in ports)
            now = time.monotonic()
            if not n:
                before_t, before_cpu = now, sum(_cpu_seconds(p.pid) for p, _log in procs)
            elif first_t is None:
                first_t, first_cpu = before_t, before_cpu
            if n != last_n:
                if first_t is not None and moved_at:
                    longest_stall = max(longest_stall, now - moved_at)
                last_n, moved_at = n, now
            if n >= total:
                cpu = sum(_cpu_seconds(p.pid) for p, _log in procs) - first_cpu
                pause = max(_longest_pause_bound(p) for p in ports)
                return WorkerRun(n / (now - first_t), n / cpu, longest_stall, pause)
            for p, _log in procs:
                if p.poll() is not None:
                    raise RuntimeError(f"worker exited {p.returncode}; see {settings.home}")
            time.sleep(poll_s)
        raise RuntimeError(f"workers processed {n:.0f} of {total} statements in {timeout:.0f}s")
    finally:
        for p, log in procs:
            if hooks is not None:
                hooks.stopping(p.pid)
            p.terminate()
        for p, log in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
            log.close()


class LiveFeed:
    """The live row: the simulator writes to an empty topic at ``rate`` statements/s while
    one worker reads it, as the gateway's traffic reaches it (a trickle, not a backlog).

    The feed starts once the worker holds its partitions, so the worker never sees a backlog
    of its start-up; its cost is then the one of small batches at that rate.
    """

    def __init__(self, settings, scale: str, rate: float, seconds: float, per_envelope: int) -> None:
        self.settings, self.scale, self.rate, self.per_envelope = settings, scale, rate, per_envelope
        self.count = int(rate * seconds)
        self.thread = None
        self.error: BaseException | None = None

    def start(self, ports: list[int], procs) -> None:
        deadline = time.monotonic() + 120
        while not all(_assigned_partitions(p) for p in ports):
            if time.monotonic() > deadline:
                raise RuntimeError("the worker holds no partition after 120 s")
            for proc, _log in procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"worker exited {proc.returncode}")
            time.sleep(0.2)
        self.thread = threading.Thread(target=self.feed, daemon=True)
        self.thread.start()

    def feed(self) -> None:
        from learnpulse.pipeline import run_simulator
        from producers.simulator import SCALES, SimulationConfig

        try:
            run_simulator(self.settings, SimulationConfig(seed=7, **SCALES[self.scale]), count=self.count,
                          rate=self.rate, per_envelope=self.per_envelope)
        except BaseException as err:  # noqa: BLE001 (reported by run())
            self.error = err

    def run(self, timeout: float) -> WorkerRun:
        from learnpulse.topics import ensure_topics

        prefix = f"bl{uuid.uuid4().hex[:6]}."
        kafka = self.settings.kafka.model_copy(update={"topic_prefix": prefix})
        settings = self.settings.model_copy(update={"kafka": kafka})
        ensure_topics(kafka.bootstrap_servers, prefix)
        self.settings = settings
        try:
            return _run_workers(settings, self.count, 1, timeout, ready=self.start, poll_s=1.0)
        finally:
            if self.thread is not None:
                self.thread.join()
            if self.error is not None:
                raise RuntimeError(f"the live feed failed: {self.error!r}")


def main() -> None:
    from learnpulse.pipeline import run_simulator
    from learnpulse.settings import KafkaSettings, Settings
    from learnpulse.stack import KafkaBroker
    from learnpulse.topics import ensure_topics
    from producers.simulator import SCALES, SimulationConfig
    from schemas.topics import Topic

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=200_000, help="statements in the topic")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--bootstrap", default=None, help="use this broker instead of starting one")
    parser.add_argument("--scale", choices=sorted(SCALES), default="medium")
    parser.add_argument("--two-workers", action="store_true", help="also run two workers sharing the partitions")
    parser.add_argument("--per-envelope", type=int, default=20,
                        help="most statements of a learner per message; 1 is the shape of browsers' traffic")
    parser.add_argument("--rate", type=float, default=None,
                        help="also run one worker fed live at this many statements/s (an empty topic, "
                             "the simulator writing while the worker reads), e.g. 1000")
    parser.add_argument("--live-seconds", type=float, default=30.0, help="how long the live feed runs")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="lp-bench-streams-"))
    broker = None
    if args.bootstrap:
        host, port = args.bootstrap.rsplit(":", 1)
        kafka = KafkaSettings(host=host, port=int(port))
    else:
        kafka = KafkaSettings(port=free_port(), controller_port=free_port())
    settings = Settings(home=home, kafka=kafka, metrics_port_base=free_port(), log_level="WARNING")
    if not args.bootstrap:
        broker = KafkaBroker(settings)
        print(f"starting a private Kafka broker in {home} …", flush=True)
        broker.up(timeout=120)
    try:
        prefix = f"bs{uuid.uuid4().hex[:6]}."
        settings = settings.model_copy(update={"kafka": kafka.model_copy(update={"topic_prefix": prefix})})
        ensure_topics(kafka.bootstrap_servers, prefix)
        topic = Topic.STATEMENTS.physical(prefix)
        print(f"simulating {args.count:,} statements ({args.scale}) …", flush=True)
        run_simulator(settings, SimulationConfig(seed=7, **SCALES[args.scale]), count=args.count, rate=None,
                      per_envelope=args.per_envelope)
        messages, statements, _, _ = asyncio.run(_read_all(kafka.bootstrap_servers, topic, decode=True))
        if statements != args.count:
            raise RuntimeError(f"topic holds {statements} statements, expected {args.count}")

        best: dict[str, tuple[float, float]] = {}
        stalls: list[tuple[float, float]] = []  # longest stall and pause bound of each worker run

        def reader(decode: bool) -> tuple[float, float]:
            _m, _s, wall, cpu = asyncio.run(_read_all(kafka.bootstrap_servers, topic, decode))
            return statements / wall, statements / cpu

        def workers(n: int) -> tuple[float, float]:
            run = _run_workers(settings, statements, n, 900)
            stalls.append((run.longest_stall_s, run.longest_pause_bound_s))
            return run.per_wall, run.per_cpu

        def live() -> tuple[float, float]:
            feed = LiveFeed(settings, args.scale, args.rate, args.live_seconds, args.per_envelope)
            run = feed.run(args.live_seconds + 900)
            stalls.append((run.longest_stall_s, run.longest_pause_bound_s))
            return run.per_wall, run.per_cpu

        for round_no in range(args.rounds):
            print(f"round {round_no + 1}/{args.rounds} …", flush=True)
            rows = {
                "ceiling": lambda: reader(False),
                "decode": lambda: reader(True),
                "worker": lambda: workers(1),
            }
            if args.two_workers:
                rows["two"] = lambda: workers(2)
            if args.rate:
                rows["live"] = lambda: live()
            for name, run in rows.items():
                wall, per_cpu = run()
                old = best.get(name, (0.0, 0.0))
                best[name] = (max(old[0], wall), max(old[1], per_cpu))

        ceiling = best["ceiling"]
        load = os.getloadavg()[0]
        print(
            f"\n{statements:,} statements in {messages:,} messages ({statements / messages:.1f} per envelope); "
            f"{os.cpu_count()} cores, load average {load:.1f} at the end; best of {args.rounds} rounds\n"
        )
        print(f"{'row':<46}{'statements/s':>14}{'vs ceiling':>12}{'per CPU-second':>16}{'vs ceiling':>12}")
        table = [
            ("bare aiokafka consumer (ceiling)", best["ceiling"]),
            ("bare aiokafka consumer + envelope decode", best["decode"]),
            ("learnpulse worker, 1 process", best["worker"]),
        ]
        if args.two_workers:
            table.append(("learnpulse worker, 2 processes (total)", best["two"]))
        if args.rate:
            table.append((f"learnpulse worker, fed live at {args.rate:,.0f}/s", best["live"]))
        for name, (wall, per_cpu) in table:
            print(f"{name:<46}{wall:>14,.0f}{wall / ceiling[0]:>11.2f}x{per_cpu:>16,.0f}{per_cpu / ceiling[1]:>11.2f}x")
        print(f"\nlongest time without a processed batch in a worker run (every round), seen from here: "
              f"{', '.join(f'{s:.2f}s' for s, _p in stalls)}; by the worker's pause histogram: "
              f"{', '.join(f'<= {p:g}s' for _s, p in stalls)}")
        for name, (_wall, per_cpu) in table[2:]:
            print(f"{name}: {1000 / per_cpu:.3f} CPU-s per 1,000 statements")
        print("\nper CPU-second: statements per second of CPU the process used — the rate on a core of its own,"
              " which a shared machine's wall clock does not show.")
    finally:
        if broker is not None:
            broker.stop()


if __name__ == "__main__":
    main()
