"""One process of each stage next to two, in one run: gateways, sinks, stream workers; the
end-to-end figure on one Kafka broker next to a 3-broker cluster; the memory of every process.

Run as ``python -m benchmarks.bench_scaleout`` (``--help``). Everything is private to the run:
Kafka brokers (our launcher) and Debian's clickhouse-server in a temporary LEARNPULSE_HOME on
free loopback ports; every learnpulse process started through the CLI. Bounded: each stage
stops after ``--timeout`` s whatever happens, and the run prints its progress to stderr.

- **gateways**: ``learnpulse gateway --no-sinks`` × 1 and × 2, fed by aiohttp clients in
  this process (``benchmarks.bench_gateway.load``: keep-alive connections, closed loop) with
  single-statement POSTs (what course content in browsers sends) and ``--batch`` statements
  per POST: straight to the gateway(s) (clients split between them) and through Debian's
  HAProxy (``learnpulse.balancer``, deploy/haproxy/haproxy.cfg) in front of one and of two.
  Statements/s acknowledged (after Kafka's transaction committed, acks=all). The gateways'
  per-client limits are off (one client address sends everything). One more row: the
  gateway with the sinks on embedded chDB in the same process (the one-machine set-up).
- **sinks**: ``--statements`` simulator statements written to ``xapi.statements`` once; then
  ``learnpulse sink --table statements`` × 1 and × 2 (one consumer group, sharing the 12
  partitions, each run a fresh group and a fresh database) until the group has committed the
  end of every partition. Rate: from the first rows written to the last commit.
- **workers**: the same topic, ``learnpulse worker`` × 1 and × 2 on a fresh app id
  (``benchmarks.bench_streams._run_workers``: the workers' own statements counter, from the
  first batch to the last statement).
- **cluster**: per Kafka form (1 broker; 3 brokers with replication 3 and
  ``min.insync.replicas=2``): a gateway, a worker and every sink as one pipeline; ``--batch``
  statements per POST for ``--duration`` s; accepted/s, and end to end = statements accepted
  / seconds from the first POST until the worker has processed and the statements sink
  written every one of them.

The ratio columns are two processes' rate over one's: by the wall clock, and per CPU-second
the stage's own processes used (near 1x: two processes do the same work for the same CPU, so
on cores of their own they would scale with them). On a machine with fewer spare cores than
processes the two share the same cores, so the ratio shows how much of the stage's work
was waiting (on Kafka, ClickHouse, the network) rather than computing, not how the stage
scales on machines of its own; the header gives the core count and load average.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import bench_gateway as bg
from benchmarks.bench_streams import _counter as worker_counter
from benchmarks.bench_streams import _run_workers
from benchmarks.faults.procs import elapsed_echo, free_port, free_port_block
from benchmarks.memory import MemorySampler

REPO = Path(__file__).resolve().parents[1]
STAGES = ("gateways", "sinks", "workers", "cluster")


@dataclass
class Child:
    """A learnpulse subcommand in its own process, its output in a log file."""

    name: str
    popen: subprocess.Popen
    log: Path
    metrics_port: int

    @property
    def pid(self) -> int:
        return self.popen.pid

    def check(self) -> None:
        if self.popen.poll() is not None:
            tail = self.log.read_text(errors="replace").strip().splitlines()[-5:]
            raise RuntimeError(f"{self.name} exited {self.popen.returncode}: {' | '.join(tail)} (log {self.log})")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)


def spawn(settings, name: str, args: list[str], env: dict[str, str] | None = None) -> Child:
    port = free_port()
    log = settings.home / f"{name}.log"
    full = {**os.environ, **settings.to_env(), "LEARNPULSE_METRICS_PORT": str(port), **(env or {})}
    with open(log, "ab") as out:
        popen = subprocess.Popen([sys.executable, "-m", "learnpulse", *args], cwd=REPO, env=full, stdout=out,
                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)  # fmt: skip
    return Child(name, popen, log, port)


def cli(settings, *args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([sys.executable, "-m", "learnpulse", *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, **settings.to_env(), **(env or {})}, timeout=300)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"learnpulse {' '.join(args)} failed: {done.stderr.strip()[-1500:]}")
    return done.stdout


def metric(port: int, pattern: str) -> float:
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return 0.0
    return sum(float(v) for v in re.findall(pattern + r" ([0-9.e+]+)", body))


ROWS_WRITTEN = r'learnpulse_rows_written_total\{table="statements"\}'
MESSAGES_IN = r"learnpulse_messages_in_total\{[^}]*\}"


def wait(condition, timeout: float, what: str, children: list[Child] = (), step: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for c in children:
            c.check()
        value = condition()
        if value:
            return value
        time.sleep(step)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")


# -- the stack --------------------------------------------------------------------------


@dataclass
class Stack:
    """Kafka (``brokers`` nodes) and a clickhouse-server in ``home``; learnpulse settings for them."""

    settings: object
    brokers: list = field(default_factory=list)
    server: object = None

    @classmethod
    def up(cls, home: Path, brokers: int, echo, server=None, memory: MemorySampler | None = None) -> Stack:
        from learnpulse.settings import ClickHouseSettings, KafkaSettings, Settings
        from learnpulse.stack import ClickHouseServer, kafka_brokers, kafka_up
        from learnpulse.topics import ensure_topics

        home.mkdir(parents=True, exist_ok=True)
        base = free_port_block(2 * brokers)
        settings = Settings(
            home=home, log_level="WARNING", metrics_port_base=free_port(),
            kafka=KafkaSettings(port=base, controller_port=base + 1, brokers=brokers, topic_prefix="sb."),
            clickhouse=ClickHouseSettings(server_tcp_port=free_port(), server_http_port=free_port()),
        )  # fmt: skip
        echo(f"starting {brokers} Kafka broker(s)" + ("" if server else " and clickhouse-server") + f" in {home}")
        stack = cls(settings, kafka_brokers(settings), server)
        kafka_up(settings, timeout=180)
        if stack.server is None:
            stack.server = ClickHouseServer(settings)
            stack.server.up(timeout=120)
        ensure_topics(settings.kafka.bootstrap_servers, "sb.", settings.kafka.topic_replication)
        if memory is not None:
            for b in stack.brokers:
                memory.watch(f"kafka broker (heap {settings.kafka.heap})", b.pid())
        return stack

    def database(self, name: str) -> dict[str, str]:
        """A fresh database with learnpulse's tables; the env naming it."""
        url = self.server.url_for(name)
        env = {"LEARNPULSE_CLICKHOUSE__URL": url}
        cli(self.settings, "db", "migrate", env=env)
        return env

    def down(self, server_too: bool = True) -> None:
        for b in self.brokers:
            b.stop()
        if server_too and self.server is not None:
            self.server.stop()


