"""How fast does the statements sink write Kafka → ClickHouse? Next to a bare insert (the ceiling).

Run as ``python -m benchmarks.bench_sinks`` (``--statements N``, ``--batches 2000,10000,50000``,
``--engines chdb,server``, ``--per-envelope 1`` for browsers' traffic: one statement per
message). It starts a private Kafka broker and a private Debian
clickhouse-server (free loopback ports, temporary directories) and produces the
statements once, as the pipeline does: simulator statements, canonical, grouped up to 20
per learner envelope. Then, per engine and batch size, in the same run:

- ``Kafka → sink``: the statements sink (``sinks.specs``) with ``max_rows`` = the batch
  size and a fresh consumer group reads every envelope, builds the rows (statements,
  raw JSON, voids, LRS index), inserts them, marks voids and commits: from the first poll
  to the last commit;
- ``bare insert``: the ceiling — the very same rows, built beforehand, inserted through
  the same engine (clickhouse-driver columnar inserts / chDB) in blocks of the same size,
  into a fresh database, with no Kafka, no decoding, no commits;
- ``rows only``: decoding the envelopes and building those rows (``sinks.rows``), no
  Kafka and no ClickHouse — the CPU part the sink adds to the ceiling (Python, one core).

Figures are statements per second (each statement is one row in ``statements`` and in
``statements_raw`` plus its LRS index rows); ``ratio`` = sink / ceiling. ``cpu µs/st``:
CPU time of this process (every thread, chDB's included; for ``server`` not the
clickhouse-server's) per statement, the steady figure on a shared machine.
"""

from __future__ import annotations

import argparse
import gc
import resource
import tempfile
import threading
import time
import uuid
from functools import partial
from pathlib import Path

from kafka import KafkaProducer

from benchmarks.ports import free_port
from learnpulse.collector import collect_young_objects_rarely
from learnpulse.settings import ClickHouseSettings, KafkaSettings, Settings
from learnpulse.stack import ClickHouseServer, KafkaBroker
from learnpulse.topics import ensure_topics
from producers.publisher import StatementPublisher
from producers.simulator import Simulation, SimulationConfig
from schemas.clickhouse.ddl import needs_mapping
from schemas.clickhouse.migrate import migrate
from schemas.envelope import StatementEnvelope
from schemas.topics import Topic
from sinks.engines import engine_from_url
from sinks.gcpause import set_aside_after_pauses
from sinks.rows import COLUMNS, MODERN_RANGE, OLD_SERVER_RANGE, statement_rows
from sinks.specs import SPECS, SinkParameters, build_sinks

SECRET = b"bench-secret"


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class _Capture:
    """Stands in for the Kafka producer: keeps the encoded envelopes."""

    def __init__(self) -> None:
        self.envelopes: list[StatementEnvelope] = []

    def send(self, envelope: StatementEnvelope):
        self.envelopes.append(envelope)

    def flush(self) -> None:
        pass


def make_envelopes(count: int, per_envelope: int = 20) -> list[StatementEnvelope]:
    """``count`` simulator statements as the publisher groups them (≤ ``per_envelope`` per learner envelope)."""
    capture = _Capture()
    publisher = StatementPublisher(
        capture, SECRET, max_per_envelope=per_envelope, linger_s=3600  # type: ignore[arg-type]
    )
    sim = Simulation(SimulationConfig(seed=5, schools=10))
    for _n, item in zip(range(count), sim, strict=False):
        publisher.publish(item.school, item.statement)
    publisher.flush()
    return capture.envelopes


def produce(bootstrap: str, topic: str, envelopes: list[StatementEnvelope]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, batch_size=512 * 1024,
                             compression_type="lz4", max_request_size=4 * 1024 * 1024)  # fmt: skip
    for env in envelopes:
        producer.send(topic, key=env.key, value=env.encode())
    producer.flush(120)
    producer.close()


def run_sink(url: str, kafka: KafkaSettings, batch: int, messages: int) -> tuple[float, float]:
    """Wall and CPU seconds for the statements sink to write and commit all ``messages`` (fresh group, fresh database)."""
    ch = engine_from_url(url)
    migrate(ch)
    params = SinkParameters(
        bootstrap=kafka.bootstrap_servers, topic_prefix=kafka.topic_prefix, secret=SECRET,
        max_rows=batch, max_wait_s=1.0, group_id=f"bench-{uuid.uuid4().hex[:8]}",
    )  # fmt: skip
    (sink,) = build_sinks(params, ch, ["statements"])
    stop = threading.Event()
    errors: list[BaseException] = []

    def committed() -> int:
        return sum(p.committed or 0 for p in list(sink.progress.values()))

    first_poll: list[float] = []
    first_cpu: list[float] = []
    original_submit = sink.submit

    def timed_submit(tp, msgs):
        if not first_poll:
            first_poll.append(time.perf_counter())
            first_cpu.append(_cpu())
        original_submit(tp, msgs)

    sink.submit = timed_submit  # the clock starts when the first records arrive

    def run() -> None:
        try:
            sink.run(stop)
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 600
    while committed() < messages:
        if errors or time.monotonic() > deadline:
            stop.set()
            raise RuntimeError(f"sink did not finish: {errors or 'timeout'}")
        time.sleep(0.01)
    done, done_cpu = time.perf_counter(), _cpu()
    stop.set()
    thread.join(30)
    ch.close()
    return done - first_poll[0], done_cpu - first_cpu[0]


