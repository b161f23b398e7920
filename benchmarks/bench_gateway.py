"""How many statements/s does the LRS gateway accept over HTTP? Ours next to Ralph LRS.

Run as ``python -m benchmarks.bench_gateway`` (``--duration S`` per row, ``--no-ralph``).

Ours: ``learnpulse gateway`` in its own process against a real Kafka broker started
here, with embedded chDB, twice: ``+sinks`` as a user runs it on one machine (the sinks
writing ClickHouse in that same process, competing for its CPU) and ``gateway`` alone
(``--no-sinks``: the accept path only). A POST is answered only after its Kafka
transaction committed (acks=all). Statements carry client-assigned ids (as cmi5 players
send them), so every request also reserves and confirms its ids in the accepted-id index
(the LRS store: SQLite in the gateway's home; two grouped transactions per group of requests). The ratio to Ralph is taken against the ``+sinks`` rows.

Ralph: ``ralph-malph[lrs,cli]`` (5.x) + ``requests`` in its own virtualenv under
``~/.cache/learnpulse/ralph-venv``, started with uvicorn directly, file-system backend.
Its file-system backend opens the store in *create* mode, so every POST after the first
fails (500); the launcher here switches its default write operation to *append* — the
only change made to Ralph.

The load generator is one asyncio/aiohttp client in this process with ``--concurrency``
connections, each POSTing batches of 1 or 100 distinct statements (ten learners per
batch of 100) for ``--duration`` seconds after a warm-up. Everything shares this
machine: Kafka, the server under test and the client.

``--quarantine``: instead, the same gateway (+sinks) fed valid traffic only, then with
every tenth request an invalid statement (an Open edX "GroupActivity" object, refused
with 400 and kept in the quarantine): the valid statements/s and the valid requests'
latencies of the two rows, side by side in the same run (the 0% row is the peer).

``--browser``: what course content in browsers sends: single-statement POSTs from
``--clients`` (default 1,000) concurrent keep-alive connections, every request a new
learner (tens of thousands over a row), against the gateway alone; beside it, in the same
run and with the same client, a bare aiohttp server whose handler reads the body and
answers a one-id JSON list (the ceiling of HTTP on this machine with this load generator:
its row's ours/peer is the gateway's share of it). Then batches of 100 at ``--concurrency``.
``--rates``: beside them, single-statement rows at these offered rates over the same
connections, open loop (latency counted from when each request was due): the latency a
fixed load gets, where the closed-loop row shows only the saturated server's queue.
``--profile``: also record the gateway process with py-spy during its single-statement rows,
closed-loop and paced (``pip install py-spy``; collapsed stacks, paths printed, with the CPU per
request of each thread).

``--idle S``: only what a gateway (``--no-sinks``, chDB) and the bare aiohttp server cost
with no request at all: CPU ms a second over ``S`` seconds, from 15 s after start, the
gateway's by thread (its background loops: Consistent-Through reads, the Kafka lanes' polls).

``--batches``: only the per-statement costs: batches of 100 (ten learners each) at
``--concurrency`` against the gateway alone, with where a POST waits (the accepted-id
index, Kafka) and the CPU per statement; ``--profile`` records that row.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import fcntl
import itertools
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson

from benchmarks.ports import free_port

REPO = Path(__file__).resolve().parents[1]
RALPH_SPEC = ("ralph-malph[lrs,cli]>=5.1,<6", "requests>=2.31,<3")  # ralph.api imports requests
RALPH_USER, RALPH_PASSWORD = "bench", "bench-secret"
# The ceiling: HTTP alone, the same request and a reply of the same shape, nothing else.
_HELLO_SERVER = """
import sys
from aiohttp import web

REPLY = b'["00000000-0000-4000-8000-000000000000"]'


async def statements(request):
    await request.read()
    return web.Response(body=REPLY, content_type="application/json", headers={"X-Experience-API-Version": "1.0.3"})


async def about(_request):
    return web.Response(body=b'{"version":["1.0.3"]}', content_type="application/json")


