"""Drive the simulator into a publisher: stop conditions, pacing, progress, metrics.

Pacing has two independent limits that can be combined: ``rate`` (statements per wall
second) and ``speed`` (event-time seconds per wall second: 1 = real time, 86 400 = a day
per second). Without either the simulator runs as fast as Kafka acknowledges.
"""

from __future__ import annotations

import gzip
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson

from schemas import metrics

from .publisher import StatementPublisher
from .simulator import Simulation


@dataclass
class Progress:
    """What a progress display or a log line needs; passed to the ``progress`` callback."""

    sent: int
    acked: int
    total: int | None
    event_ms: int | None
    rate: float
    elapsed_s: float


class Pacer:
    """Sleeps until the next statement is due under ``rate`` and/or ``speed``."""

    def __init__(
        self,
        rate: float | None = None,
        speed: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate is not None and rate <= 0:
            raise ValueError("rate must be positive")
        if speed is not None and speed <= 0:
            raise ValueError("speed must be positive")
        self.rate = rate
        self.speed = speed
        self.clock = clock
        self.sleep = sleep
        self._wall0: float | None = None
        self._event0: int | None = None

    def due_in(self, n_before: int, event_ms: int) -> float:
        """Seconds until the statement after ``n_before`` others, at ``event_ms``, may go (≤ 0: now)."""
        now = self.clock()
        if self._wall0 is None:
            self._wall0, self._event0 = now, event_ms
        due = self._wall0
        if self.rate:
            due = max(due, self._wall0 + n_before / self.rate)
        if self.speed:
            due = max(due, self._wall0 + (event_ms - self._event0) / 1000 / self.speed)  # type: ignore[operator]
        return due - now

    def wait(self, n_before: int, event_ms: int, idle: Callable[[], None], stop: threading.Event | None) -> bool:
        """Block until due, calling ``idle`` about every 50 ms; False if ``stop`` was set meanwhile."""
        while True:
            left = self.due_in(n_before, event_ms)
            if left <= 0:
                return True
            idle()
            if stop is not None:
                if stop.wait(min(left, 0.05)):
                    return False
            else:
                self.sleep(min(left, 0.05))


def run_simulation(
    publisher: StatementPublisher,
    sim: Simulation,
    *,
    count: int | None = None,
    until_ms: int | None = None,
    rate: float | None = None,
    speed: float | None = None,
    stop: threading.Event | None = None,
    progress: Callable[[Progress], None] | None = None,
    stage: str = "simulator",
) -> int:
    """Publish the simulation's statements until ``count``, event time ``until_ms`` or ``stop``.

    Returns the number of statements sent; all of them were acknowledged by Kafka when
    this returns (it flushes, and raises ``DeliveryFailed`` otherwise). The simulation's
    truth then covers exactly those statements (the next statement is only drawn once it
    will be sent).
    """
    pacer = Pacer(rate, speed) if (rate or speed) else None
    producer = publisher.producer
    rate_gauge = metrics.PRODUCER_RATE.labels(stage)
    event_gauge = metrics.PRODUCER_EVENT_TIME.labels(stage)
    started = last_tick = time.monotonic()
    last_acked = 0
    recent_rate = 0.0
    sent = 0
    it = iter(sim)
    while True:
        if (count is not None and sent >= count) or (stop is not None and stop.is_set()):
            break
        next_ms = sim.next_ms
        if next_ms is None or (until_ms is not None and next_ms > until_ms):
            break
        if pacer is not None and not pacer.wait(sent, next_ms, publisher.poll, stop):
            break
        item = next(it)
        publisher.publish(item.school, item.statement)
        sent += 1
        if sent & 255 == 0:
            publisher.poll()
            now = time.monotonic()
            if now - last_tick >= 0.5:
                acked = producer.acked_statements
                recent_rate = (acked - last_acked) / (now - last_tick)
                last_acked, last_tick = acked, now
                rate_gauge.set(recent_rate)
                event_gauge.set(sim.event_ms / 1000)
                if progress is not None:
                    progress(Progress(sent, acked, count, sim.event_ms, recent_rate, now - started))
    publisher.flush()
    event_gauge.set(sim.event_ms / 1000)
    if progress is not None:
        elapsed = time.monotonic() - started
        progress(Progress(sent, producer.acked_statements, count, sim.event_ms, sent / max(elapsed, 1e-9), elapsed))
    return sent


def write_simulation(
    sim: Simulation,
    path: Path,
    *,
    count: int | None = None,
    until_ms: int | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Write statements as JSON Lines (gzip if ``path`` ends in ``.gz``) instead of Kafka; returns how many.

    The same stop conditions as :func:`run_simulation`; the file appears (renamed from
    ``<path>.part``) only when complete.
    """
    if count is None and until_ms is None and stop is None:
        raise ValueError("writing a file needs --count or --days: the simulation is endless")
    tmp = path.with_name(path.name + ".part")
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(tmp, "wb") as raw:
        out = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) if path.suffix == ".gz" else raw
        it = iter(sim)
        while not ((count is not None and n >= count) or (stop is not None and stop.is_set())):
            next_ms = sim.next_ms
            if next_ms is None or (until_ms is not None and next_ms > until_ms):
                break
            out.write(orjson.dumps(next(it).statement) + b"\n")
            n += 1
        if out is not raw:
            out.close()
    os.replace(tmp, path)
    return n