# -- gateways ---------------------------------------------------------------------------

NO_LIMITS = {"LEARNPULSE_GATEWAY__REQUESTS_PER_S_PER_ADDRESS": "0", "LEARNPULSE_GATEWAY__REQUESTS_PER_S_PER_KEY": "0",
             "LEARNPULSE_GATEWAY__TRUSTED_PROXIES": '["127.0.0.1"]'}  # fmt: skip


@dataclass
class Rate:
    """Statements per second of wall clock, and per CPU-second the stage's processes used."""

    wall: float
    per_cpu: float


@dataclass
class Row:
    stage: str
    shape: str
    one: Rate
    two: Rate | None
    note: str = ""

    def line(self) -> str:
        def pair(attr: str) -> str:
            one = getattr(self.one, attr)
            two = None if self.two is None else getattr(self.two, attr)
            ratio = "-" if not two or not one else f"{two / one:.2f}x"
            return f"{one:>12,.0f}{'-' if two is None else f'{two:,.0f}':>12}{ratio:>8}"

        return f"{self.stage:<38}{self.shape:<26}{pair('wall')}{pair('per_cpu')}  {self.note}"


def start_gateway(settings, name: str, env: dict[str, str], sinks: bool = False) -> tuple[Child, str]:
    port = free_port()
    child = spawn(settings, name, ["gateway", "--sinks" if sinks else "--no-sinks"],
                  {**env, **NO_LIMITS, "LEARNPULSE_GATEWAY__PORT": str(port)})  # fmt: skip
    url = f"http://127.0.0.1:{port}/xapi"
    bg.wait_http(url + "/about", 180, child.popen, child.log)
    return child, url


