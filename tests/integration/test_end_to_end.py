"""The walking skeleton, for real: simulator → Kafka → Faust worker → sinks → ClickHouse.

Runs against the real broker and both ClickHouse engines and checks exact counts: every
statement once in ``statements`` and ``statements_raw``, and the per-learner hourly
engagement written by the worker summing to the same number (the simulator sends no
voiding statements and none later than the engagement horizon).
"""

from __future__ import annotations

import pytest

from learnpulse.pipeline import open_clickhouse, run_simulator, start_sinks
from producers.simulator import SimulationConfig
from tests.conftest import wait_for

N = 3_000


@pytest.mark.kafka
def test_pipeline_end_to_end_exact_counts(settings, spawn):
    worker = spawn(["worker"], settings, "worker")
    sent = run_simulator(settings, SimulationConfig(seed=7, schools=3), count=N, rate=None)
    assert sent == N

    ch = open_clickhouse(settings)
    sinks = start_sinks(settings, ch)
    try:

        def counts():
            if worker.popen.poll() is not None:
                pytest.fail(f"worker exited {worker.popen.returncode}:\n{worker.tail()}")
            if sinks.errors:
                pytest.fail(f"sink failed: {sinks.errors[0]!r}")
            (row,) = ch.query(
                "SELECT (SELECT count() FROM {db}.statements FINAL),"
                " (SELECT count() FROM {db}.statements_raw FINAL),"
                " (SELECT sum(statements) FROM {db}.engagement FINAL WHERE grain = 'hour')"
            )
            return tuple(int(x or 0) for x in row)

        wait_for(lambda: counts() == (N, N, N), 180, f"{N} statements and hourly engagement in ClickHouse")
        # Nothing more arrives afterwards (no doubles written late).
        assert counts() == (N, N, N)
        (distinct,) = ch.query("SELECT uniqExact(statement_id) FROM {db}.statements")
        assert int(distinct[0]) == N
        per_school = ch.query("SELECT school, count() FROM {db}.statements FINAL GROUP BY school ORDER BY school")
        assert [r[0] for r in per_school] == ["school-000", "school-001", "school-002"]
        assert sum(int(r[1]) for r in per_school) == N
    finally:
        sinks.join()
        ch.close()
