"""The benchmarks still run: each one that needs no broker, at the smallest scale.

Benchmarks print figures and are never asserted on them; this only checks that a refactor
did not leave one broken (chdb_concurrency imported a function renamed months before).
"""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_chdb_concurrency_benchmark_runs_to_a_clean_exit():
    done = subprocess.run(  # noqa: S603 - our own module
        [sys.executable, "-m", "benchmarks.chdb_concurrency", "--rows", "20000", "--seconds", "4", "--readers", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "child exit 0" in done.stdout and "errors: []" in done.stdout, done.stdout[-2000:]


def test_dashboard_benchmark_prints_every_answer_for_every_reader():
    done = subprocess.run(  # noqa: S603 - our own module
        [sys.executable, "-m", "benchmarks.bench_dashboard", "--statements", "20000", "--repeat", "2"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    lines = [line.split() for line in done.stdout.splitlines() if line.startswith("/api/")]
    assert {(line[0], line[1]) for line in lines} == {
        (answer, reader) for answer in ("/api/summary", "/api/state", "/api/schools/{school}", "/api/cohorts/{…}",
                                        "/api/cohorts/{…}/learners/{l}", "/api/alerts")
        for reader in ("network", "school", "teacher")
    }  # fmt: skip