def credential(settings, env: dict[str, str]) -> dict[str, str]:
    out = cli(settings, "credentials", "add", "--school", f"scale-{uuid.uuid4().hex[:6]}", env=env)
    key, secret = re.search(r"key:\s+(\S+)", out).group(1), re.search(r"secret:\s+(\S+)", out).group(1)
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode(),
            "X-Experience-API-Version": "1.0.3", "Content-Type": "application/json"}  # fmt: skip


WARMUP_S = 2.0  # of each gateway row: load not counted


class CpuSpan:
    """CPU seconds ``pids`` use from ``after_s`` from now until :meth:`stop` (a row's measured window)."""

    def __init__(self, pids: list[int], after_s: float = 0.0) -> None:
        self.pids = pids
        self.start: float | None = None
        self._timer = threading.Timer(after_s, self._begin)
        self._timer.start()

    def _begin(self) -> None:
        self.start = cpu_of(self.pids)

    def stop(self) -> float:
        self._timer.cancel()
        if self.start is None:
            return 0.0
        return cpu_of(self.pids) - self.start


def cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += bg.cpu_seconds(pid)
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def post_for(urls: list[str], headers: dict[str, str], size: int, clients: int, duration: float,
             warmup: float = WARMUP_S) -> tuple[float, dict[int, int]]:  # fmt: skip
    """Statements/s acknowledged by ``urls`` together (``clients`` connections split between them)."""

    async def run():
        per = max(1, clients // len(urls))
        return await asyncio.gather(*(bg.load(f"{u}/statements", headers, size, 10, per, duration, warmup, "scale")
                                      for u in urls))  # fmt: skip

    results = asyncio.run(run())
    errors: dict[int, int] = {}
    for r in results:
        for k, v in r.errors.items():
            errors[k] = errors.get(k, 0) + v
    return sum(r.statements for r in results) / duration, errors


def gateways(stack: Stack, args, echo, memory: MemorySampler) -> list[Row]:
    from learnpulse.balancer import Balancer
    from learnpulse.settings import BalancerSettings

    env = stack.database(f"gw_{uuid.uuid4().hex[:6]}")
    headers = credential(stack.settings, env)
    gws = [start_gateway(stack.settings, f"gateway-{n}", env) for n in (1, 2)]
    for child, _url in gws:
        memory.watch("gateway (--no-sinks)", child.pid)
    (one, url1), (_two, url2) = gws
    rows: list[Row] = []
    notes: dict[int, list[str]] = {}

    def measure(label: str, urls: list[str], size: int, pids: list[int] | None = None) -> Rate:
        memory.loaded(True)
        cpu = CpuSpan(pids or [child.pid for child, _url in gws], after_s=WARMUP_S)
        rate, errors = post_for(urls, headers, size, args.clients, args.duration, WARMUP_S)
        used = cpu.stop()
        memory.loaded(False)
        if errors:
            notes.setdefault(size, []).append(f"{label}: {errors}")
        echo(f"  {label}, {size} per POST: {rate:,.0f} statements/s" + (f" (errors {errors})" if errors else ""))
        return Rate(rate, rate * args.duration / used if used else 0.0)

    try:
        # Warm both gateways up (first connections, the LRS store's first writes), not reported.
        echo("gateways: warming up")
        post_for([url1, url2], headers, 1, args.clients, min(args.duration, 5), warmup=0)
        for size in (1, args.batch):
            shape = "1 statement per POST" if size == 1 else f"{size} statements per POST"
            echo(f"gateways, {shape}: direct")
            d1 = measure("1 gateway", [url1], size)
            d2 = measure("2 gateways", [url1, url2], size)
            rows.append(Row("gateways, direct", shape, d1, d2))
            for n in (1, 2):
                settings = stack.settings.model_copy(update={"balancer": BalancerSettings(port=free_port())})
                backends = [u.removeprefix("http://").removesuffix("/xapi") for u in (url1, url2)[:n]]
                balancer = Balancer(settings, backends)
                balancer.up()
                memory.watch("haproxy", balancer.pid())
                try:
                    # Health checks mark every backend up before the row starts.
                    time.sleep(3)
                    rate = measure(f"HAProxy + {n} gateway(s)", [f"http://127.0.0.1:{settings.balancer.port}/xapi"],
                                   size)  # fmt: skip
                finally:
                    memory.unwatch(balancer.pid())
                    balancer.stop()
                if n == 1:
                    b1 = rate
            rows.append(Row("gateways behind HAProxy", shape, b1, rate))
    finally:
        for child, _url in gws:
            memory.unwatch(child.pid)
            child.stop()
    # The one-machine set-up: the gateway with every sink on embedded chDB, in one process.
    chdb_env = {"LEARNPULSE_CLICKHOUSE__URL": f"chdb://{stack.settings.home / 'chdb-gateway'}"}
    cli(stack.settings, "db", "migrate", env=chdb_env)
    child, url = start_gateway(stack.settings, "gateway-chdb", chdb_env, sinks=True)
    memory.watch("gateway + every sink on chDB (one process)", child.pid)
    try:
        echo("gateway + sinks on chDB")
        rows.append(Row("gateway + sinks, chDB (1 process)", f"{args.batch} statements per POST",
                        measure("gateway + sinks on chDB", [url], args.batch, [child.pid]), None,
                        "one process owns chDB"))  # fmt: skip
    finally:
        memory.unwatch(child.pid)
        child.stop()
    for row in rows:
        size = 1 if row.shape.startswith("1 ") else args.batch
        if notes.get(size):
            row.note = "answers not 2xx: " + "; ".join(notes[size])
    return rows


# -- sinks and workers, on a pre-filled topic -------------------------------------------


def prefill(stack: Stack, args, echo) -> int:
    from learnpulse.pipeline import run_simulator
    from producers.simulator import SCALES, SimulationConfig

    echo(f"simulating {args.statements:,} statements ({args.scale}, ≤ {args.per_envelope} per message) into Kafka")
    run_simulator(stack.settings, SimulationConfig(seed=11, **SCALES[args.scale]), count=args.statements, rate=None,
                  per_envelope=args.per_envelope)  # fmt: skip
    return args.statements


def end_offsets(bootstrap: str, topic: str):
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        return consumer.end_offsets(tps)
    finally:
        consumer.close()


def committed_all(admin, group: str, ends) -> bool:
    offsets = admin.list_group_offsets({group: None}).get(group, {})
    return all(tp in offsets and offsets[tp].offset >= end for tp, end in ends.items() if end > 0)


def run_sinks(stack: Stack, n: int, total: int, timeout: float, memory: MemorySampler) -> Rate:
    from kafka import KafkaAdminClient

    from schemas.topics import Topic

    env = stack.database(f"sink{n}_{uuid.uuid4().hex[:6]}")
    group = f"sb-sink-{uuid.uuid4().hex[:6]}"
    ends = end_offsets(stack.settings.kafka.bootstrap_servers, Topic.STATEMENTS.physical("sb."))
    admin = KafkaAdminClient(bootstrap_servers=stack.settings.kafka.bootstrap_servers)
    children = [spawn(stack.settings, f"sink-{n}-{i}", ["sink", "--table", "statements", "--group", group,
                                                         "--instance-id", f"{group}-{i}"], env)
                for i in range(n)]  # fmt: skip
    for c in children:
        memory.watch("sink process (statements sink)", c.pid, idle=False)
    memory.loaded(True)
    try:
        # The clock starts at the first messages read (start-up and the group's join not counted).
        wait(lambda: sum(metric(c.metrics_port, MESSAGES_IN) for c in children), timeout,
             "the sinks' first messages", children, step=0.05)  # fmt: skip
        first_t, first_cpu = time.monotonic(), cpu_of([c.pid for c in children])
        # The sink's group is "<--group>-<sink name>" (sinks.specs).
        wait(lambda: committed_all(admin, f"{group}-statements", ends), timeout, "the sinks to commit every partition's end",
             children)  # fmt: skip
        wall, cpu = time.monotonic() - first_t, cpu_of([c.pid for c in children]) - first_cpu
        return Rate(total / wall, total / cpu if cpu else 0.0)
    finally:
        memory.loaded(False)
        for c in children:
            memory.unwatch(c.pid)
            c.stop()
        admin.close()


class _WorkerMemory:
    """Hands ``_run_workers``'s processes to the sampler."""

    def __init__(self, memory: MemorySampler) -> None:
        self.memory = memory

    def started(self, pid: int) -> None:
        self.memory.watch("stream worker", pid, idle=False)
        self.memory.loaded(True)

    def stopping(self, pid: int) -> None:
        self.memory.loaded(False)
        self.memory.unwatch(pid)


# -- one broker next to the cluster -----------------------------------------------------


def pipeline_rate(stack: Stack, args, echo, memory: MemorySampler) -> tuple[float, float]:
    """(accepted statements/s, end-to-end statements/s) of gateway + worker + every sink."""
    env = stack.database(f"e2e_{uuid.uuid4().hex[:6]}")
    headers = credential(stack.settings, env)
    gateway, url = start_gateway(stack.settings, f"e2e-gateway-{len(stack.brokers)}", env)
    worker = spawn(stack.settings, f"e2e-worker-{len(stack.brokers)}",
                   ["worker", "--name", f"e2e{len(stack.brokers)}", "--app-id", f"sb.e2e-{uuid.uuid4().hex[:6]}",
                    "--web-port", str(free_port())], env)  # fmt: skip
    sink = spawn(stack.settings, f"e2e-sink-{len(stack.brokers)}", ["sink"], env)
    children = [gateway, worker, sink]
    memory.watch("sink process (every sink)", sink.pid)
    memory.watch("stream worker", worker.pid)
    memory.watch("gateway (--no-sinks)", gateway.pid)
    try:
        # The worker joins its group and restores its (empty) tables before the clock starts.
        time.sleep(10)
        for c in children:
            c.check()
        started = time.monotonic()
        memory.loaded(True)
        rate, errors = post_for([url], headers, args.batch, args.clients, args.duration, warmup=0)
        accepted = rate * args.duration
        if errors:
            echo(f"  answers not 2xx: {errors}")

        def through() -> bool:
            return (worker_counter(worker.metrics_port) >= accepted
                    and metric(sink.metrics_port, ROWS_WRITTEN) >= accepted)  # fmt: skip

        wait(through, args.timeout, "the worker and the sinks to take every accepted statement", children)
        memory.loaded(False)
        return rate, accepted / (time.monotonic() - started)
    finally:
        memory.loaded(False)
        for c in children:
            memory.unwatch(c.pid)
            c.stop()


# -- the run ----------------------------------------------------------------------------


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_scaleout", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--stages", default=",".join(STAGES), help=f"which of {','.join(STAGES)} (default all)")
    ap.add_argument("--statements", type=int, default=40_000, help="pre-filled statements for sinks/workers (40000)")
    ap.add_argument("--per-envelope", type=int, default=20,
                    help="most statements of a learner per Kafka message when pre-filling (20; 1: browsers' shape)")
    ap.add_argument("--scale", default="medium", help="simulator scale of the pre-fill (medium: 10,000 learners)")
    ap.add_argument("--duration", type=float, default=10, help="seconds per gateway row and per cluster run (10)")
    ap.add_argument("--batch", type=int, default=100, help="statements per POST of the batch rows (100)")
    ap.add_argument("--clients", type=int, default=64, help="client connections in all (64)")
    ap.add_argument("--timeout", type=float, default=600, help="most seconds any one measurement may take (600)")
    return ap.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    stages = [s for s in args.stages.split(",") if s]
    unknown = set(stages) - set(STAGES)
    if unknown:
        raise SystemExit(f"unknown stage(s) {', '.join(sorted(unknown))}; choose from {', '.join(STAGES)}")
    echo = elapsed_echo()
    memory = MemorySampler().start()
    rows: list[Row] = []
    cluster: list[tuple[int, float, float]] = []
    home = Path(tempfile.mkdtemp(prefix="lp-bench-scaleout-"))
    stack = cluster_stack = None
    loads = [os.getloadavg()[0]]
    try:
        stack = Stack.up(home / "single", 1, echo, memory=memory)
        memory.watch("clickhouse-server", stack.server.pid())
        if "gateways" in stages:
            rows += gateways(stack, args, echo, memory)
            loads.append(os.getloadavg()[0])
        if "sinks" in stages or "workers" in stages:
            total = prefill(stack, args, echo)
            if "sinks" in stages:
                rates = []
                for n in (1, 2):
                    echo(f"sinks: {n} process(es) on {total:,} statements")
                    rates.append(run_sinks(stack, n, total, args.timeout, memory))
                    echo(f"  {rates[-1].wall:,.0f} statements/s")
                rows.append(Row("statements sinks (clickhouse-server)", f"pre-filled, ≤{args.per_envelope}/message",
                                *rates))  # fmt: skip
                loads.append(os.getloadavg()[0])
            if "workers" in stages:
                rates = []
                hooks = _WorkerMemory(memory)
                for n in (1, 2):
                    echo(f"workers: {n} process(es) on {total:,} statements")
                    wall, per_cpu, *_stalls = _run_workers(stack.settings, total, n, args.timeout, hooks)
                    rates.append(Rate(wall, per_cpu))
                    echo(f"  {wall:,.0f} statements/s")
                rows.append(Row("stream workers", f"pre-filled, ≤{args.per_envelope}/message", *rates))
                loads.append(os.getloadavg()[0])
        if "cluster" in stages:
            echo(f"end to end on 1 broker: {args.batch} per POST for {args.duration:.0f}s")
            accepted, e2e = pipeline_rate(stack, args, echo, memory)
            cluster.append((1, accepted, e2e))
            echo(f"  accepted {accepted:,.0f}/s, end to end {e2e:,.0f}/s")
            cluster_stack = Stack.up(home / "cluster", 3, echo, server=stack.server, memory=memory)
            echo(f"end to end on 3 brokers (replication 3, min.insync 2): {args.batch} per POST")
            accepted, e2e = pipeline_rate(cluster_stack, args, echo, memory)
            cluster.append((3, accepted, e2e))
            echo(f"  accepted {accepted:,.0f}/s, end to end {e2e:,.0f}/s")
            loads.append(os.getloadavg()[0])
    finally:
        memory.stop()
        echo("stopping")
        if cluster_stack is not None:
            cluster_stack.down(server_too=False)
        if stack is not None:
            stack.down()
    # Kept only when something failed (the traceback names its logs).
    shutil.rmtree(home, ignore_errors=True)
    print(report(args, rows, cluster, memory, loads))
    return 0


