"""Stream-processing commands: the Faust worker (the mastery model's commands: ``commands.mastery``)."""

from __future__ import annotations

import os
import sys

import click

from ..collector import collect_young_objects_rarely
from ..errors import UserError
from ..settings import Settings


def streams_config(settings: Settings):
    """The stream computations' parameters from settings and the files they name."""
    from streams.config import EngagementParams, HealthParams, HealthThresholds, StreamsConfig, load_health_params
    from streams.mastery.logic import DEFAULT_PARAMS_FILE

    s = settings.streams
    base = HealthParams(
        defaults=HealthThresholds(inactive_days=s.inactive_days), watermark_lag_ms=int(s.watermark_lag_min * 60_000)
    )
    try:
        health = load_health_params(s.thresholds_file, base)
    except (OSError, ValueError) as err:
        raise UserError(f"thresholds file: {err}") from err
    return StreamsConfig(
        engagement=EngagementParams(
            session_gap_ms=int(s.session_gap_min * 60_000), idle_cutoff_ms=int(s.idle_cutoff_min * 60_000)
        ),
        health=health,
        mastery_file=s.mastery_file or DEFAULT_PARAMS_FILE,
        skill_map_file=s.skill_map_file,
        batch_max=s.batch_max,
    )


def worker_client_id(name: str, pid: int | None = None) -> str:
    """A worker's Kafka client id: its name and process id (a restart is a new member)."""
    return f"learnpulse-{name}-{os.getpid() if pid is None else pid}"


def worker_instance_id(name: str) -> str:
    """A worker's static group membership id: from its name, the same after a restart.

    Two live workers of one group must not share a name (they would also share a state
    directory): the later one would fence the earlier out of the group.
    """
    return f"learnpulse-worker-{name}"


def register(main: click.Group) -> None:
    """Add this area's subcommands to ``main``."""

    @main.command()
    @click.option("--name", default="w0", show_default=True, help="Worker name: its own state directory under home.")
    @click.option("--web-port", type=int, default=None, help="Faust web port (default: settings.streams_web_port).")
    @click.option("--app-id", default=None,
                  help="Faust app id = consumer group and table names (default: <topic prefix>learnpulse-streams). "
                       "A new id recomputes everything from the start of xapi.statements.")
    @click.pass_obj
    def worker(settings: Settings, name: str, web_port: int | None, app_id: str | None) -> None:
        """Run the Faust stream processor (xapi.statements → derived topics).

        Several workers (same settings, different --name and ports) share the partitions.
        The name is also the worker's static group membership: restarted under the same
        name and web port, a worker is back on its partitions in seconds.
        """

        from streams.app import StreamsParameters, create_app, ensure_internal_topics, new_worker

        from ..pipeline import serve_metrics

        serve_metrics(settings.metrics_port_for(1), settings.bind_host)
        k = settings.kafka
        datadir = settings.home.resolve() / "streams" / name
        datadir.mkdir(parents=True, exist_ok=True)
        params = (
            StreamsParameters(
                bootstrap=k.bootstrap_servers,
                topic_prefix=k.topic_prefix,
                app_id=app_id or f"{k.topic_prefix}learnpulse-streams",
                datadir=datadir,
                web_port=web_port or settings.streams_web_port,
                bind_host=settings.bind_host,
                replication=k.topic_replication,
                config=streams_config(settings),
                client_id=worker_client_id(name),
                instance_id=worker_instance_id(name),
                session_timeout_s=settings.streams.session_timeout_s,
            )
        )
        ensure_internal_topics(params)
        app = create_app(params)
        collect_young_objects_rarely()
        sys.argv = [sys.argv[0], "worker"]
        new_worker(app, settings.log_level).execute_from_commandline()
