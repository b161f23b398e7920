"""Resident memory of the processes a benchmark runs, sampled from ``/proc`` while it runs.

:class:`MemorySampler` reads ``VmRSS`` of every watched process twice a second in a thread,
and ``VmHWM`` (the kernel's own peak of the resident set) when a process is unwatched or
the sampler stops, so a peak between two samples is not missed. Figures are per role
(``gateway``, ``worker``, ``kafka broker`` …): the resident set when the load began (idle:
ready, before any statement; only for processes watched before the load), the median of the
samples under load, and the highest peak.
"""

from __future__ import annotations

import statistics
import threading
from dataclasses import dataclass, field
from pathlib import Path

MB = 1024 * 1024


def status_kb(pid: int, key: str) -> int | None:
    """A ``/proc/<pid>/status`` figure in kB (``VmRSS``, ``VmHWM``); None once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


@dataclass
class RoleMemory:
    idle: list[int] = field(default_factory=list)  # bytes, one per process: when the load began
    loaded: list[int] = field(default_factory=list)  # bytes, every sample taken while ``loaded``
    peak: int = 0  # bytes: the highest VmHWM / sample of any of the role's processes
    processes: int = 0

    def row(self) -> tuple[float | None, float, float]:
        idle = max(self.idle) / MB if self.idle else None
        loaded = statistics.median(self.loaded) / MB if self.loaded else 0.0
        return idle, loaded, self.peak / MB


class MemorySampler:
    """Samples the RSS of watched processes; ``loaded()`` marks the spans that count as under load."""

    def __init__(self, period_s: float = 0.5) -> None:
        self.period_s = period_s
        self.roles: dict[str, RoleMemory] = {}
        self._pids: dict[int, str] = {}
        self._idle_taken: set[int] = set()
        self._loaded = threading.Event()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)

    def start(self) -> MemorySampler:
        self._thread.start()
        return self

    def watch(self, role: str, pid: int | None, idle: bool = True) -> None:
        """Sample ``pid`` as one of ``role``; ``idle`` False: it works from its start (no idle figure)."""
        if pid is None:
            return
        with self._lock:
            self._pids[pid] = role
            if not idle:
                self._idle_taken.add(pid)
            self.roles.setdefault(role, RoleMemory()).processes += 1

    def unwatch(self, pid: int | None) -> None:
        """Stop watching ``pid`` (call before stopping it): its kernel-recorded peak is kept."""
        with self._lock:
            role = self._pids.pop(pid, None) if pid is not None else None
            if role is not None:
                self._peak(pid, role)

    def loaded(self, on: bool) -> None:
        """Samples taken while ``on`` count as "under load"."""
        if on:
            with self._lock:
                for pid, role in self._pids.items():
                    rss = status_kb(pid, "VmRSS")
                    if pid not in self._idle_taken and rss is not None:
                        self._idle_taken.add(pid)
                        self.roles[role].idle.append(rss * 1024)
            self._loaded.set()
        else:
            self._loaded.clear()

    def stop(self) -> None:
        with self._lock:
            for pid, role in list(self._pids.items()):
                self._peak(pid, role)
        self._stop.set()
        self._thread.join(5)

    def _peak(self, pid: int, role: str) -> None:
        hwm = status_kb(pid, "VmHWM")
        if hwm is not None:
            r = self.roles[role]
            r.peak = max(r.peak, hwm * 1024)

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            with self._lock:
                for pid, role in list(self._pids.items()):
                    rss = status_kb(pid, "VmRSS")
                    if rss is None:
                        continue
                    r = self.roles[role]
                    if self._loaded.is_set():
                        r.loaded.append(rss * 1024)
                    r.peak = max(r.peak, rss * 1024)

    def table(self) -> str:
        lines = [f"{'process':<44}{'measured':>9}{'idle MB':>10}{'under load MB':>15}{'peak MB':>10}"]
        for role, mem in self.roles.items():
            idle, loaded, peak = mem.row()
            shown = "-" if idle is None else f"{idle:,.0f}"
            lines.append(f"{role:<44}{mem.processes:>9}{shown:>10}{loaded:>15,.0f}{peak:>10,.0f}")
        return "\n".join(lines)
