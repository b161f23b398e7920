"""`learnpulse supervise -- COMMAND…`: restart a pipeline process that dies."""

from __future__ import annotations

import signal
import threading

import click

from ..errors import UserError
from ..settings import Settings

# Metrics port offset of `learnpulse supervise` (see the README's metrics table).
SUPERVISE_METRICS_OFFSET = 7


def register(main: click.Group) -> None:
    """Add this area's subcommands to ``main``."""

    @main.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
    @click.option("--name", default=None, help="Name in metrics and messages (default: the subcommand).")
    @click.option("--backoff-max", type=float, default=30, show_default=True, help="Longest wait before a restart (s).")
    @click.option("--max-restarts", type=int, default=None, help="Give up after this many restarts (default: never).")
    @click.option("--metrics-port", type=int, default=None,
                  help="Port of the supervisor's /metrics (default: LEARNPULSE_METRICS_PORT_BASE + 7).")
    @click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
    @click.pass_obj
    def supervise(settings: Settings, name: str | None, backoff_max: float, max_restarts: int | None,
                  metrics_port: int | None, command: tuple[str, ...]) -> None:  # fmt: skip
        """Run `learnpulse COMMAND…` (e.g. `supervise -- gateway`) and restart it whenever it dies.

        Restarts back off exponentially (1 s doubling up to --backoff-max, reset after a
        minute up); each counts in learnpulse_supervisor_restarts_total. A clean exit ends
        the supervisor; SIGTERM/SIGINT stop the process cleanly, then the supervisor.
        """
        from ..pipeline import serve_metrics
        from ..supervisor import Backoff, Supervisor

        if command[0] in ("supervise", "demo"):
            raise UserError(f"`{command[0]}` cannot be supervised: supervise gateway, serve, sink, worker or notify")
        serve_metrics(metrics_port or settings.metrics_port_base + SUPERVISE_METRICS_OFFSET, settings.bind_host)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        sup = Supervisor(list(command), name or command[0], Backoff(max_s=backoff_max), max_restarts,
                         lambda m: click.echo(m, err=True))  # fmt: skip
        code = sup.run(stop)
        if code not in (0, None) and not stop.is_set():
            raise UserError(f"{sup.name} exited with {code} after {sup.restarts} restarts")
