"""How large is the gateway's accepted-id index per statement, before and after pruning?

Run as ``python -m benchmarks.bench_index_prune`` (``--statements N``, ``--batch B``).
Fills a fresh SQLite index (the default LRS store) with ``N`` simulated statements as the
gateway stores them (canonical form: id, timestamp, stored, authority, version), reserved
and confirmed 100 per transaction as the gateway's group commit does, then prunes them all
as the gateway does once the statements sink has them (``SqlStatementIndex.prune``,
``--batch`` entries per transaction) and prints, per state: the file's bytes per statement
(after ``VACUUM``, so free pages do not count), the mean time of a read by id's index trip
(``read_one``: the entry and whether it is voided), and the CPU µs per statement of pruning.
The stored JSON's own size is printed beside it as the reference.
"""

from __future__ import annotations

import argparse
import itertools
import resource
import tempfile
import time
from pathlib import Path

import orjson

from producers.lrsstore.database import Database
from producers.lrsstore.statement_index import SqlStatementIndex
from producers.simulator import SimulationConfig, simulate
from schemas.lrs_store import AcceptedStatement, Claim, Holder
from schemas.xapi.canonical import canonicalize

AUTHORITY = {"objectType": "Agent", "account": {"homePage": "https://learnpulse.dev/schools", "name": "school-000"}}
PER_TRANSACTION = 100


def stored_statements(n: int) -> list[AcceptedStatement]:
    out = []
    for i, sim in enumerate(itertools.islice(simulate(SimulationConfig()), n)):
        st = canonicalize(sim.statement, authority=AUTHORITY, stored_ms=1_700_000_000_000 + i)
        out.append(AcceptedStatement(st["id"].lower(), orjson.dumps(st), 1_700_000_000_000 + i, f"learner-{i % 1000}"))
    return out


def fill(index: SqlStatementIndex, statements: list[AcceptedStatement]) -> None:
    for n in range(0, len(statements), PER_TRANSACTION):
        group = statements[n : n + PER_TRANSACTION]
        holder = Holder("bench", "run", n)
        index.reserve([Claim("school-000", holder, [s.statement_id for s in group])], 1, 0)
        index.confirm([("school-000", holder, group)], 1_000 + n)


def file_bytes(path: Path) -> int:
    db = Database(f"sqlite:///{path}")
    try:
        db._conn.execute("VACUUM")  # noqa: SLF001 - a benchmark measuring the file
        db._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # noqa: SLF001
    finally:
        db.close()
    return path.stat().st_size


def read_ms(index: SqlStatementIndex, ids: list[str], n: int = 200) -> float:
    """Mean ms of a read by id's index trip (the entry and whether it is voided)."""
    started = time.perf_counter()
    for sid in ids[:: max(len(ids) // n, 1)][:n]:
        index.read_one("school-000", sid)
    return (time.perf_counter() - started) / min(n, len(ids)) * 1000


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--statements", type=int, default=50_000)
    ap.add_argument("--batch", type=int, default=2_000, help="entries per prune transaction (the gateway's)")
    args = ap.parse_args()

    print(f"simulating {args.statements} statements …", flush=True)
    statements = stored_statements(args.statements)
    json_bytes = sum(len(s.body) for s in statements) / len(statements)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lrs-store.sqlite3"
        index = SqlStatementIndex.open(f"sqlite:///{path}")
        print("filling the index …", flush=True)
        fill(index, statements)
        ids = [s.statement_id for s in statements]
        read_full = read_ms(index, ids)
        index.close()
        full = file_bytes(path)

        index = SqlStatementIndex.open(f"sqlite:///{path}")
        print("pruning …", flush=True)
        cpu, wall, pruned = cpu_s(), time.perf_counter(), 0
        while (done := index.prune(10**15, args.batch)) > 0:
            pruned += done
        cpu, wall = cpu_s() - cpu, time.perf_counter() - wall
        read_pruned = read_ms(index, ids)
        index.close()
        after = file_bytes(path)

    n = len(statements)
    print(f"\n{n} statements, stored JSON {json_bytes:,.0f} bytes each on average")
    print(f"{'index':<28}{'bytes/statement':>16}{'ratio to JSON':>15}{'read by id ms':>15}")
    print(f"{'with the stored statements':<28}{full / n:>16,.0f}{full / n / json_bytes:>15.2f}{read_full:>15.3f}")
    print(f"{'pruned (key + timestamp)':<28}{after / n:>16,.0f}{after / n / json_bytes:>15.2f}{read_pruned:>15.3f}")
    print(f"pruning: {pruned} entries, {cpu / pruned * 1e6:,.1f} µs CPU and {wall / pruned * 1e6:,.1f} µs wall per statement")


if __name__ == "__main__":
    main()
