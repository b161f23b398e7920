"""benchmarks/bench_end_to_end's reading of the sinks' insert histogram (benchmarks/end_to_end/inserts.py)."""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import MetricsHandler

from benchmarks.end_to_end.inserts import (
    INSERT_METRIC,
    PHASE_METRIC,
    Inserts,
    inserts_in,
    read_inserts,
    sink_metrics_urls,
)
from benchmarks.end_to_end.report import insert_lines, phase_lines


def _page(observations: dict[str, list[float]]) -> str:
    # The histogram as the sinks declare it (schemas/metrics.py), in a registry of its own.
    registry = CollectorRegistry()
    inserts = Histogram(INSERT_METRIC, "Duration of one ClickHouse insert", ["table"], registry=registry)
    Counter("learnpulse_sink_rows", "not an insert", registry=registry).inc(7)
    for table, seconds in observations.items():
        for s in seconds:
            inserts.labels(table).observe(s)
    return generate_latest(registry).decode()


def test_every_tables_inserts_are_summed():
    got = inserts_in(_page({"statements": [0.25, 0.5], "lrs_statements": [0.125]}))
    assert (got.count, got.seconds) == (3, 0.875)
    assert got.slowest(1) == [("statements", 2, 0.75)]


def test_a_page_without_the_histogram_counts_nothing():
    assert inserts_in(_page({})) == Inserts()
    assert inserts_in("") == Inserts()


def test_a_step_is_the_difference_of_two_readings():
    before = inserts_in(_page({"statements": [0.5]}))
    after = inserts_in(_page({"statements": [0.5, 1.0, 0.25], "statements_raw": [0.5]}))
    step = after - before
    assert step.tables == {"statements": (2, 1.25), "statements_raw": (1, 0.5)}
    assert (step.count, step.seconds) == (3, 1.75)


def test_read_from_a_live_metrics_endpoint_and_none_when_it_does_not_answer():
    registry = CollectorRegistry()
    Histogram(INSERT_METRIC, "d", ["table"], registry=registry).labels("statements").observe(2.0)
    server = ThreadingHTTPServer(("127.0.0.1", 0), MetricsHandler.factory(registry))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert read_inserts(f"http://127.0.0.1:{server.server_port}/metrics") == Inserts({"statements": (1, 2.0)})
    finally:
        server.shutdown()
        server.server_close()
    assert read_inserts(f"http://127.0.0.1:{server.server_port}/metrics", timeout_s=1) is None


@pytest.mark.parametrize("sinks_in", ["gateway", "sink"])
def test_the_processes_that_run_sinks_are_read(sinks_in):
    pipeline = SimpleNamespace(sinks_in=sinks_in, processes={
        "gateway": SimpleNamespace(port=8100, env={"LEARNPULSE_METRICS_PORT": "9100"}),
        "worker": SimpleNamespace(port=None, env={"LEARNPULSE_METRICS_PORT": "9101"}),
        "sink": SimpleNamespace(port=None, env={"LEARNPULSE_METRICS_PORT": "9102"}),
        "kafka": SimpleNamespace(port=9092),
    })  # fmt: skip
    urls = sink_metrics_urls(pipeline)
    if sinks_in == "gateway":
        assert urls["gateway"] == "http://127.0.0.1:8100/metrics"
    else:
        assert "gateway" not in urls
    assert urls["sink"] == "http://127.0.0.1:9102/metrics"
    assert "worker" not in urls and "kafka" not in urls


def test_the_report_gives_rate_share_and_mean_per_step():
    inserts = Inserts({"statements": (400, 11.0), "mastery": (80, 1.0), "quarantine": (0, 0.0)})
    step = SimpleNamespace(rate=1500, duration=40.0, inserts={"sink": inserts})
    (_blank, _title, line) = insert_lines([step])
    assert "sink" in line and "12.0 inserts/s" in line and "0.30 s inserting per s" in line and "25.0 ms each" in line
    assert line.endswith("slowest: statements 28 ms × 10.0/s, mastery 12 ms × 2.0/s")
    assert insert_lines([SimpleNamespace(rate=1500, duration=40.0, inserts={})]) == []


def _phase_page(observations: dict[tuple[str, str], list[float]]) -> str:
    registry = CollectorRegistry()
    phases = Histogram(PHASE_METRIC, "Duration of one phase of a sink's batch", ["sink", "phase"], registry=registry)
    for (sink, phase), seconds in observations.items():
        for s in seconds:
            phases.labels(sink, phase).observe(s)
    return generate_latest(registry).decode()


def test_batch_phases_are_read_per_sink_and_subtracted_per_step():
    before = inserts_in(_phase_page({("statements", "filling"): [1.0], ("statements", "insert"): [0.25]}))
    after = inserts_in(_phase_page({
        ("statements", "filling"): [1.0, 0.5, 0.5], ("statements", "insert"): [0.25, 0.125, 0.375],
        ("engagement", "filling"): [0.5],
    }))  # fmt: skip
    step = after - before
    assert step.tables == {}
    assert step.sink_phases() == {
        "statements": [("filling", 2, 1.0), ("insert", 2, 0.5)],
        "engagement": [("filling", 1, 0.5)],
    }


def test_the_phase_report_gives_batches_per_second_and_mean_ms_per_phase():
    ins = Inserts(phases={("statements", "filling"): (20, 10.0), ("statements", "insert"): (20, 3.0),
                          ("statements", "recompute_touched"): (20, 1.0), ("alerts", "filling"): (0, 0.0)})  # fmt: skip
    step = SimpleNamespace(rate=750, duration=10.0, inserts={"sink": ins})
    (_blank, _title, line) = phase_lines([step])
    assert "statements" in line and "2.0/s" in line
    assert line.endswith("filling 500, insert 150, recompute_touched 50")
    assert phase_lines([SimpleNamespace(rate=750, duration=10.0, inserts={"sink": Inserts()})]) == []
