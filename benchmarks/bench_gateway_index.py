"""How many statements/s can the gateway's accepted-id index take? Its ceiling, without HTTP or Kafka.

Run as ``python -m benchmarks.bench_gateway_index`` (``--duration S`` per row,
``--writers N``). Every write of the gateway reserves its ids in the index before its
Kafka transaction and confirms them after it, through one :class:`IndexClient` (grouped
transactions on one SQLite file, in worker threads). Here ``--writers`` concurrent
writers do only that, with the real client and store: reserve 100 random ids (UUID v4,
as clients send them), wait ``--kafka-ms`` (the Kafka transaction), confirm them with a
stored statement of ~1 KB each. The event loop's own work per request (parsing,
validating, encoding: what competes with the index threads for the interpreter lock and
the cores) is stood in for by a busy loop of ``--loop-ms``, 0 in the first row.

Per row: statements/s, the mean waits for reserving and confirming, and CPU µs per
statement of this process (index threads plus the loop). The store's single writer
bounds every gateway of a machine: past this figure more requests only queue.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import resource
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from producers.gateway.idindex import IndexClient
from producers.lrsstore.statement_index import SqlStatementIndex
from schemas.lrs_store import AcceptedStatement, Claim, Holder

BODY = b"x" * 1000
LEARNERS = 10


@dataclass
class Row:
    loop_ms: float
    statements_per_s: float
    reserve_ms: float
    confirm_ms: float
    cpu_us: float


def busy(ms: float) -> None:
    """Hold the event loop (and the interpreter lock) for ``ms``, as a request's Python work does."""
    end = time.perf_counter() + ms / 1000
    while time.perf_counter() < end:
        pass


async def run_row(client: IndexClient, writers: int, duration: float, kafka_ms: float, loop_ms: float) -> Row:
    tokens = itertools.count()
    waits = {"reserve": 0.0, "confirm": 0.0, "requests": 0}
    stop = time.monotonic() + duration

    async def writer() -> None:
        while time.monotonic() < stop:
            holder = Holder("bench", "run", next(tokens))
            ids = [str(uuid.uuid4()) for _ in range(100)]
            busy(loop_ms)
            started = time.perf_counter()
            await client.reserve(Claim("school", holder, ids), 1, 0)
            reserved = time.perf_counter()
            await asyncio.sleep(kafka_ms / 1000)
            accepted = [AcceptedStatement(sid, BODY, 1, f"learner-{n % LEARNERS}") for n, sid in enumerate(ids)]
            confirming = time.perf_counter()
            await client.confirm("school", holder, accepted, 2)
            waits["reserve"] += reserved - started
            waits["confirm"] += time.perf_counter() - confirming
            waits["requests"] += 1

    before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(writers)))
    elapsed, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF)
    n = max(waits["requests"], 1)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return Row(loop_ms, n * 100 / elapsed, waits["reserve"] / n * 1000, waits["confirm"] / n * 1000,
               cpu / (n * 100) * 1e6)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per row")
    ap.add_argument("--writers", type=int, default=32, help="concurrent writes (bench_gateway's --concurrency)")
    ap.add_argument("--kafka-ms", type=float, default=30.0, help="the wait between reserving and confirming")
    ap.add_argument("--loop-ms", type=float, default=2.0, help="event-loop work per request of the second row")
    args = ap.parse_args()
    rows = []
    for loop_ms in (0.0, args.loop_ms):
        with tempfile.TemporaryDirectory(prefix="bench-index-") as tmp:
            index = SqlStatementIndex.open(f"sqlite:///{Path(tmp) / 'index.sqlite3'}")
            try:
                rows.append(asyncio.run(run_row(IndexClient(index), args.writers, args.duration, args.kafka_ms,
                                                loop_ms)))  # fmt: skip
            finally:
                index.close()
    header = f"{'loop ms/req':>12}{'statements/s':>14}{'reserve ms':>12}{'confirm ms':>12}{'cpu µs/st':>11}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r.loop_ms:>12.1f}{r.statements_per_s:>14,.0f}{r.reserve_ms:>12.1f}{r.confirm_ms:>12.1f}"
              f"{r.cpu_us:>11.1f}")
    load1, load5, _ = os.getloadavg()
    print(f"\n{args.writers} writers of 100 random ids, {args.kafka_ms:g} ms between reserve and confirm, SQLite "
          f"(the embedded store); {os.cpu_count()} cores, load average {load1:.1f}/{load5:.1f} at the end.")


if __name__ == "__main__":
    main()