app = web.Application()
app.router.add_post("/xapi/statements", statements)
app.router.add_get("/xapi/about", about)
try:  # the gateway's default loop (settings gateway.event_loop)
    import uvloop
    loop = uvloop.new_event_loop()
except ImportError:
    loop = None
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None, loop=loop)
"""
_RALPH_LAUNCHER = """
import sys
from ralph.backends.data.base import BaseOperationType
from ralph.backends.lrs.fs import FSLRSBackend
FSLRSBackend.default_operation_type = BaseOperationType.APPEND  # the default (create) answers one POST only
import uvicorn
uvicorn.run("ralph.api:app", host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""
# A cmi5-like statement; MARK is replaced per request so every id is new.
MARK = "MARKMARK"
_REQUESTS = itertools.count(1)


def invalid_template(size: int, learners: int) -> bytes:
    """Like :func:`batch_template`, every statement's object a "GroupActivity" (400, quarantined)."""
    return batch_template(size, learners).replace(b'"objectType":"Activity","id":"https://example.org/course/geo/q/',
                                                  b'"objectType":"GroupActivity","id":"https://example.org/course/geo/q/')


def batch_template(size: int, learners: int) -> bytes:
    """JSON of ``size`` statements whose ids contain ``MARK`` (unique within the batch)."""
    out = []
    for i in range(size):
        out.append(
            {
                "id": f"{MARK}-0000-4000-8000-{i:012x}",
                "timestamp": "2024-03-05T15:09:47.253Z",
                "actor": {"objectType": "Agent", "account": {"homePage": "https://lms.example.org",
                                                             "name": f"{MARK}-{i % learners}"}},
                "verb": {"id": "http://adlnet.gov/expapi/verbs/answered", "display": {"en-US": "answered"}},
                "object": {
                    "objectType": "Activity",
                    "id": f"https://example.org/course/geo/q/{i % 17}",
                    "definition": {"name": {"en-US": "Question"}, "type": "http://adlnet.gov/expapi/activities/cmi.interaction",
                                   "interactionType": "choice", "choices": [{"id": "a", "description": {"en-US": "A"}}]},
                },
                "result": {"success": True, "score": {"scaled": 0.8}, "duration": "PT12.5S", "response": "a"},
                "context": {
                    "registration": "839b7078-b3f2-499f-8628-d1a83039a375",
                    "contextActivities": {"parent": [{"id": "https://example.org/course/geo",
                                                      "definition": {"type": "http://adlnet.gov/expapi/activities/course"}}]},
                },
            }
        )  # fmt: skip
    return orjson.dumps(out[0] if size == 1 else out)


@dataclass
class Result:
    system: str
    batch: int
    concurrency: int
    statements: int
    seconds: float
    latencies: list[float]
    errors: dict[int, int]
    server_cpu_s: float = 0.0
    # Requests answered 400 as intended (the invalid share of a --quarantine row).
    refused: int = 0
    # CPU of the server's main thread alone (the event loop: HTTP, parsing, validation,
    # canonical form, envelopes), the part one Python process cannot spread over cores.
    main_cpu_s: float = 0.0
    # Shares of the row's wall time the main thread spent on a CPU and runnable but waiting
    # for one (the rest it was blocked: idle in the event loop, or waiting for the GIL).
    main_time: tuple[float, float] = (0.0, 0.0)

    @property
    def rate(self) -> float:
        return self.statements / self.seconds

    def row(self, ours: Result | None = None) -> str:
        lat = sorted(self.latencies) or [0.0]
        p50 = statistics.median(lat) * 1000
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
        if self.refused and ours and ours.rate:  # a --quarantine row: its valid statements/s over the 0% row's
            ratio = f"{self.rate / ours.rate:8.2f}x"
        else:
            x = ours.rate / self.rate if ours and self.rate else None
            ratio = " " * 9 if x is None else f"{x:8.2f}x" if x < 10 else f"{x:8.1f}x"
        errors = ",".join(f"{k}:{v}" for k, v in sorted(self.errors.items())) or "-"
        if self.refused:
            errors += f" (refused as meant: {self.refused})"
        cpu = self.server_cpu_s / self.statements * 1e6 if self.statements else 0.0
        main = self.main_cpu_s / self.statements * 1e6 if self.statements else 0.0
        return (f"{self.system:<22}{self.batch:>6}{self.concurrency:>6}{self.rate:>14,.0f}"
                f"{len(self.latencies) / self.seconds:>10,.0f}{p50:>9.1f}{p99:>9.1f}{cpu:>11.0f}{main:>10.0f}"
                f"  {ratio}  {errors}")  # fmt: skip


async def load(url: str, headers: dict[str, str], size: int, learners: int, concurrency: int, duration: float,
               warmup: float, system: str, invalid_every: int = 0, rate: float = 0.0) -> Result:  # fmt: skip
    """POST distinct batches from ``concurrency`` workers; count statements acknowledged (2xx).

    ``invalid_every`` n > 0: every n-th request is invalid; its 400 is counted apart and
    its latency left out (the rows compare what valid traffic gets).

    ``rate`` > 0: open loop: requests are due at ``rate`` per second in all, spread evenly
    over the workers, and a request's latency counts from when it was due, not from when a
    late worker got to send it (else a slow server would hide its queue from the figures).
    """
    template = batch_template(size, learners)
    bad = invalid_template(size, learners)
    refused = 0
    counter = _REQUESTS  # shared by every row: a row never re-sends an earlier row's ids
    start = time.monotonic()
    measure_from = start + warmup
    stop_at = measure_from + duration
    latencies: list[float] = []
    errors: dict[int, int] = {}
    done = 0

    period = concurrency / rate if rate > 0 else 0.0

    async def worker(session: aiohttp.ClientSession, w: int) -> None:
        nonlocal done, refused
        due = start + period * w / concurrency
        while True:
            now = time.monotonic()
            if now >= stop_at:
                return
            if period:
                if due > now:
                    await asyncio.sleep(due - now)
                    if due >= stop_at:
                        return
            n = next(counter)
            invalid = invalid_every > 0 and n % invalid_every == 0
            body = (bad if invalid else template).replace(MARK.encode(), f"{n:08x}".encode())
            t0 = due if period else time.monotonic()
            due += period
            async with session.post(url, data=body, headers=headers) as r:
                await r.read()
                t1 = time.monotonic()
                if measure_from <= t1 <= stop_at:  # completed inside the measured window
                    if invalid and r.status == 400:
                        refused += 1
                    elif 200 <= r.status < 300:
                        done += size
                        latencies.append(t1 - t0)
                    else:
                        errors[r.status] = errors.get(r.status, 0) + 1

    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=conn) as session:
        await asyncio.gather(*(worker(session, w) for w in range(concurrency)))
    return Result(system, size, concurrency, done, duration, latencies, errors, refused=refused)


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """CPU time (user + system) a process (or one of its threads) has used so far."""
    path = f"/proc/{pid}/task/{tid}/stat" if tid is not None else f"/proc/{pid}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds so far of each thread of a process, by native thread id."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            out[int(tid)] = cpu_seconds(pid, int(tid))
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread ended meanwhile
    return out


