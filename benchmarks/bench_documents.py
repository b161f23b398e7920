"""Document PUT/GET per second and p99 next to statement POSTs, on SQLite and PostgreSQL, in one run.

Run as ``python -m benchmarks.bench_documents`` (``--duration S`` per row, ``--concurrency N``).

``learnpulse gateway --no-sinks`` in its own process against a real Kafka broker, once with
the embedded store (SQLite in its LEARNPULSE_HOME) and once with Debian's PostgreSQL
(``learnpulse.postgres``, started here). Rows per store, each against the same process:

- ``statement POST``: one statement per request (the peer/ceiling: its Kafka transaction);
- ``state PUT``: 1 KiB JSON resume State, each client overwriting its own document (1.0.3);
- ``state GET``: reading those documents back;
- ``profile PUT If-Match``: each client replacing its own Activity Profile with the ETag
  of its previous write (the compare-and-set path);
- ``counter If-Match``: all clients incrementing ONE Activity Profile counter by GET + PUT
  If-Match, retrying on 412 (contention: req/s counts successful increments).

The ratio column is document requests/s over statement POSTs/s on the same store. One
asyncio/aiohttp client in this process; everything shares this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from .bench_gateway import load, start_kafka, start_ours, stop

ACT = "https://example.org/course/geo"


@dataclass
class Row:
    store: str
    operation: str
    concurrency: int
    requests: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    errors: dict[int, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def line(self, peer: Row | None) -> str:
        lat = sorted(self.latencies) or [0.0]
        p50 = statistics.median(lat) * 1000
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
        ratio = f"{self.rate / peer.rate:6.2f}x" if peer and peer.rate and peer is not self else "   -   "
        errors = ",".join(f"{k}:{v}" for k, v in sorted(self.errors.items())) or "-"
        return (f"{self.store:<11}{self.operation:<24}{self.concurrency:>5}{self.rate:>10,.0f}{p50:>9.1f}{p99:>9.1f}"
                f"  {ratio}  {errors}")  # fmt: skip


Step = Callable[[aiohttp.ClientSession, int, dict], Awaitable[tuple[bool, int]]]


async def run(step: Step, concurrency: int, duration: float, warmup: float = 2.0) -> tuple[int, list[float], dict]:
    """``concurrency`` workers call ``step(session, worker, state)`` until the time is up."""
    start = time.monotonic()
    measure_from, stop_at = start + warmup, start + warmup + duration
    latencies: list[float] = []
    errors: dict[int, int] = {}
    done = 0

    async def worker(session: aiohttp.ClientSession, w: int) -> None:
        nonlocal done
        state: dict = {}
        while time.monotonic() < stop_at:
            t0 = time.monotonic()
            ok, status = await step(session, w, state)
            t1 = time.monotonic()
            if measure_from <= t1 <= stop_at:
                if ok:
                    done += 1
                    latencies.append(t1 - t0)
                else:
                    errors[status] = errors.get(status, 0) + 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        await asyncio.gather(*(worker(session, w) for w in range(concurrency)))
    return done, latencies, errors


def document_steps(base: str, auth: dict[str, str]) -> dict[str, Step]:
    v1 = {**auth, "X-Experience-API-Version": "1.0.3", "Content-Type": "application/json"}
    v2 = {**auth, "X-Experience-API-Version": "2.0.0", "Content-Type": "application/json"}
    resume = json.dumps({"slide": 12, "suspend_data": "x" * 1000})

    def state_params(w: int) -> dict[str, str]:
        return {"activityId": ACT, "agent": json.dumps({"mbox": f"mailto:learner{w}@example.org"}), "stateId": "resume"}

    async def state_put(s, w, _st):
        async with s.put(f"{base}/activities/state", params=state_params(w), data=resume, headers=v1) as r:
            await r.read()
            return r.status == 204, r.status

    async def state_get(s, w, _st):
        async with s.get(f"{base}/activities/state", params=state_params(w), headers=v1) as r:
            await r.read()
            return r.status == 200, r.status

    async def profile_cas(s, w, st):
        params = {"activityId": ACT, "profileId": f"profile-{w}"}
        cond = {"If-Match": st["etag"]} if "etag" in st else {"If-None-Match": "*"}
        async with s.put(f"{base}/activities/profile", params=params, data=resume, headers={**v2, **cond}) as r:
            await r.read()
            if r.status == 204:
                st["etag"] = r.headers["ETag"]
            return r.status == 204, r.status

    async def counter(s, _w, _st):
        params = {"activityId": ACT, "profileId": "counter"}
        while True:
            async with s.get(f"{base}/activities/profile", params=params, headers=v2) as r:
                value, etag = int(await r.read()), r.headers["ETag"]
            async with s.put(f"{base}/activities/profile", params=params, data=str(value + 1),
                             headers={**v2, "Content-Type": "text/plain", "If-Match": etag}) as r:  # fmt: skip
                await r.read()
                if r.status != 412:
                    return r.status == 204, r.status

    return {"state PUT": state_put, "state GET": state_get, "profile PUT If-Match": profile_cas,
            "counter If-Match": counter}  # fmt: skip


def bench_store(store: str, settings, home: Path, args) -> list[Row]:
    proc, statements_url, auth = start_ours(settings, home, sinks=False)
    rows: list[Row] = []
    try:
        common = {"Content-Type": "application/json", "X-Experience-API-Version": "1.0.3"}
        asyncio.run(_first_statement(statements_url, {**common, **auth}))
        s = asyncio.run(load(statements_url, {**common, **auth}, 1, 1, args.concurrency, args.duration, 2.0, store))
        rows.append(Row(store, "statement POST", args.concurrency, len(s.latencies), s.seconds, s.latencies, s.errors))
        print(rows[-1].line(None), file=sys.stderr)
        base = statements_url.rsplit("/statements", 1)[0]
        steps = document_steps(base, auth)
        seed = {"activityId": ACT, "profileId": "counter"}
        asyncio.run(_put_counter(base, auth, seed))
        for name, step in steps.items():
            done, lat, errors = asyncio.run(run(step, args.concurrency, args.duration))
            rows.append(Row(store, name, args.concurrency, done, args.duration, lat, errors))
            print(rows[-1].line(rows[0]), file=sys.stderr)
    finally:
        stop(proc)
    return rows


async def _first_statement(url: str, headers: dict[str, str], timeout: float = 180.0) -> None:
    """Wait until the gateway's Kafka producers are ready (the first transaction takes seconds)."""
    from .bench_gateway import batch_template

    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as s:
        while time.monotonic() < deadline:
            body = batch_template(1, 1).replace(b"MARKMARK", os.urandom(4).hex().encode())
            async with s.post(url, data=body, headers=headers) as r:
                await r.read()
                if r.status == 200:
                    return
            await asyncio.sleep(0.5)
    raise SystemExit("the gateway accepted no statement in time")


