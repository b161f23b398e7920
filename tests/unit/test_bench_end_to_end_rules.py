"""The pure rules of benchmarks/bench_end_to_end: a mistake here would misreport every run."""

from __future__ import annotations

import pytest

from benchmarks.end_to_end.rules import held, highest_held, lag_bounded, percentile


def test_percentile_nearest_rank():
    values = list(range(1, 101))  # 1..100
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile(values, 0) == 1


def test_percentile_of_few_values_is_a_value_seen():
    assert percentile([0.3, 0.1, 0.2], 50) == 0.2
    assert percentile([0.3, 0.1, 0.2], 99) == 0.3  # the maximum: no interpolation
    assert percentile([5.0], 99) == 5.0


def test_percentile_of_nothing_and_out_of_range():
    assert percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile([1], 101)


def test_lag_that_grows_is_not_bounded():
    growing = [(t, 100 * t) for t in range(0, 31, 2)]  # 0 … 3,000 records
    assert not lag_bounded(growing, floor=300)


def test_lag_that_is_flat_or_draining_is_bounded():
    flat = [(t, 900 + (50 if t % 4 else 0)) for t in range(0, 31, 2)]
    assert lag_bounded(flat, floor=300)
    draining = [(t, 3000 - 100 * t) for t in range(0, 31, 2)]
    assert lag_bounded(draining, floor=300)


def test_small_final_lag_is_bounded_whatever_came_before():
    assert lag_bounded([(0, 0), (10, 50), (20, 120)], floor=200)
    assert not lag_bounded([(0, 0), (10, 50), (20, 220)], floor=200)


def test_lag_without_samples_or_a_single_one_above_the_floor_is_not_known_bounded():
    assert not lag_bounded([], floor=100)
    assert not lag_bounded([(5, 1000)], floor=100)
    assert lag_bounded([(5, 10)], floor=100)


def test_held_needs_98_percent_accepted_and_every_stage_bounded():
    assert held(1000, 980, [True, True])
    assert not held(1000, 979, [True, True])
    assert not held(1000, 1000, [True, False])
    assert not held(1000, 1000, [])  # no lag seen: not known to hold
    assert not held(0, 0, [True])


def test_highest_held_rate():
    assert highest_held([(100, True), (300, True), (1000, False)]) == 300
    assert highest_held([(100, True), (300, False), (1000, True)]) == 1000
    assert highest_held([(100, False)]) is None


def test_the_cluster_form_needs_the_server_path_and_compare_single_needs_the_cluster_form():
    from benchmarks.bench_end_to_end import forms, parse

    with pytest.raises(SystemExit):
        parse(["--clickhouse-replicas", "2"])  # chDB has no cluster form
    with pytest.raises(SystemExit):
        parse(["--path", "server", "--compare-single"])
    assert forms(parse(["--path", "server"])) == [0]
    assert forms(parse(["--path", "server", "--clickhouse-replicas", "2"])) == [2]
    assert forms(parse(["--path", "server", "--clickhouse-replicas", "3", "--compare-single"])) == [0, 3]


def test_each_replica_url_is_read_from_what_stack_up_prints():
    from benchmarks.faults.pipeline import replica_urls, sink_name

    printed = (
        "kafka: started on 127.0.0.1:4000\n"
        "clickhouse cluster learnpulse: zookeeper started, clickhouse-r1 started, clickhouse-r2 started\n"
        "  clickhouse-r1: clickhouse://default:p%40ss@127.0.0.1:5000/learnpulse?alt_hosts=127.0.0.1:5001\n"
        "  clickhouse-r2: clickhouse://default:p%40ss@127.0.0.1:5001/learnpulse?alt_hosts=127.0.0.1:5000\n"
        "use it with LEARNPULSE_CLICKHOUSE__CLUSTER__NAME=learnpulse and a replica's URL as LEARNPULSE_CLICKHOUSE__URL\n"
    )
    urls = replica_urls(printed)
    assert urls == {
        1: "clickhouse://default:p%40ss@127.0.0.1:5000/learnpulse?alt_hosts=127.0.0.1:5001",
        2: "clickhouse://default:p%40ss@127.0.0.1:5001/learnpulse?alt_hosts=127.0.0.1:5000",
    }
    assert [sink_name(r) for r in (1, 2, 3)] == ["sink", "sink-2", "sink-3"]


def test_every_sink_and_replica_has_its_cpu_column_in_a_fixed_order():
    from benchmarks.end_to_end.run import reported_processes

    cluster = ["kafka", "zookeeper", "clickhouse-r2", "clickhouse-r1", "worker", "sink", "sink-2", "gateway"]
    assert reported_processes(cluster) == ["gateway", "worker", "sink", "sink-2", "kafka", "zookeeper",
                                           "clickhouse-r1", "clickhouse-r2"]  # fmt: skip
    assert reported_processes(["kafka", "clickhouse", "worker", "sink", "gateway"]) == [
        "gateway", "worker", "sink", "kafka", "clickhouse"]  # fmt: skip
    assert reported_processes(["kafka", "worker", "gateway"]) == ["gateway", "worker", "kafka"]
