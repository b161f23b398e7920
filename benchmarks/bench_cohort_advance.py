"""CPU of the cohort stage's step (``streams.health.logic.advance``) on a cohort as the stage reads it.

Run as ``python -m benchmarks.bench_cohort_advance`` (``--learners N``, ``--steps S``): one cohort of
N learners, each with 5 hour buckets in its first 48 hours, held in ``StoredLearners`` (the cohort
stage's view of its table, here an in-memory one), advanced S hourly steps in one call, as a worker
does replaying a backlog. Prints the best CPU time of 5 runs. No Kafka, no I/O.
"""

from __future__ import annotations

import argparse
import random
import time

from streams.config import HOUR_MS, HealthParams
from streams.health import logic
from streams.health.stored import StoredCohort

T0 = 1_767_225_600_000


class _Table:
    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}


class _Message:
    partition = 0


class _Event:
    message = _Message()


def run(learners: int, steps: int, p: HealthParams) -> float:
    rng = random.Random(1)
    cs = StoredCohort.new(_Table(), "s", "c", "k", _Event()).doc
    for i in range(learners):
        for version in range(1, 6):
            hour = T0 + rng.randrange(0, 48) * HOUR_MS
            logic.merge_bucket(cs, f"l{i}", hour, rng.randrange(1, 3_600_000), hour + 60_000, version, p)
    started = time.process_time()
    logic.advance(cs, T0 + steps * HOUR_MS, p)
    return time.process_time() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--learners", type=int, default=2000)
    ap.add_argument("--steps", type=int, default=240)
    args = ap.parse_args()
    best = min(run(args.learners, args.steps, HealthParams()) for _ in range(5))
    print(f"{args.learners:,} learners, {args.steps} steps: {best:.3f} CPU-s (best of 5), "
          f"{best / args.learners / args.steps * 1e6:.2f} µs per learner and step")


if __name__ == "__main__":
    main()