async def _put_counter(base: str, auth: dict[str, str], params: dict[str, str]) -> None:
    headers = {**auth, "X-Experience-API-Version": "2.0.0", "Content-Type": "text/plain", "If-None-Match": "*"}
    async with aiohttp.ClientSession() as s, s.put(f"{base}/activities/profile", params=params, data="0",
                                                   headers=headers) as r:  # fmt: skip
        if r.status != 204:
            raise SystemExit(f"could not create the counter: {r.status} {await r.text()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=8.0, help="measured seconds per row (after a 2 s warm-up)")
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args()
    from learnpulse.postgres import PostgresServer
    from learnpulse.settings import LrsStoreSettings, Settings

    tmp = Path(tempfile.mkdtemp(prefix="bench-documents-"))
    tmp.chmod(0o711)  # PostgreSQL runs as the postgres user when we are root
    broker = pg = None
    rows: list[Row] = []
    try:
        broker, settings = start_kafka(tmp / "kafka-home")
        sqlite = settings.model_copy(update={"lrs_store": LrsStoreSettings(url=f"sqlite:///{tmp / 'docs.sqlite3'}")})
        rows += bench_store("sqlite", sqlite, tmp / "sqlite-home", args)
        from .bench_gateway import free_port

        pg = PostgresServer(Settings(home=tmp / "pg-home", lrs_store=LrsStoreSettings(postgres_port=free_port())))
        pg.up(timeout=120)
        postgres = settings.model_copy(update={"lrs_store": LrsStoreSettings(url=pg.create_database("bench"))})
        rows += bench_store("postgresql", postgres, tmp / "pg-gateway-home", args)
        header = f"{'store':<11}{'operation':<24}{'conc':>5}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}  {'÷ POST':>7}  errors"
        print(header)
        print("-" * len(header))
        peers = {r.store: r for r in rows if r.operation == "statement POST"}
        for r in rows:
            print(r.line(peers[r.store]))
        load1, load5, _ = os.getloadavg()
        print(f"\n{os.cpu_count()} cores shared by Kafka, PostgreSQL, the gateway and the load generator (load average "
              f"{load1:.1f}/{load5:.1f} at the end). ÷ POST: requests/s over single-statement POSTs/s on the same "
              "gateway and store. counter If-Match: successful increments/s of one document shared by every client "
              "(errors: non-412 failures only; 412s are retried inside the step).")  # fmt: skip
    finally:
        if pg is not None:
            pg.stop()
        if broker is not None:
            broker.stop()


if __name__ == "__main__":
    main()
