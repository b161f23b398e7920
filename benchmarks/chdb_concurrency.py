"""Does the chDB-owning process survive a fill while the dashboard and research SQL read?

Run as ``python -m benchmarks.chdb_concurrency`` (``--rows``, ``--seconds``, ``--readers``).

A child process opens embedded ClickHouse (chDB) through ``sinks.engines`` as ``learnpulse
serve`` does, applies the migrations, then for ``--seconds``: one thread fills
``statements`` by the million (``INSERT … SELECT`` from ``numbers``), one inserts derived
rows through the sinks' Arrow path in small batches, and ``--readers`` threads run the
dashboard's queries (``/api/state``, ``/api/summary``) and research SELECTs (``/api/sql``)
in a loop. The parent prints how the child ended: a segmentation fault shows as signal 11.
Bounded: the child is killed after ``--seconds`` + 300.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime

RESEARCH = (
    "SELECT school, course, count() AS n, uniqExact(learner) FROM {db}.statements FINAL GROUP BY school, course",
    "SELECT toStartOfHour(timestamp) AS h, count() FROM {db}.statements WHERE verb_id != '' GROUP BY h ORDER BY h",
    "SELECT learner, sum(statements) FROM {db}.engagement FINAL WHERE grain = 'day' GROUP BY learner LIMIT 1000",
)

_FILL = """
INSERT INTO {db}.statements (statement_id, school, course, cohort, learner, verb_id, object_id, object_type,
    registration, result_success, result_completion, result_score_scaled, result_score_raw, result_duration_ms,
    timestamp, stored, voided)
SELECT generateUUIDv4(), concat('school-', toString(number % 7)), concat('course-', toString(number % 31)),
       concat('cohort-', toString(number % 5)), lower(hex(cityHash64(number % 50000))),
       'http://adlnet.gov/expapi/verbs/answered', concat('https://x.example/q/', toString(number % 997)),
       'Activity', NULL, number % 2, NULL, (number % 100) / 100, NULL, 20000,
       now64(3) - toIntervalSecond(number % 864000), now64(3), 0
FROM numbers({n:UInt64})
"""


def child(rows: int, seconds: float, readers: int, path: str) -> int:
    from learnpulse.settings import Settings
    from learnpulse.web import research_runner
    from reporting.dashboard import dashboard_state
    from reporting.scope import EVERY_SCHOOL
    from reporting.sql import research_query
    from reporting.summary import school_summaries
    from schemas.clickhouse.migrate import migrate
    from sinks.engines import engine_from_url

    ch = engine_from_url(f"chdb://{path}")
    migrate(ch)
    # Research SQL as `serve` runs it: checked, on a read-only handle of its own, with limits.
    runner = research_runner(Settings(), ch)
    stop = threading.Event()
    done = {"filled": 0, "inserts": 0, "reads": 0}
    errors: list[str] = []

    def guarded(name, work):
        def run():
            try:
                while not stop.is_set():
                    work()
            except Exception as err:  # noqa: BLE001 - reported, the process goes on
                errors.append(f"{name}: {err!r}"[:300])

        return threading.Thread(target=run, name=name, daemon=True)

    def fill():
        if done["filled"] >= rows:
            time.sleep(0.5)
            return
        n = min(500_000, rows - done["filled"])
        ch.execute(_FILL, {"n": n})
        done["filled"] += n

    def insert_derived():
        now = datetime.now(UTC)
        k = done["inserts"]
        cols = ["school", "course", "cohort", "learner", "grain", "period_start", "statements", "sessions",
                "active_ms", "last_event", "version"]  # fmt: skip
        data = [["school-1"] * 200, ["course-1"] * 200, ["cohort-1"] * 200, [f"l{k}-{i}" for i in range(200)],
                ["day"] * 200, [now.replace(microsecond=0)] * 200, [3] * 200, [1] * 200, [60000] * 200,
                [now] * 200, [k] * 200]  # fmt: skip
        ch.insert(f"{ch.database}.engagement", cols, data)
        done["inserts"] += 1

    def read():
        dashboard_state(ch, EVERY_SCHOOL)
        school_summaries(ch, EVERY_SCHOOL)
        for sql in RESEARCH:
            research_query(runner, ch.database, sql)
        done["reads"] += 1

    threads = [guarded("fill", fill), guarded("sink-insert", insert_derived)]
    threads += [guarded(f"reader-{i}", read) for i in range(readers)]
    for t in threads:
        t.start()
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        time.sleep(5)
        print(f"  [{time.monotonic() - started:5.0f}s] {done}", flush=True)
    stop.set()
    for t in threads:
        t.join(120)
    runner.close()
    ch.close()
    print(f"child done: {done}; errors: {errors[:5]}", flush=True)
    return 0


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.chdb_concurrency", description=__doc__)
    ap.add_argument("--rows", type=int, default=3_000_000)
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--readers", type=int, default=3)
    ap.add_argument("--child", metavar="PATH", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args.rows, args.seconds, args.readers, args.child)
    with tempfile.TemporaryDirectory(prefix="lp-chdb-conc-") as tmp:
        cmd = [sys.executable, "-m", "benchmarks.chdb_concurrency", "--rows", str(args.rows),
               "--seconds", str(args.seconds), "--readers", str(args.readers), "--child", f"{tmp}/chdb"]  # fmt: skip
        started = time.monotonic()
        try:
            code = subprocess.run(cmd, timeout=args.seconds + 300).returncode  # noqa: S603
        except subprocess.TimeoutExpired:
            code = "hung (killed)"
        how = f"signal {-code}" + (" (SEGMENTATION FAULT)" if code == -11 else "") if isinstance(code, int) and code < 0 else code
        print(f"chDB concurrency: {args.rows} rows, {args.readers} readers, {time.monotonic() - started:.0f}s: child exit {how}")
        return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
