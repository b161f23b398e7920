"""The dashboard's sparkline from ``engagement_hourly`` next to its first definition, paired.

Run as ``python -m benchmarks.bench_sparkline --data DIR`` on a directory filled by
``benchmarks.bench_dashboard --data DIR`` (any N; newer migrations are applied on opening,
0023's backfill fills ``engagement_hourly``). For each kind of reader (network, one school, a
teacher's one cohort) the two queries run alternately ``--repeat`` times in one process, so
both see the same load; p50/p95 in ms, and whether their answers are equal.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

# The sparkline as first defined (before migration 0023): FINAL over every learner's hour rows.
FIRST_SQL = """
SELECT school, toUnixTimestamp(period_start), sum(statements)
FROM {db}.engagement_by_time FINAL
WHERE grain = 'hour' AND {in_scope}
  AND period_start > (SELECT max(period_start) FROM {db}.engagement_periods WHERE grain = 'hour') - INTERVAL 24 HOUR
GROUP BY school, period_start
ORDER BY school, period_start
"""


def _p(ms: list[float], q: float) -> float:
    ms = sorted(ms)
    return ms[min(len(ms) - 1, int(round(q * (len(ms) - 1))))]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_sparkline", description=__doc__)
    ap.add_argument("--data", type=Path, required=True, help="a directory filled by bench_dashboard --data")
    ap.add_argument("--repeat", type=int, default=30)
    args = ap.parse_args(argv)

    from learnpulse.pipeline import open_clickhouse
    from learnpulse.settings import ClickHouseSettings, Settings
    from reporting.dashboard import HOURLY_SQL
    from reporting.scope import EVERY_SCHOOL, IN_SCOPE, Scope

    ch = open_clickhouse(Settings(home=args.data, clickhouse=ClickHouseSettings(url=f"chdb://{args.data / 'chdb'}")))
    ((n,),) = ch.query("SELECT count() FROM {db}.statements")
    first = FIRST_SQL.replace("{in_scope}", IN_SCOPE)
    scopes = {"network": EVERY_SCHOOL, "school": Scope.of_schools(["school-1"]),
              "teacher": Scope.of_cohorts([("school-1", "course-1-0", "k0")])}  # fmt: skip
    print(f"sparkline over {int(n):,} statements (chDB, {args.repeat} paired runs; ms)")
    print(f"{'reader':<8} {'first p50':>10} {'first p95':>10} {'hourly p50':>11} {'hourly p95':>11}  equal")
    for kind, scope in scopes.items():
        p = scope.params()
        old, new = [], []
        same = ch.query(first, p) == ch.query(HOURLY_SQL, p)  # (also the warm-up)
        for _ in range(args.repeat):
            for sql, out in ((first, old), (HOURLY_SQL, new)):
                t = time.perf_counter()
                ch.query(sql, p)
                out.append((time.perf_counter() - t) * 1000)
        print(f"{kind:<8} {_p(old, .5):10.1f} {_p(old, .95):10.1f} {_p(new, .5):11.1f} {_p(new, .95):11.1f}  {same}")
    ch.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
