"""What the pipeline's processes cost and how far behind its consumer groups are.

CPU: utime + stime of a process and its descendants from ``/proc/<pid>/stat`` (every
thread included), in seconds. Lag: per consumer group and topic, the offsets between the
group's committed offset and the end of each partition (records and, on topics written in
transactions, commit markers; one per partition is allowed for the last marker), sampled every ``every`` seconds with one
admin client and one consumer kept open (cheaper than ``benchmarks.faults.catchup.group_offsets``,
which opens both per call; the same reading)."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from pathlib import Path

logging.getLogger("kafka").setLevel(logging.CRITICAL)

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of one process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK


def machine_cpu_seconds(stat_text: str | None = None) -> tuple[float, float]:
    """(busy, all) CPU seconds of every core since boot, from ``/proc/stat``'s ``cpu`` line.

    Busy is everything but idle and iowait: every process on the machine, the kernel's
    interrupts and a hypervisor's steal, so the pipeline's share of it says whether the
    machine was full or something else ran beside it.
    """
    text = stat_text if stat_text is not None else Path("/proc/stat").read_text()
    line = next(row for row in text.splitlines() if row.startswith("cpu "))
    ticks = [int(v) for v in line.split()[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    # guest and guest_nice (fields 9, 10) are already counted in user and nice.
    total = sum(ticks[:8])
    return (total - idle) / _TICK, total / _TICK


def cpu_seconds(pid: int | None) -> float:
    """CPU seconds of ``pid`` and its living descendants (0 if it is gone)."""
    if pid is None:
        return 0.0
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            got = _stat(int(entry))
            if got is not None:
                parents[int(entry)], cpu[int(entry)] = got
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += cpu.get(p, 0.0)
        todo.extend(c for c, parent in parents.items() if parent == p)
    return total


class LagSampler:
    """Samples ``{(group, topic): lag}`` every ``every`` seconds in a thread of its own."""

    def __init__(self, bootstrap: str, every: float = 2.0) -> None:
        self.bootstrap = bootstrap
        self.every = every
        self.samples: list[tuple[float, dict[tuple[str, str], int]]] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> LagSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def between(self, start: float, end: float) -> list[tuple[float, dict[tuple[str, str], int]]]:
        return [s for s in list(self.samples) if start <= s[0] <= end]

    def _run(self) -> None:
        from kafka import KafkaAdminClient, KafkaConsumer

        admin = consumer = None
        while not self._stop.is_set():
            try:
                if admin is None:
                    admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=10000)
                    consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, request_timeout_ms=10000)
                self.samples.append((time.monotonic(), self._lags(admin, consumer)))
            except Exception:  # noqa: BLE001 - a broker busy under load: count it, open anew
                self.errors += 1
                for c in (admin, consumer):
                    with contextlib.suppress(Exception):
                        c.close()
                admin = consumer = None
            self._stop.wait(self.every)
        for c in (admin, consumer):
            with contextlib.suppress(Exception):
                c.close()

    @staticmethod
    def _lags(admin, consumer) -> dict[tuple[str, str], int]:
        from benchmarks.faults.catchup import read_group_offsets

        lags: dict[tuple[str, str], int] = {}
        for (group, topic, _partition), (committed, end) in read_group_offsets(admin, consumer).items():
            lags[(group, topic)] = lags.get((group, topic), 0) + max(0, end - max(committed, 0) - 1)
        return lags
