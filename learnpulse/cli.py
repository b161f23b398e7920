"""The `learnpulse` command. Each subcommand parses options and calls into the packages."""

from __future__ import annotations

import logging
import os
import sys
import threading

import click

from .errors import UserError
from .settings import Settings


class _Group(click.Group):
    """Turns UserError (and unreachable services) into one line and exit code 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as err:
            click.echo(f"learnpulse: {err}", err=True)
            sys.exit(2)
        except Exception as err:
            from kafka.errors import NoBrokersAvailable

            if isinstance(err, NoBrokersAvailable):
                s: Settings = ctx.obj
                click.echo(
                    f"learnpulse: Kafka not reachable at {s.kafka.bootstrap_servers}; "
                    "start it with `learnpulse stack up` or set LEARNPULSE_KAFKA__BOOTSTRAP",
                    err=True,
                )
                sys.exit(2)
            raise


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def main(ctx: click.Context) -> None:
    """learnpulse: xAPI statements → Kafka → live engagement → ClickHouse.

    \b
    Quick start:   learnpulse demo          (everything on this machine, live view)
    Services:      learnpulse stack up|down|status
    Processes:     learnpulse worker | serve | simulate
    Settings come from LEARNPULSE_* environment variables (see README).
    """
    settings = Settings()
    logging.basicConfig(
        level=settings.log_level.upper(),
        format='{"ts":"%(asctime)s","level":"%(levelname)s","logger":"%(name)s","msg":"%(message)s"}',
    )
    ctx.obj = settings


@main.group()
def stack() -> None:
    """Local services: a Kafka broker (KRaft) and optionally Debian's clickhouse-server."""


@stack.command("up")
@click.option("--clickhouse-server", is_flag=True, help="Also start Debian's clickhouse-server on loopback.")
@click.pass_obj
def stack_up(settings: Settings, clickhouse_server: bool) -> None:
    """Start the services (harmless when already running) and create the topics."""
    from .stack import ClickHouseServer, KafkaBroker
    from .topics import ensure_topics

    click.echo(f"kafka: {KafkaBroker(settings).up()} on {settings.kafka.bootstrap_servers}")
    created = ensure_topics(settings.kafka.bootstrap_servers, settings.kafka.topic_prefix, settings.kafka.replication)
    click.echo(f"topics: {len(created)} created")
    if clickhouse_server:
        server = ClickHouseServer(settings)
        click.echo(f"clickhouse-server: {server.up()} at {server.url}")


@stack.command("down")
@click.pass_obj
def stack_down(settings: Settings) -> None:
    """Stop the services (also cleans up stale pid files after a crash)."""
    from .stack import ClickHouseServer, KafkaBroker

    for svc in (ClickHouseServer(settings), KafkaBroker(settings)):
        click.echo(f"{svc.name}: {'stopped' if svc.stop() else 'was not running'}")


@stack.command("status")
@click.pass_obj
def stack_status(settings: Settings) -> None:
    """Show whether each service runs and listens."""
    from .stack import ClickHouseServer, KafkaBroker

    for svc in (KafkaBroker(settings), ClickHouseServer(settings)):
        click.echo(f"{svc.name}: {svc.status()}")


@main.group()
def db() -> None:
    """ClickHouse schema."""


@db.command("migrate")
@click.pass_obj
def db_migrate(settings: Settings) -> None:
    """Apply pending migrations (safe to run twice or concurrently)."""
    from schemas.clickhouse.migrate import migrate

    from .pipeline import open_clickhouse

    ch = open_clickhouse(settings, migrate_schema=False)
    applied = migrate(ch, click.echo)
    click.echo(f"{len(applied)} migrations applied; schema up to date")


@main.command()
@click.pass_obj
def worker(settings: Settings) -> None:
    """Run the Faust stream processor (xapi.statements → derived topics)."""
    import faust

    from streams.app import StreamsParameters, create_app

    from .pipeline import serve_metrics

    serve_metrics(int(os.environ.get("LEARNPULSE_METRICS_PORT", settings.metrics_port_base + 1)))
    k = settings.kafka
    (settings.home.resolve() / "streams").mkdir(parents=True, exist_ok=True)
    app = create_app(
        StreamsParameters(
            bootstrap=k.bootstrap_servers,
            topic_prefix=k.topic_prefix,
            app_id=f"{k.topic_prefix}learnpulse-streams",
            datadir=settings.home.resolve() / "streams",
            web_port=settings.streams_web_port,
            replication=k.replication,
        )
    )
    sys.argv = [sys.argv[0], "worker"]
    faust.Worker(app, loglevel=settings.log_level, quiet=True, redirect_stdouts=False).execute_from_commandline()


@main.command()
@click.pass_obj
def serve(settings: Settings) -> None:
    """Run the sinks and the web surface (live view, /metrics) against ClickHouse."""
    from .pipeline import open_clickhouse, start_sinks
    from .web import make_app, start_web_thread

    ch = open_clickhouse(settings)
    sinks = start_sinks(settings, ch)
    start_web_thread(make_app(ch), settings.web_port)
    click.echo(f"serving on http://127.0.0.1:{settings.web_port}/ ; Ctrl-C stops")
    try:
        while not sinks.stop.wait(1):
            pass
    except KeyboardInterrupt:
        pass
    sinks.join()
    if sinks.errors:
        raise UserError(f"sink failed: {sinks.errors[0]}")


@main.command()
@click.option("--count", type=int, default=None, help="Stop after this many statements (default: run until stopped).")
@click.option("--rate", type=float, default=None, help="Target statements per second (default: as fast as possible).")
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--schools", type=int, default=3, show_default=True)
@click.pass_obj
def simulate(settings: Settings, count: int | None, rate: float | None, seed: int, schools: int) -> None:
    """Produce simulated xAPI statements of virtual schools to Kafka."""
    from producers.simulator import SimulationConfig

    from .pipeline import run_simulator, serve_metrics

    serve_metrics(int(os.environ.get("LEARNPULSE_METRICS_PORT", settings.metrics_port_base + 2)))
    progress = (lambda n: click.echo(f"\r{n} statements sent", nl=False, err=True)) if sys.stderr.isatty() else None
    try:
        sent = run_simulator(settings, SimulationConfig(seed=seed, schools=schools), count, rate, threading.Event(), progress)
    except KeyboardInterrupt:
        return
    click.echo(f"{sent} statements sent and acknowledged by Kafka")


@main.command()
@click.option("--duration", type=float, default=None, help="Stop by itself after this many seconds.")
@click.option("--rate", type=float, default=200, show_default=True, help="Simulated statements per second.")
@click.pass_obj
def demo(settings: Settings, duration: float | None, rate: float) -> None:
    """Start everything here (Kafka, worker, sinks, embedded ClickHouse, simulator) and watch it live."""
    from .demo import run_demo

    run_demo(settings, duration, rate, click.echo)


if __name__ == "__main__":
    main()
