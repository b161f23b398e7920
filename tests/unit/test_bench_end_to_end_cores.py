"""bench_end_to_end: the cores each process and the whole machine kept busy in a step."""

from __future__ import annotations

import os
import time

from benchmarks.end_to_end.report import machine_lines
from benchmarks.end_to_end.run import StepResult
from benchmarks.end_to_end.sampler import machine_cpu_seconds
from benchmarks.end_to_end.traffic import StepLoad

TICK = os.sysconf("SC_CLK_TCK")
#        user nice system idle iowait irq softirq steal guest guest_nice
STAT = f"cpu  {TICK * 10} {TICK} {TICK * 4} {TICK * 30} {TICK * 5} 0 {TICK * 2} {TICK} {TICK * 3} 0\ncpu0 1 2 3 4\n"


def test_busy_is_everything_but_idle_and_iowait_and_guest_time_is_not_counted_twice():
    busy, total = machine_cpu_seconds(STAT)
    assert busy == 10 + 1 + 4 + 2 + 1
    assert total == 10 + 1 + 4 + 30 + 5 + 2 + 1


def test_the_machine_reading_moves_with_work_done_here():
    busy0, total0 = machine_cpu_seconds()
    spin_until = time.process_time() + 0.3
    while time.process_time() < spin_until:
        pass
    busy1, total1 = machine_cpu_seconds()
    assert busy1 - busy0 >= 0.2  # our own 0.3 s of CPU at least, whatever else runs
    assert total1 - total0 >= busy1 - busy0 - 0.01  # whole ticks, compared as floats


def _step(rate: float, cpu: dict[str, float], measured_s: float, machine: tuple[float, float]) -> StepResult:
    step = StepResult(rate, measured_s, StepLoad(offered=100, sent=100, accepted=100))
    step.cpu, step.measured_s, step.machine = cpu, measured_s, machine
    return step


def test_each_process_the_pipeline_and_the_machine_in_cores_with_what_ran_beside_it():
    step = _step(1500, {"gateway": 20.0, "kafka": 6.0, "load generator": 4.0}, 40.0, (72.0, 80.0))
    (_blank, title, header, row) = machine_lines([step])
    assert "(2 cores)" in title
    assert header.split() == ["offered/s", "gateway", "kafka", "load", "generator", "all", "above", "machine", "others"]
    assert row.split() == ["1,500", "0.50", "0.15", "0.10", "0.75", "1.80", "1.05"]


def test_steps_without_a_reading_print_nothing():
    assert machine_lines([_step(1500, {"gateway": 1.0}, 0.0, (0.0, 0.0))]) == []