def schedstat(pid: int, tid: int) -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable but waiting for one) of a thread so far."""
    on_cpu, waiting, _slices = Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()
    return int(on_cpu) / 1e9, int(waiting) / 1e9


def thread_names(stacks: Path) -> dict[int, str]:
    """Native thread id -> Python thread name, from py-spy's collapsed stacks."""
    names = {}
    for line in stacks.read_text().splitlines():
        m = re.match(r"thread \((\d+)\): ([^;]+);", line)
        if m:
            names[int(m.group(1))] = m.group(2)
    return names


def cpu_by_thread(before: dict[int, float], after: dict[int, float], names: dict[int, str], requests: int,
                  scale: float) -> str:  # fmt: skip
    """One line: CPU µs per request of each busy thread (threads of one kind summed)."""
    by_kind: dict[str, float] = {}
    for tid, used in after.items():
        name = names.get(tid, f"tid {tid}")
        kind = re.sub(r"bench\.learnpulse-gateway-\S+?-(\d+)", r"\1", name)  # the lanes' long transactional ids
        by_kind[kind] = by_kind.get(kind, 0.0) + (used - before.get(tid, 0.0)) * scale
    busy = sorted(((v, k) for k, v in by_kind.items() if v > 0), reverse=True)
    return "  ".join(f"{k}: {v / max(requests, 1) * 1e6:.0f}" for v, k in busy)


