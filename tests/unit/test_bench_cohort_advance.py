"""benchmarks.bench_cohort_advance runs (a small cohort, a few steps) and leaves the cohort stepped."""

from benchmarks import bench_cohort_advance
from streams.config import HealthParams


def test_the_cohort_advance_benchmark_runs():
    assert bench_cohort_advance.run(50, 5, HealthParams()) >= 0.0