def run_ceiling(url: str, rows_by_table: dict[str, list[tuple]], batch: int, first: str,
                cluster: str | None = None) -> tuple[float, float]:  # fmt: skip
    """Wall and CPU seconds to insert the prebuilt rows in blocks of ``batch`` statements (fresh
    database; with ``cluster``, its replicated tables, created ON CLUSTER)."""
    ch = engine_from_url(url)
    migrate(ch, cluster=cluster)
    tables = SPECS["statements"].tables
    n = len(rows_by_table[first])
    started, started_cpu = time.perf_counter(), _cpu()
    for start in range(0, n, batch):
        # Blocks hold the same statements in every table, as the sink's batches do.
        for table in tables:
            rows = rows_by_table.get(table) or []
            lo, hi = _bounds(rows_by_table, table, first, start, batch)
            block = rows[lo:hi]
            if block:
                ch.insert(f"{ch.database}.{table}", COLUMNS[table], [list(c) for c in zip(*block, strict=True)])
    elapsed, cpu = time.perf_counter() - started, _cpu() - started_cpu
    ch.close()
    return elapsed, cpu


_BOUNDS: dict[tuple[str, int, int], tuple[int, int]] = {}


def _bounds(rows_by_table, table, first, start, batch):
    # Tables have different row counts per statement (LRS index); split them proportionally.
    total_first = len(rows_by_table[first])
    total = len(rows_by_table.get(table) or [])
    lo = total * start // total_first
    hi = total * min(start + batch, total_first) // total_first
    return lo, hi


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--statements", type=int, default=60_000)
    ap.add_argument("--batches", default="2000,10000,50000")
    ap.add_argument("--engines", default="chdb,server")
    ap.add_argument("--per-envelope", type=int, default=20,
                    help="at most this many statements of a learner per Kafka message (1: browsers' traffic, "
                         "one statement per request; 20: an LMS's or the simulator's batches)")
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    engines = args.engines.split(",")

    with tempfile.TemporaryDirectory(prefix="bench-sinks-") as tmp:
        home = Path(tmp)
        settings = Settings(
            home=home,
            kafka=KafkaSettings(port=free_port(), controller_port=free_port(), topic_prefix="bench."),
            clickhouse=ClickHouseSettings(server_tcp_port=free_port(), server_http_port=free_port()),
        )
        broker = KafkaBroker(settings)
        server = ClickHouseServer(settings) if "server" in engines else None
        try:
            print("starting Kafka" + (" and clickhouse-server" if server else "") + " …", flush=True)
            broker.up(timeout=120)
            if server:
                server.up(timeout=90)
            ensure_topics(settings.kafka.bootstrap_servers, settings.kafka.topic_prefix)
            envelopes = make_envelopes(args.statements, args.per_envelope)
            statements = sum(len(e.entries) for e in envelopes)
            produce(settings.kafka.bootstrap_servers, Topic.STATEMENTS.physical("bench."), envelopes)
            print(f"{statements} statements in {len(envelopes)} envelopes on Kafka", flush=True)
            # As the sink process does once started (learnpulse sink, serve; the gateway's
            # process, which runs the sinks with chDB, does not set batches aside).
            collect_young_objects_rarely()
            set_aside_after_pauses()
            results = []
            for engine in engines:
                base = (
                    f"chdb://{home / 'chdb'}?database=" if engine == "chdb"
                    else server.url_for("")
                )  # fmt: skip
                probe = engine_from_url(base + "probe")
                limits = OLD_SERVER_RANGE if needs_mapping(probe.server_version()) else MODERN_RANGE
                probe.close()
                build = partial(statement_rows, SECRET, limits)
                encoded = [env.encode() for env in envelopes]
                rows_by_table: dict[str, list[tuple]] = {}
                t0, c0 = time.perf_counter(), _cpu()
                built = [build(raw) for raw in encoded]
                build_rate = statements / (time.perf_counter() - t0)
                build_cpu = (_cpu() - c0) / statements
                for rows_of_env in built:
                    for table, rows in rows_of_env.items():
                        rows_by_table.setdefault(table, []).extend(rows)
                del built
                # The ceiling's prebuilt rows are this benchmark's, not the sink's: out of the
                # collector's sight, so the sink's collections do not walk them.
                gc.freeze()
                first = SPECS["statements"].tables[0]
                for batch in batches:
                    db = f"b_{uuid.uuid4().hex[:8]}"
                    sink_s, sink_cpu = run_sink(base + db, settings.kafka, batch, len(envelopes))
                    ceil_s, ceil_cpu = run_ceiling(base + db + "c", rows_by_table, batch, first)
                    results.append((engine, batch, statements / sink_s, statements / ceil_s, build_rate,
                                    sink_cpu / statements, ceil_cpu / statements, build_cpu))  # fmt: skip
                    print(f"  {engine} batch {batch}: sink {statements / sink_s:,.0f}/s, "
                          f"ceiling {statements / ceil_s:,.0f}/s", flush=True)  # fmt: skip
        finally:
            if server:
                server.stop()
            broker.stop()

    print()
    print(
        f"statements sink, {statements} statements in {len(envelopes)} messages ({statements / len(envelopes):.1f} per"
        " message; rows/s = statements/s into statements + statements_raw + LRS index)"
    )
    print(
        f"{'engine':<8} {'batch':>7} {'Kafka → sink /s':>16} {'bare insert /s':>15} {'ratio':>6} {'rows only /s':>13}"
        f"   cpu µs/st: {'sink':>6} {'bare':>6} {'rows':>6}"
    )
    for engine, batch, sink_rate, ceil_rate, build_rate, sink_cpu, ceil_cpu, build_cpu in results:
        print(
            f"{engine:<8} {batch:>7} {sink_rate:>16,.0f} {ceil_rate:>15,.0f} {sink_rate / ceil_rate:>6.2f}"
            f" {build_rate:>13,.0f}              {sink_cpu * 1e6:>6.1f} {ceil_cpu * 1e6:>6.1f} {build_cpu * 1e6:>6.1f}"
        )


if __name__ == "__main__":
    main()
