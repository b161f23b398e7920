"""What the machine's disks did during a step, from ``/sys/block/*/stat`` and ``/proc/pressure/io``.

The pipeline writes to disk in every stage (Kafka's logs, ClickHouse's parts, the gateway's
accepted-id index, which syncs each transaction). When the same step runs slower than the
run before it, this says whether the disk was the difference: writes and syncs a second,
how long each took, and the share of the step during which some (or every) task waited on I/O.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass
from pathlib import Path

_SECTOR = 512
# Not disks: loop devices (snaps, images), RAM disks and compressed swap in memory.
_NOT_DISKS = ("loop", "ram", "zram")


@dataclass(frozen=True)
class DiskReading:
    """Counters since boot, summed over the machine's disks (``Documentation/block/stat.rst``)."""

    writes: int = 0
    sectors_written: int = 0
    write_ms: int = 0
    flushes: int = 0
    flush_ms: int = 0
    busy_ms: int = 0
    # /proc/pressure/io totals, µs: some task waited on I/O; every non-idle task did.
    some_us: int = 0
    full_us: int = 0

    def __sub__(self, earlier: DiskReading) -> DiskReading:
        return DiskReading(*(a - b for a, b in zip(astuple(self), astuple(earlier), strict=True)))


def parse_block_stat(text: str) -> tuple[int, int, int, int, int, int]:
    """(writes, sectors written, ms writing, flushes, ms flushing, ms busy) of one device's stat line
    (kernels before 5.5 have no flush fields: 0)."""
    f = [int(v) for v in text.split()]
    flushes, flush_ms = (f[15], f[16]) if len(f) >= 17 else (0, 0)
    return f[4], f[6], f[7], flushes, flush_ms, f[9]


def parse_pressure(text: str) -> tuple[int, int]:
    """(some, full) ``total=`` µs of a ``/proc/pressure/*`` file."""
    totals = {}
    for line in text.splitlines():
        kind, *fields = line.split()
        totals[kind] = int(dict(f.split("=", 1) for f in fields)["total"])
    return totals.get("some", 0), totals.get("full", 0)


def read_disks(block: Path = Path("/sys/block"), pressure: Path = Path("/proc/pressure/io")) -> DiskReading | None:
    """The machine's disk counters now; None where the kernel does not give them."""
    sums = [0] * 6
    try:
        for dev in sorted(block.iterdir()):
            if dev.name.startswith(_NOT_DISKS):
                continue
            for i, v in enumerate(parse_block_stat((dev / "stat").read_text())):
                sums[i] += v
    except (OSError, ValueError, IndexError):
        return None
    try:
        some, full = parse_pressure(pressure.read_text())
    except (OSError, ValueError, KeyError):
        some, full = 0, 0
    return DiskReading(*sums, some, full)


def disk_summary(d: DiskReading, seconds: float) -> str:
    """One line: writes and syncs a second, their mean time, MB written a second, busy and waiting shares."""
    per_write = f"{d.write_ms / d.writes:.1f} ms each" if d.writes else "-"
    per_flush = f"{d.flush_ms / d.flushes:.1f} ms each" if d.flushes else "-"
    written_mb = d.sectors_written * _SECTOR / seconds / 1e6
    return (f"{d.writes / seconds:,.0f} writes/s ({per_write}), {written_mb:.1f} MB/s, "
            f"{d.flushes / seconds:,.0f} syncs/s ({per_flush}), busy {d.busy_ms / 10 / seconds:.0f}%, tasks waiting "
            f"on I/O {d.some_us / 1e4 / seconds:.0f}% (all of them {d.full_us / 1e4 / seconds:.0f}%)")  # fmt: skip
