"""The run's event clock: statements are stamped ``wall now + offset`` so that each step's
event time crosses an hour boundary (plus the worker's watermark delay) a few seconds after
the step's load starts, and freshness (d), "in cohort health", can be measured in every step.

Why: the cohort stage writes a ``cohort_health`` row at an hourly event-time boundary ``H``
only once the global watermark passes ``H`` — every source partition's newest statement time
minus ``watermark_lag`` (10 min by default; ``streams.learner.logic.partition_watermark``,
the minimum over partitions still being read: ``streams.health.logic.global_watermark``) — and
only for a cohort whose first hour is before ``H``. Stamped with the wall clock, a 20 s step
crosses such a boundary once an hour at best.

So each step has an offset chosen so that event time ``H + lag`` (the *crossing*) falls
``lead`` seconds after the step starts, with ``H`` one hour after the previous step's: event
time only moves forward, one hour per step, starting a few hours in the past (``stamp`` never
runs ahead of the wall clock within the planned steps). Before the first step a *primer*
(one statement per probe learner, stamped half an hour before the first boundary) gives the
probe cohorts a first hour before it, so the first step's boundary is evaluated too.

(d) of a step: from the first acknowledgement of a statement stamped at or after the
crossing, to the first moment a ``cohort_health`` row with ``at = H`` is readable for a probe
cohort (one figure per probe course/cohort). The cohort stage writes a row at ``H`` only when
the cohort's figures changed since its previous row; the load gives every cohort activity in
every step, so they do.

``plan_step`` and ``first_boundary`` are pure (tests/unit/test_bench_end_to_end_clock.py).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

HOUR_MS = 3_600_000
#: the primer's statements are stamped this long before the first boundary (in its hour before)
PRIMER_BEFORE_MS = HOUR_MS // 2


@dataclass(frozen=True)
class StepClock:
    """One step's event clock: event time = wall time + ``offset_ms``."""

    offset_ms: int
    boundary_ms: int  # H: the hour whose cohort_health rows the step is waited for
    crossing_ms: int  # H + watermark lag: the event time at which the watermark passes H
    started_ms: int  # wall time the step was planned for (its load's start)

    def crossing_wall_ms(self) -> int:
        """Wall time at which the stamps reach the crossing."""
        return self.crossing_ms - self.offset_ms


def crossing_lead_s(duration_s: float) -> float:
    """How long after a step's start its stamps cross: 5 s, or a quarter of a shorter step."""
    return min(5.0, duration_s / 4)


def first_boundary(wall_ms: int, steps: int) -> int:
    """The first step's boundary: an hour ``steps + 1`` hours before the current one, so that
    ``steps`` steps of one hour each still stamp event times before the wall clock."""
    return wall_ms - wall_ms % HOUR_MS - (steps + 1) * HOUR_MS


def plan_step(wall_ms: int, lead_ms: int, lag_ms: int, previous: StepClock | None, first: int) -> StepClock:
    """The clock of a step starting at ``wall_ms``: its crossing ``lead_ms`` after the start.

    The boundary is ``first`` for the first step, else the next hour after the previous
    step's boundary — or a later one, should the offset otherwise go back (a step that
    started more than an hour of wall time after the previous one): offsets never decrease,
    so event time only moves forward.
    """
    boundary = first if previous is None else previous.boundary_ms + HOUR_MS
    while True:
        offset = boundary + lag_ms - lead_ms - wall_ms
        if previous is None or offset >= previous.offset_ms:
            return StepClock(offset, boundary, boundary + lag_ms, wall_ms)
        boundary += HOUR_MS


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def wall_ms() -> int:
    return int(time.time() * 1000)


class EventClock:
    """The stamps of one run (thread-safe): ``stamp()`` for every statement, ``acknowledged()``
    after each 2xx, ``next_step()`` before each step's load (the warmup's included)."""

    def __init__(self, lag_ms: int, steps: int) -> None:
        self.lag_ms = lag_ms
        self.first = first_boundary(wall_ms(), steps)
        self.step: StepClock | None = None
        self.crossed_at: float | None = None  # monotonic: first ack of a stamp at or after the crossing
        self._lock = threading.Lock()

    def primer_ms(self) -> int:
        return self.first - PRIMER_BEFORE_MS

    def next_step(self, lead_s: float) -> StepClock:
        with self._lock:
            self.step = plan_step(wall_ms(), int(lead_s * 1000), self.lag_ms, self.step, self.first)
            self.crossed_at = None
            return self.step

    def stamp(self) -> tuple[str, int]:
        """The timestamp of a statement sent now (ISO, and epoch ms)."""
        step = self.step
        ms = wall_ms() + (step.offset_ms if step is not None else 0)
        return iso(ms), ms

    def acknowledged(self, stamped_ms: int, at: float) -> None:
        """A statement stamped ``stamped_ms`` was acknowledged at monotonic ``at``."""
        step = self.step
        if step is None or stamped_ms < step.crossing_ms:
            return
        with self._lock:
            if self.step is step and (self.crossed_at is None or at < self.crossed_at):
                self.crossed_at = at
