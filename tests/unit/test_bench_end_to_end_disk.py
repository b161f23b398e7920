"""bench_end_to_end: what the machine's disks did during a step."""

from __future__ import annotations

import os
from dataclasses import astuple
from types import SimpleNamespace

import pytest

from benchmarks.end_to_end.disk import DiskReading, disk_summary, parse_block_stat, parse_pressure, read_disks
from benchmarks.end_to_end.report import machine_lines

#        reads merged sectors ms | writes merged sectors ms | inflight busy queue | discards ... | flushes ms
STAT = "100 5 800 40 2000 10 64000 3000 0 900 5000 0 0 0 0 400 80\n"
OLD_KERNEL = "100 5 800 40 2000 10 64000 3000 0 900 5000\n"
PRESSURE = "some avg10=1.00 avg60=0.50 avg300=0.10 total=4000000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=1000000\n"


def test_a_devices_writes_syncs_and_busy_time_are_read_from_its_stat_line():
    assert parse_block_stat(STAT) == (2000, 64000, 3000, 400, 80, 900)
    assert parse_block_stat(OLD_KERNEL) == (2000, 64000, 3000, 0, 0, 900), "no flush fields before 5.5"
    assert parse_pressure(PRESSURE) == (4_000_000, 1_000_000)


def test_every_disk_is_summed_and_loop_devices_and_ram_are_not(tmp_path):
    for name, text in {"vda": STAT, "vdb": STAT, "loop0": STAT, "zram0": STAT, "ram1": STAT}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "stat").write_text(text)
    pressure = tmp_path.parent / f"{tmp_path.name}-io"
    pressure.write_text(PRESSURE)
    reading = read_disks(tmp_path, pressure)
    assert reading == DiskReading(4000, 128000, 6000, 800, 160, 1800, 4_000_000, 1_000_000)


def test_no_block_devices_readable_gives_none_and_no_pressure_file_gives_zero(tmp_path):
    assert read_disks(tmp_path / "absent", tmp_path / "io") is None
    (tmp_path / "vda").mkdir()
    (tmp_path / "vda" / "stat").write_text(STAT)
    assert read_disks(tmp_path, tmp_path / "absent").some_us == 0


def test_this_machines_counters_only_grow(tmp_path):
    if not os.path.exists("/sys/block"):
        pytest.skip("no /sys/block (not Linux)")
    first = read_disks()
    with open(tmp_path / "probe", "wb") as f:
        f.write(b"x" * 4096)
        f.flush()
        os.fsync(f.fileno())
    second = read_disks()
    assert first is not None and second is not None
    assert all(v >= 0 for v in astuple(second - first))


def test_a_step_is_summarized_per_second():
    step = DiskReading(writes=4000, sectors_written=40_000_000 // 512 * 2, write_ms=2000, flushes=1000,
                       flush_ms=500, busy_ms=10_000, some_us=5_000_000, full_us=1_000_000)  # fmt: skip
    line = disk_summary(step, 20.0)
    assert line.startswith("200 writes/s (0.5 ms each), 4.0 MB/s, 50 syncs/s (0.5 ms each), busy 50%")
    assert line.endswith("tasks waiting on I/O 25% (all of them 5%)")


def test_the_cores_table_is_followed_by_the_disks_line():
    step = SimpleNamespace(rate=750, measured_s=20.0, machine=(30.0, 40.0), cpu={"gateway": 10.0},
                           disks=DiskReading(writes=2000))  # fmt: skip
    lines = machine_lines([step])
    assert lines[-1].split()[:3] == ["750", "100", "writes/s"], lines
