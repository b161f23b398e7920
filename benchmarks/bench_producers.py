"""How fast do producers put statements on Kafka? The simulator next to a bare kafka-python producer.

Run as ``python -m benchmarks.bench_producers`` (``--count N``, ``--bootstrap HOST:PORT``
to use a running broker instead of starting a private one, ``--scale large`` to add the
set-up cost of 100 schools × 100,000 learners). All rows run in the same process
against the same broker, with ``acks=all``:

- ``simulator → Kafka``: the whole producer path — simulate, canonicalize,
  pseudonymize, group per learner into envelopes, encode, send, wait for acks;
- ``simulator only``: the same statements generated and dropped (no Kafka);
- ``publisher only``: canonicalize, pseudonymize, group and encode, sent nowhere;
- ``bare kafka-python``: the ceiling — the very envelopes of the first row, already
  serialized, sent by a plain ``KafkaProducer`` with the same settings (idempotent,
  ``acks=all``, lz4, same linger and batch size), keyed the same.

Figures are statements per second (an envelope carries up to 20 of one learner's
statements); the ratio column compares each row with the ceiling. ``cpu µs/st`` is the
CPU time (user + system, every thread of this process: kafka-python's I/O thread too;
not the broker's) per statement: the steady figure on a shared machine, where the
wall-clock rate depends on what else runs.
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Self

from kafka import KafkaProducer

from benchmarks.ports import free_port
from learnpulse.settings import KafkaSettings, Settings
from learnpulse.stack import KafkaBroker
from learnpulse.topics import ensure_topics
from producers.kafka import ProducerParameters, StatementProducer
from producers.publisher import StatementPublisher
from producers.runner import run_simulation
from producers.simulator import SCALES, Simulation, SimulationConfig
from schemas.envelope import StatementEnvelope
from schemas.topics import Topic

REPO = Path(__file__).resolve().parents[1]


class _Capture:
    """Stands in for StatementProducer: keeps the encoded envelopes instead of sending them."""

    def __init__(self) -> None:
        self.messages: list[tuple[bytes, bytes, int]] = []
        self.acked_statements = 0

    def send(self, envelope: StatementEnvelope) -> None:
        self.send_encoded(envelope, envelope.encode())

    def send_encoded(self, envelope: StatementEnvelope, value: bytes) -> None:
        self.messages.append((envelope.key, value, len(envelope.entries)))

    def flush(self) -> None:
        pass

    def check(self) -> None:
        pass


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class _Timed:
    """Wall and CPU seconds of a block."""

    def __enter__(self) -> Self:
        self.wall, self.cpu = time.perf_counter(), _cpu()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, _cpu() - self.cpu


def _config(seed: int) -> SimulationConfig:
    return SimulationConfig(seed=seed, **SCALES["medium"])


def bench_simulator_to_kafka(bootstrap: str, topic: str, count: int) -> tuple[_Timed, int]:
    producer = StatementProducer(ProducerParameters(bootstrap=bootstrap, topic=topic, stage="bench"))
    publisher = StatementPublisher(producer, b"bench-secret")
    sim = Simulation(_config(1))
    with _Timed() as t:
        sent = run_simulation(publisher, sim, count=count)
    producer.close()
    return t, sent


def bench_simulator_only(count: int) -> _Timed:
    sim = Simulation(_config(1))
    with _Timed() as t:
        for _ in itertools.islice(sim, count):
            pass
    return t


def capture_envelopes(count: int) -> tuple[_Timed, _Capture]:
    """The same statements through the publisher into memory; returns the publisher's own time."""
    items = list(itertools.islice(Simulation(_config(1)), count))
    capture = _Capture()
    publisher = StatementPublisher(capture, b"bench-secret")  # type: ignore[arg-type]
    with _Timed() as t:
        for item in items:
            publisher.publish(item.school, item.statement)
        publisher.flush()
    return t, capture


def bench_bare(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes, int]]) -> _Timed:
    params = ProducerParameters(bootstrap=bootstrap, topic=topic, stage="bench")
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        compression_type=params.compression,
        linger_ms=params.linger_ms,
        batch_size=params.batch_bytes,
        max_request_size=4 * 1024 * 1024,
    )
    producer.send(topic, key=b"warm-up", value=b"{}").get(30)
    with _Timed() as t:
        for key, value, _ in messages:
            producer.send(topic, key=key, value=value)
        producer.flush()
    producer.close()
    return t


