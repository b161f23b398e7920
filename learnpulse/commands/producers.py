"""Producer commands: the simulator (and replay, bridge)."""

from __future__ import annotations

import os
import sys
import threading

import click

from ..settings import Settings


def register(main: click.Group) -> None:
    """Add this area's subcommands to ``main``."""

    @main.command()
    @click.option(
        "--count", type=int, default=None, help="Stop after this many statements (default: run until stopped)."
    )
    @click.option(
        "--rate", type=float, default=None, help="Target statements per second (default: as fast as possible)."
    )
    @click.option("--seed", type=int, default=42, show_default=True)
    @click.option("--schools", type=int, default=3, show_default=True)
    @click.pass_obj
    def simulate(settings: Settings, count: int | None, rate: float | None, seed: int, schools: int) -> None:
        """Produce simulated xAPI statements of virtual schools to Kafka."""
        from producers.simulator import SimulationConfig

        from ..pipeline import run_simulator, serve_metrics

        serve_metrics(int(os.environ.get("LEARNPULSE_METRICS_PORT", settings.metrics_port_base + 2)))
        progress = (lambda n: click.echo(f"\r{n} statements sent", nl=False, err=True)) if sys.stderr.isatty() else None
        try:
            sent = run_simulator(
                settings, SimulationConfig(seed=seed, schools=schools), count, rate, threading.Event(), progress
            )
        except KeyboardInterrupt:
            return
        click.echo(f"{sent} statements sent and acknowledged by Kafka")
