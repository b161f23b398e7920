"""`learnpulse supervise`: run one learnpulse process and start it again when it dies.

A process that exits by itself with a failure (a crash, a segmentation fault, SIGKILL by
the OOM killer or an operator) is restarted after a capped exponential backoff (reset
once a run has lasted ``stable_s``); every restart counts in
``learnpulse_supervisor_restarts_total{process}``. A clean exit (status 0) ends the
supervisor too, and SIGTERM/SIGINT to the supervisor stop the process cleanly first.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from schemas import metrics

log = logging.getLogger("learnpulse.supervisor")


@dataclass(frozen=True)
class Backoff:
    initial_s: float = 1.0
    max_s: float = 30.0
    #: a run at least this long resets the delay to ``initial_s``
    stable_s: float = 60.0

    def next(self, delay: float, ran_s: float) -> float:
        """The delay before the next restart, given the last delay and how long the run lasted."""
        if ran_s >= self.stable_s:
            return self.initial_s
        return min(self.max_s, max(self.initial_s, delay * 2))


class Supervisor:
    """Runs ``python -m learnpulse ARGS`` until it exits cleanly or ``stop`` is set."""

    def __init__(self, args: list[str], name: str, backoff: Backoff = Backoff(), max_restarts: int | None = None,
                 echo: Callable[[str], None] = print) -> None:  # fmt: skip
        self.args = args
        self.name = name
        self.backoff = backoff
        self.max_restarts = max_restarts
        self.echo = echo
        self.restarts = 0
        self.child: subprocess.Popen | None = None

    def run(self, stop: threading.Event) -> int:
        delay = 0.0
        while True:
            started = time.monotonic()
            self.child = subprocess.Popen([sys.executable, "-m", "learnpulse", *self.args], env=os.environ.copy())
            code = self._wait(stop)
            if stop.is_set() or code == 0:
                return code
            if self.max_restarts is not None and self.restarts >= self.max_restarts:
                self.echo(f"supervise: {self.name} exited with {code}; {self.restarts} restarts, giving up")
                return code
            delay = self.backoff.next(delay, time.monotonic() - started)
            how = f"signal {-code}" if code < 0 else f"status {code}"
            self.echo(f"supervise: {self.name} (pid {self.child.pid}) died ({how}); restarting in {delay:.0f}s")
            log.warning("supervised process died", extra={"supervised": self.name, "exit_code": code})
            if stop.wait(delay):
                return code
            self.restarts += 1
            metrics.SUPERVISOR_RESTARTS.labels(self.name).inc()

    def _wait(self, stop: threading.Event) -> int:
        child = self.child
        while child.poll() is None:
            if stop.wait(0.5):
                child.terminate()  # the process flushes and commits on SIGTERM
                try:
                    child.wait(120)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait(30)
                break
        return child.returncode