def measure(proc: subprocess.Popen, url: str, headers: dict[str, str], size: int, learners: int, args,
            system: str, invalid_every: int = 0, concurrency: int | None = None,
            profile: Path | None = None, rate: float = 0.0) -> Result:  # fmt: skip
    """One row: load for the duration; also the server process's CPU time per statement.

    ``profile``: record the server with py-spy for the measured seconds (collapsed stacks).
    """
    before, main_before = cpu_seconds(proc.pid), cpu_seconds(proc.pid, proc.pid)
    threads_before = thread_cpu(proc.pid)
    sched_before, wall_before = schedstat(proc.pid, proc.pid), time.monotonic()
    spy = None
    if profile is not None:
        exe = Path(sys.executable).with_name("py-spy")
        spy = subprocess.Popen([str(exe) if exe.exists() else "py-spy", "record", "--format", "raw", "--nonblocking", "--pid", str(proc.pid), "--threads", "--idle", "--rate", "200",
                                "--duration", str(int(args.duration + 2)), "--output", str(profile)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)  # fmt: skip
    r = asyncio.run(load(url, headers, size, learners, concurrency or args.concurrency, args.duration, 2.0, system,
                         invalid_every, rate))  # fmt: skip
    threads_after = thread_cpu(proc.pid)
    sched_after, wall = schedstat(proc.pid, proc.pid), time.monotonic() - wall_before
    on_cpu, waiting = (sched_after[0] - sched_before[0]) / wall, (sched_after[1] - sched_before[1]) / wall
    r.main_time = (on_cpu, waiting)
    if spy is not None:
        spy.wait(60)
        print(f"py-spy profile of {system}: {profile}", file=sys.stderr)
        requests = len(r.latencies)
        print(f"  CPU µs per request by thread: "
              f"{cpu_by_thread(threads_before, threads_after, thread_names(profile), requests, args.duration / (args.duration + 2.0))}",
              file=sys.stderr)  # fmt: skip
    # The CPU time covers the warm-up too: scale it to the measured share of requests.
    used, main_used = cpu_seconds(proc.pid) - before, cpu_seconds(proc.pid, proc.pid) - main_before
    r.server_cpu_s = used * args.duration / (args.duration + 2.0)
    r.main_cpu_s = main_used * args.duration / (args.duration + 2.0)
    print(r.row(), file=sys.stderr)
    print(f"  main thread: {r.main_time[0]:.0%} of the time on a CPU, {r.main_time[1]:.0%} waiting for one "
          f"(load average {os.getloadavg()[0]:.1f})", file=sys.stderr)  # fmt: skip
    return r


def wait_http(url: str, timeout: float, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url} server exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"{url} did not come up in {timeout:.0f}s; see {log}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


# -- ours ----------------------------------------------------------------------------------
def start_kafka(home: Path):
    from learnpulse.settings import KafkaSettings, Settings
    from learnpulse.stack import KafkaBroker
    from learnpulse.topics import ensure_topics

    settings = Settings(home=home, kafka=KafkaSettings(port=free_port(), controller_port=free_port(),
                                                       topic_prefix="bench."))  # fmt: skip
    broker = KafkaBroker(settings)
    broker.up(timeout=120)
    ensure_topics(settings.kafka.bootstrap_servers, "bench.")
    return broker, settings


# The load generator is one address with one key standing for many browsers and schools: the
# per-address and per-key request limits (2,000/s each by default) answered 429 past them.
# Raised out of reach, not turned off, so that every request still pays for the checks.
_UNLIMITED_REQUESTS = {
    "LEARNPULSE_GATEWAY__REQUESTS_PER_S_PER_ADDRESS": "1000000000",
    "LEARNPULSE_GATEWAY__REQUESTS_PER_S_PER_KEY": "1000000000",
}


def start_ours(settings, home: Path, sinks: bool) -> tuple[subprocess.Popen, str, dict[str, str]]:
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {**os.environ, **settings.to_env(), "LEARNPULSE_HOME": str(home), "LEARNPULSE_GATEWAY__PORT": str(port),
           "LEARNPULSE_METRICS_PORT": str(free_port()), **_UNLIMITED_REQUESTS}  # fmt: skip
    out = subprocess.run([sys.executable, "-m", "learnpulse", "credentials", "add", "--school", "bench"],
                         env=env, cwd=REPO, capture_output=True, text=True, check=True).stdout  # fmt: skip
    key = re.search(r"key:\s+(\S+)", out).group(1)
    secret = re.search(r"secret:\s+(\S+)", out).group(1)
    log = home / "gateway.log"
    cmd = [sys.executable, "-m", "learnpulse", "gateway", "--sinks" if sinks else "--no-sinks"]
    proc = subprocess.Popen(cmd, env=env, cwd=REPO,
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT)  # noqa: SIM115  # fmt: skip
    wait_http(f"http://127.0.0.1:{port}/xapi/about", 120, proc, log)
    auth = "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode()
    return proc, f"http://127.0.0.1:{port}/xapi/statements", {"Authorization": auth}


def start_hello(home: Path) -> tuple[subprocess.Popen, str, dict[str, str]]:
    """The bare aiohttp server of ``--browser`` (the HTTP ceiling)."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "hello.py").write_text(_HELLO_SERVER)
    port = free_port()
    log = home / "hello.log"
    proc = subprocess.Popen([sys.executable, str(home / "hello.py"), str(port)], cwd=home,
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT)  # noqa: SIM115  # fmt: skip
    wait_http(f"http://127.0.0.1:{port}/xapi/about", 60, proc, log)
    return proc, f"http://127.0.0.1:{port}/xapi/statements", {}


def commit_figures(statements_url: str) -> dict[str, float]:
    """The gateway's Kafka-transaction counters from its /metrics (count, requests, seconds)."""
    text = urllib.request.urlopen(statements_url.rsplit("/xapi/", 1)[0] + "/metrics", timeout=10).read().decode()
    out = {}
    for name, key in (("learnpulse_gateway_commit_requests_count", "commits"),
                      ("learnpulse_gateway_commit_requests_sum", "requests"),
                      ("learnpulse_gateway_commit_seconds_sum", "seconds"),
                      ('learnpulse_gateway_index_seconds_sum{operation="reserve"}', "reserve_s"),
                      ('learnpulse_gateway_index_seconds_count{operation="reserve"}', "reserves"),
                      ('learnpulse_gateway_index_seconds_sum{operation="confirm"}', "confirm_s"),
                      ('learnpulse_gateway_index_seconds_count{operation="confirm"}', "confirms"),
                      ('learnpulse_gateway_request_seconds_sum{method="POST"}', "request_s"),
                      ('learnpulse_gateway_request_seconds_count{method="POST"}', "posts")):  # fmt: skip
        m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
        out[key] = float(m.group(1)) if m else 0.0
    return out


def where_time_goes(before: dict[str, float], after: dict[str, float]) -> str:
    """Mean milliseconds a POST spent in the gateway, waiting for the index and for Kafka."""
    d = {k: after[k] - before[k] for k in after}

    def mean(total: str, count: str) -> float:
        return d[total] / d[count] * 1000 if d[count] else 0.0

    return (f"  per POST inside the gateway: {mean('request_s', 'posts'):.1f} ms, of which reserving ids "
            f"{mean('reserve_s', 'reserves'):.1f}, confirming {mean('confirm_s', 'confirms'):.1f}; "
            f"Kafka transactions {mean('seconds', 'commits'):.1f} ms for {d['requests'] / max(d['commits'], 1):.1f} "
            "requests each")  # fmt: skip


def measure_with_waits(proc: subprocess.Popen, url: str, headers: dict[str, str], size: int, learners: int, args,
                       system: str, **kw) -> Result:  # fmt: skip
    """:func:`measure` one row of the gateway, then print where its POSTs waited (:func:`where_time_goes`)."""
    before = commit_figures(url)
    row = measure(proc, url, headers, size, learners, args, system, **kw)
    print(where_time_goes(before, commit_figures(url)), file=sys.stderr)
    return row


def browser_rows(settings, tmp: Path, common: dict[str, str], args) -> list[tuple[Result, Result | None]]:
    """``--browser``: single-statement POSTs at ``--clients``, beside the bare-HTTP ceiling."""
    proc, url, auth = start_ours(settings, tmp / "browser", False)
    try:
        # Unmeasured warm-up (JIT-free Python still warms caches, the index, Kafka's producers).
        asyncio.run(load(url, {**common, **auth}, 1, 1, args.clients, 3.0, 0.0, "warm-up"))
        profile = tmp.parent / f"gateway-profile-{os.getpid()}.txt" if args.profile else None
        ours = measure_with_waits(proc, url, {**common, **auth}, 1, 1, args, "learnpulse gateway",
                                  concurrency=args.clients, profile=profile)  # fmt: skip
        paced = [
            measure_with_waits(proc, url, {**common, **auth}, 1, 1, args, f"gateway paced {rate:g}/s",
                               concurrency=args.clients, rate=rate,
                               profile=profile.with_name(f"{profile.stem}-{rate:g}.txt") if profile else None)
            for rate in args.rates
        ]
        batch = measure(proc, url, {**common, **auth}, 100, 10, args, "learnpulse gateway")
    finally:
        stop(proc)
    proc, url, _ = start_hello(tmp / "hello")
    try:
        hello = measure(proc, url, common, 1, 1, args, "bare aiohttp (ceiling)", concurrency=args.clients)
    finally:
        stop(proc)
    return [(ours, None), (hello, ours), *((p, None) for p in paced), (batch, None)]


def batch_rows(settings, tmp: Path, common: dict[str, str], args) -> list[tuple[Result, Result | None]]:
    """``--batches``: batches of 100 (ten learners each) against the gateway alone, nothing else."""
    proc, url, auth = start_ours(settings, tmp / "batches", False)
    try:
        asyncio.run(load(url, {**common, **auth}, 100, 10, args.concurrency, 3.0, 0.0, "warm-up"))
        profile = tmp.parent / f"gateway-batch-profile-{os.getpid()}.txt" if args.profile else None
        batch = measure_with_waits(proc, url, {**common, **auth}, 100, 10, args, "learnpulse gateway", profile=profile)
    finally:
        stop(proc)
    return [(batch, None)]


def idle_rows(settings, tmp: Path, seconds: float) -> None:
    """``--idle``: CPU a second of the gateway and of the bare aiohttp server, answering nothing."""
    print(f"{'server (idle)':<22}{'CPU ms/s':>10}  busiest threads (ms/s)")
    for name, start in (("learnpulse gateway", lambda: start_ours(settings, tmp / "idle", False)),
                        ("bare aiohttp", lambda: start_hello(tmp / "idle-hello"))):  # fmt: skip
        proc, _url, _auth = start()
        try:
            time.sleep(15)  # past start-up work (topic metadata, producers' InitProducerId, first refreshes)
            before, threads_before = cpu_seconds(proc.pid), thread_cpu(proc.pid)
            time.sleep(seconds)
            used, threads_after = cpu_seconds(proc.pid) - before, thread_cpu(proc.pid)
        finally:
            stop(proc)
        busy = sorted(((threads_after[t] - threads_before.get(t, 0.0), t) for t in threads_after), reverse=True)
        threads = "  ".join(f"tid {t}: {u / seconds * 1000:.1f}" for u, t in busy[:4] if u > 0)
        print(f"{name:<22}{used / seconds * 1000:>10.1f}  {threads}")


# -- Ralph ---------------------------------------------------------------------------------
def ralph_python() -> Path:
    """Python of the Ralph virtualenv, created on first use (shared, under a lock)."""
    cache = Path(os.environ.get("LEARNPULSE_CACHE_DIR", Path.home() / ".cache" / "learnpulse"))
    venv = cache / "ralph-venv"
    python = venv / "bin" / "python"
    stamp = venv / (".learnpulse-" + "-".join(RALPH_SPEC).replace("/", "_").replace(" ", ""))
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / "ralph-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stamp.exists():
            print("installing Ralph into", venv, "(first run only)", file=sys.stderr)
            if not python.exists():
                subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run([str(python), "-m", "pip", "install", "-q", *RALPH_SPEC], check=True)
            stamp.touch()
    return python


def start_ralph(home: Path) -> tuple[subprocess.Popen, str, dict[str, str]]:
    python = ralph_python()
    home.mkdir(parents=True, exist_ok=True)
    hashed = subprocess.run(
        [str(python), "-c", f"import bcrypt; print(bcrypt.hashpw({RALPH_PASSWORD!r}.encode(), bcrypt.gensalt()).decode())"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    users = [{"username": RALPH_USER, "hash": hashed, "scopes": ["all"], "agent": {"mbox": "mailto:bench@example.org"}}]
    (home / "auth.json").write_bytes(orjson.dumps(users))
    (home / "launch.py").write_text(_RALPH_LAUNCHER)
    port = free_port()
    env = {**os.environ, "RALPH_AUTH_FILE": str(home / "auth.json"), "RALPH_APP_DIR": str(home / "app"),
           "RALPH_RUNSERVER_BACKEND": "fs", "RALPH_BACKENDS__LRS__FS__DEFAULT_DIRECTORY_PATH": str(home / "store")}  # fmt: skip
    log = home / "ralph.log"
    proc = subprocess.Popen([str(python), str(home / "launch.py"), str(port)], env=env, cwd=home,
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT)  # noqa: SIM115  # fmt: skip
    wait_http(f"http://127.0.0.1:{port}/__heartbeat__", 120, proc, log)
    auth = "Basic " + base64.b64encode(f"{RALPH_USER}:{RALPH_PASSWORD}".encode()).decode()
    return proc, f"http://127.0.0.1:{port}/xAPI/statements", {"Authorization": auth}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=10.0, help="measured seconds per row (after a 2 s warm-up)")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--no-ralph", action="store_true")
    ap.add_argument("--quarantine", action="store_true",
                    help="only the quarantine rows: 0%% next to 10%% invalid requests (gateway +sinks)")
    ap.add_argument("--browser", action="store_true",
                    help="single-statement POSTs at --clients beside a bare aiohttp ceiling, then batches of 100")
    ap.add_argument("--clients", type=int, default=1000, help="concurrent connections of --browser's single rows")
    ap.add_argument("--rates", type=lambda v: [float(x) for x in v.split(",") if x], default=[250.0, 500.0],
                    help="--browser: also these offered rates (requests/s, comma-separated) over --clients "
                         "connections, open loop: latency from when each request was due")  # fmt: skip
    ap.add_argument("--batches", action="store_true",
                    help="only batches of 100 against the gateway alone (the per-statement costs)")
    ap.add_argument("--profile", action="store_true",
                    help="--browser: py-spy stacks of the single-statement rows; --batches: of the batch row")
    ap.add_argument("--idle", type=float, default=0.0, metavar="S",
                    help="only the CPU a second of an idle gateway and bare aiohttp server, over S seconds")
    args = ap.parse_args()
    common = {"Content-Type": "application/json", "X-Experience-API-Version": "1.0.3"}
    rows: list[tuple[Result, Result | None]] = []
    tmp = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    broker = None
    try:
        broker, settings = start_kafka(tmp / "kafka-home")
        ours: dict[int, Result] = {}
        if args.idle:
            idle_rows(settings, tmp, args.idle)
            return
        if args.browser:
            rows.extend(browser_rows(settings, tmp, common, args))
        elif args.batches:
            rows.extend(batch_rows(settings, tmp, common, args))
        elif args.quarantine:
            proc, url, auth = start_ours(settings, tmp / "quarantine", True)
            try:
                # Unmeasured warm-up: the first seconds of a fresh gateway (+sinks) are slower.
                asyncio.run(load(url, {**common, **auth}, 1, 1, args.concurrency, 5.0, 0.0, "warm-up", 10))
                for size, learners in ((1, 1), (100, 10)):
                    clean = measure(proc, url, {**common, **auth}, size, learners, args, "0% invalid")
                    rows.append((clean, None))
                    rows.append((measure(proc, url, {**common, **auth}, size, learners, args, "10% invalid",
                                         invalid_every=10), clean))  # fmt: skip
            finally:
                stop(proc)
        both = ((True, "learnpulse +sinks"), (False, "learnpulse gateway"))
        for sinks, name in both if not (args.quarantine or args.browser or args.batches) else ():
            proc, url, auth = start_ours(settings, tmp / name.replace(" ", "-").replace("+", ""), sinks)
            try:
                for size, learners in ((100, 10), (1, 1)):
                    r = measure(proc, url, {**common, **auth}, size, learners, args, name)
                    rows.append((r, None))
                    ours.setdefault(size, r)  # the peer ratio is against the full process (+sinks)
            finally:
                stop(proc)
        if not (args.no_ralph or args.quarantine or args.browser or args.batches):
            proc, url, auth = start_ralph(tmp / "ralph")
            try:
                for size, learners in ((100, 10), (1, 1)):
                    rows.append((measure(proc, url, {**common, **auth}, size, learners, args, "Ralph 5 (fs, append)"),
                                 ours[size]))  # fmt: skip
            finally:
                stop(proc)
        header = (f"{'system':<22}{'batch':>6}{'conc':>6}{'statements/s':>14}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
                  f"{'cpu µs/st':>11}{'main µs':>10}  {'ours/peer':>9}  errors")  # fmt: skip
        print(header)
        print("-" * len(header))
        for r, o in rows:
            print(r.row(o))
        load1, load5, _ = os.getloadavg()
        print(f"\n{os.cpu_count()} cores shared by Kafka, the server under test and the load generator "
              f"(load average {load1:.1f}/{load5:.1f} at the end: other work on the machine slows every row). "
              "cpu µs/st: CPU time of the server process per accepted statement; main µs: of its main thread "
              "(the event loop: one core at most). "
              "Ralph's file-system backend switched to append mode (it answers only the first POST otherwise).")  # fmt: skip
        if args.browser:
            print("--browser: every single-statement request is a new learner; the bare aiohttp row is the ceiling "
                  "(same client, same connections, a handler that only reads the body): ours/peer is the "
                  "gateway's share of it. The load generator is one asyncio process on the same cores, so the "
                  "ceiling is also the client's. Closed-loop rows keep every connection busy: their latency is "
                  "the saturated server's queue (connections / requests per second); 'paced' rows offer a "
                  "fixed rate (open loop, latency from when each request was due).")  # fmt: skip
        if args.quarantine:
            print("--quarantine: statements/s and latencies count valid requests only; ours/peer of a 10% row is "
                  "its valid statements/s over the 0% row's (1.0x = quarantine writes cost valid traffic nothing; "
                  "the 10% row sends 10% fewer valid requests by construction, so about 0.9x is the ceiling "
                  "when the server, not the client, is the limit).")  # fmt: skip
    finally:
        if broker is not None:
            broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
