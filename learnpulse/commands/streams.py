"""Stream-processing commands: the Faust worker."""

from __future__ import annotations

import sys

import click

from ..settings import Settings


def register(main: click.Group) -> None:
    """Add this area's subcommands to ``main``."""

    @main.command()
    @click.pass_obj
    def worker(settings: Settings) -> None:
        """Run the Faust stream processor (xapi.statements → derived topics)."""
        import faust

        from streams.app import StreamsParameters, create_app

        from ..pipeline import serve_metrics

        serve_metrics(settings.metrics_port_for(1))
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
