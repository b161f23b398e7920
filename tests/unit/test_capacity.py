"""learnpulse capacity: the arithmetic over the measured figures, and the command's answers."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from learnpulse import capacity as cap
from learnpulse.cli import main


def workload(**kw) -> cap.Workload:
    base = dict(schools=40, learners=20_000, statements_per_hour=360_000)
    return cap.Workload(**{**base, **kw})


def test_capacity_cores_follow_the_measured_cost_per_statement():
    p = cap.plan(workload())  # 100 statements/s, one per request, server path
    gateway = next(s for s in p.stages if s.name == "gateway")
    assert p.peak_per_second == pytest.approx(100.0)
    single = cap.GATEWAY.per_request + cap.GATEWAY.per_statement
    assert gateway.cpu_seconds_per_1000 == pytest.approx(single)
    assert gateway.cores == pytest.approx(100 * single / 1000 / 0.6)
    assert p.cores == pytest.approx(sum(s.cores for s in p.stages))


def test_capacity_batched_requests_cost_less_per_statement_and_tend_to_the_batched_figure():
    costs = [cap.plan(workload(statements_per_request=n)).stages[0].cpu_seconds_per_1000 for n in (1, 2, 10, 100, 10_000)]
    assert costs == sorted(costs, reverse=True)
    assert costs[0] == pytest.approx(cap.GATEWAY.per_request + cap.GATEWAY.per_statement)
    assert costs[-1] == pytest.approx(cap.GATEWAY.per_statement, abs=1e-3)


def test_capacity_processes_are_whole_cores_and_partitions_leave_room_for_each_consumer():
    small = cap.plan(workload())
    assert all(s.processes == 1 for s in small.stages) and small.partitions == cap.PARTITIONS_DEFAULT
    replicated = cap.plan(workload(clickhouse_replicas=2, kafka_replication=3))
    assert {s.name: s.processes for s in replicated.stages}["clickhouse-server"] == 2
    assert {s.name: s.processes for s in replicated.stages}["kafka broker"] == 3
    big = cap.plan(workload(statements_per_hour=400_000_000))  # ~111k/s: many processes per stage
    worker = next(s for s in big.stages if s.name == "stream worker")
    assert worker.processes == int(-(-worker.cores // 1)) > 12
    assert big.partitions >= 2 * max(s.processes for s in big.stages if s.name in ("stream worker", "sinks"))


def test_capacity_storage_scales_with_volume_replicas_and_statement_size():
    one = cap.plan(workload())
    assert one.statements_per_year == 360_000 * 6 * 180
    assert one.clickhouse_bytes_per_year == pytest.approx(one.statements_per_year * cap.CLICKHOUSE_BYTES)
    two = cap.plan(workload(clickhouse_replicas=2, kafka_replication=3, statement_json_bytes=2 * cap.SIMULATOR_JSON_BYTES))
    assert two.clickhouse_bytes_per_year == pytest.approx(4 * one.clickhouse_bytes_per_year)
    assert two.kafka_bytes_retained == pytest.approx(6 * one.kafka_bytes_retained)


def test_capacity_command_prints_the_plan_and_refuses_nonsense_with_the_rule():
    ok = CliRunner().invoke(main, ["capacity", "--schools", "40", "--learners", "20000",
                                   "--statements-per-hour", "360000"])  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert "100.0/s" in ok.output and "gateway" in ok.output and "partitions: 12" in ok.output
    bad = CliRunner().invoke(main, ["capacity", "--schools", "0", "--learners", "20000",
                                    "--statements-per-hour", "360000"])  # fmt: skip
    assert bad.exit_code == 2 and "--schools must be ≥ 1" in bad.output


def test_capacity_memory_is_each_process_peak_times_processes_and_the_workers_grow_with_learners():
    small = cap.plan(workload())
    by_name = {s.name: s for s in small.stages}
    assert all(m.peak_mb > 0 for m in cap.MEMORY.values())
    assert by_name["gateway"].mb_per_process == pytest.approx(cap.MEMORY["gateway"].peak_mb)
    assert by_name["kafka broker"].mb_per_process == pytest.approx(cap.MEMORY["kafka broker"].peak_mb)
    assert small.mb == pytest.approx(sum(s.mb_per_process * s.processes for s in small.stages))
    replicated = {s.name: s for s in cap.plan(workload(kafka_replication=3)).stages}
    assert replicated["kafka broker"].mb == pytest.approx(3 * by_name["kafka broker"].mb)
    # Ten times the learners on one worker: its per-learner state grows by the measured share.
    more = {s.name: s for s in cap.plan(workload(learners=200_000)).stages}["stream worker"]
    grown = 180_000 / 1000 * cap.MEMORY["stream worker"].per_1000_learners_mb
    assert more.mb_per_process - by_name["stream worker"].mb_per_process == pytest.approx(grown)
    ok = CliRunner().invoke(main, ["capacity", "--schools", "40", "--learners", "20000",
                                   "--statements-per-hour", "360000"])  # fmt: skip
    assert "MB each" in ok.output and f"{small.mb:,.0f}" in ok.output
