"""The simulator as the source: ``learnpulse simulate`` straight into Kafka at a fixed rate.

Each step runs the real command (a process of its own, in the pipeline's home, so with the
same pseudonym secret) for ``rate × duration`` statements, at most ``per_envelope`` statements
of a learner per message (1: the shape of browsers' one-statement requests), ``--scale
medium`` (20 schools, 10,000 learners). No gateway on the way: accepted = the statements the
simulator reports acknowledged by Kafka; no request latency. Each step gets a seed of its
own: the same seed would send the same statement ids again.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time

from benchmarks.faults.procs import REPO, free_port

from .traffic import StepLoad

_SENT = re.compile(r"(\d+) statements sent and acknowledged by Kafka")
ACKNOWLEDGED = "acknowledged by Kafka"


class SimulatorLoad:
    """Same interface as :class:`~.traffic.Load`: ``run(rate, duration)`` → :class:`StepLoad`."""

    def __init__(self, env: dict[str, str], per_envelope: int, scale: str = "medium", seed: int = 1000) -> None:
        self.env = env
        self.per_envelope = per_envelope
        self.scale = scale
        self.seed = seed

    def run(self, rate: float, duration: float) -> StepLoad:
        count = int(rate * duration)
        out = StepLoad(offered=count)
        self.seed += 1
        args = [sys.executable, "-m", "learnpulse", "simulate", "--rate", f"{rate:g}", "--count", str(count),
                "--per-envelope", str(self.per_envelope), "--scale", self.scale, "--seed", str(self.seed)]  # fmt: skip
        env = self.env | {"LEARNPULSE_METRICS_PORT": str(free_port())}
        out.started = time.monotonic()
        try:
            done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=3 * duration + 120)
        except subprocess.TimeoutExpired:
            out.statuses["simulator timed out"] += 1
            out.ended = time.monotonic()
            return out
        out.ended = time.monotonic()
        sent = _SENT.search(done.stdout)
        if done.returncode != 0 or sent is None:
            out.statuses[f"simulator exit {done.returncode}: {done.stderr.strip()[-200:]}"] += 1
            return out
        out.sent = out.accepted = int(sent.group(1))
        out.statuses[ACKNOWLEDGED] = out.accepted
        return out