def report(args, rows: list[Row], cluster, memory: MemorySampler, loads: list[float]) -> str:
    out = [
        f"\nscale-out on {os.cpu_count()} cores (load average {min(loads):.1f}–{max(loads):.1f} during the run); "
        f"{args.clients} client connections; rates in statements/s",
        f"{'':<64}{'statements/s (wall clock)':^32}{'statements per CPU-second':^32}",
        f"{'stage':<38}{'shape':<26}" + f"{'1 process':>12}{'2':>12}{'2 / 1':>8}" * 2,
    ]
    out += [r.line() for r in rows]
    if cluster:
        out += ["", f"end to end (gateway + worker + every sink, {args.batch} per POST, {args.duration:.0f}s)",
                f"{'Kafka':<40}{'accepted /s':>12}{'end to end /s':>15}"]  # fmt: skip
        for brokers, accepted, e2e in cluster:
            form = "1 broker" if brokers == 1 else f"{brokers} brokers, replication 3, min.insync 2"
            out.append(f"{form:<40}{accepted:>12,.0f}{e2e:>15,.0f}")
        if len(cluster) == 2 and cluster[0][2]:
            out.append(f"{'cluster / single':<40}{cluster[1][1] / cluster[0][1]:>11.2f}x"
                       f"{cluster[1][2] / cluster[0][2]:>14.2f}x")  # fmt: skip
    out += ["", "resident memory (VmRSS; peak: the kernel's VmHWM), per process", memory.table()]
    out += ["", "per CPU-second: statements over the CPU time the stage's own processes used (gateways: both, "
            "the idle one too; not Kafka's, ClickHouse's or HAProxy's): near 1x, two processes do the same work "
            "for the same CPU, and on cores of their own would scale with them."]  # fmt: skip
    if (os.cpu_count() or 1) < 4:
        out += ["", f"note: {os.cpu_count()} cores are shared by the load generator, Kafka, ClickHouse and every "
                "process measured: two processes cannot reach 2x (nor 1.8x) here; the ratio shows how much of a "
                "stage's time is spent waiting rather than computing. Measure scale-out on machines of their own."]  # fmt: skip
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