_LARGE = """
import itertools, json, sys, time
from producers.simulator import SCALES, Simulation, SimulationConfig
def rss():
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) / 1024
before = rss()
t = time.perf_counter()
sim = Simulation(SimulationConfig(seed=3, **SCALES["large"]))
setup = time.perf_counter() - t
n = int(sys.argv[1])
t = time.perf_counter()
for _ in itertools.islice(sim, n):
    pass
print(json.dumps([setup, rss() - before, n / (time.perf_counter() - t)]))
"""


def bench_large(count: int) -> tuple[float, float, float]:
    """Set-up seconds, resident MiB, statements/s generated at 100 schools × 100,000 learners (own process)."""
    out = subprocess.run(
        [sys.executable, "-c", _LARGE, str(count)], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout
    setup, mib, rate = json.loads(out.strip().splitlines()[-1])
    return setup, mib, rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=100_000, help="statements per row")
    parser.add_argument("--bootstrap", default=None, help="use this broker instead of starting one")
    parser.add_argument("--scale", choices=["medium", "large"], default="medium")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; each row keeps its best")
    args = parser.parse_args()

    broker = None
    bootstrap = args.bootstrap
    if bootstrap is None:
        home = Path(tempfile.mkdtemp(prefix="lp-bench-"))
        settings = Settings(home=home, kafka=KafkaSettings(port=free_port(), controller_port=free_port()))
        broker = KafkaBroker(settings)
        print(f"starting a private Kafka broker in {home} …", flush=True)
        broker.up(timeout=120)
        bootstrap = settings.kafka.bootstrap_servers
    try:
        prefix = f"bench{uuid.uuid4().hex[:6]}."
        ensure_topics(bootstrap, prefix)
        topic = Topic.STATEMENTS.physical(prefix)
        n = args.count

        # The machine is shared: rows alternate over several rounds and each keeps its
        # best round (the least disturbed by other load), as timeit's users do.
        best: dict[str, float] = {}
        cpu: dict[str, float] = {}
        messages: list[tuple[bytes, bytes, int]] = []
        sent = 0
        for round_no in range(args.rounds):
            print(f"round {round_no + 1}/{args.rounds} …", flush=True)
            gen = bench_simulator_only(n)
            pub_t, capture = capture_envelopes(n)
            messages = capture.messages
            bare = bench_bare(bootstrap, topic, messages)
            sim_t, sent = bench_simulator_to_kafka(bootstrap, topic, n)
            for name, t in (("gen", gen), ("pub", pub_t), ("bare", bare), ("sim", sim_t)):
                best[name] = min(best.get(name, float("inf")), t.wall)
                cpu[name] = min(cpu.get(name, float("inf")), t.cpu)
        statements = sum(m[2] for m in messages)
        ceiling = statements / best["bare"]
        rows = [
            ("simulator → Kafka (acks=all)", sent, sent / best["sim"], cpu["sim"] / sent),
            ("simulator only (no Kafka)", n, n / best["gen"], cpu["gen"] / n),
            ("publisher only (no Kafka)", n, n / best["pub"], cpu["pub"] / n),
            ("bare kafka-python, same bytes", statements, ceiling, cpu["bare"] / statements),
        ]
        volume = sum(len(m[1]) for m in messages)
        print(
            f"\n{n:,} statements in {len(messages):,} envelopes ({statements / len(messages):.1f} per envelope, "
            f"{volume / len(messages):,.0f} bytes each before lz4); broker {bootstrap}; best of {args.rounds} rounds (wall and cpu each)\n"
        )
        print(f"{'row':<34}{'statements':>12}{'statements/s':>16}{'vs ceiling':>12}{'cpu µs/st':>11}")
        for name, count, rate, cpu_s in rows:
            print(f"{name:<34}{count:>12,}{rate:>16,.0f}{rate / ceiling:>11.2f}x{cpu_s * 1e6:>11.1f}")
        if args.scale == "large":
            setup, mib, rate = bench_large(n)
            print(
                f"\nlarge scale (100 schools, 100,000 learners): set-up {setup:.1f}s, +{mib:,.0f} MiB resident, "
                f"{rate:,.0f} statements/s generated"
            )
    finally:
        if broker is not None:
            broker.stop()


if __name__ == "__main__":
    main()
