"""The `learnpulse` command. Each subcommand parses options and calls into the packages."""

from __future__ import annotations

import sys

import click

from .errors import UserError
from .logs import configure as configure_logs
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
            if _kafka_unreachable(err):
                s: Settings = ctx.obj
                click.echo(
                    f"learnpulse: Kafka not reachable at {s.kafka.bootstrap_servers}; "
                    "start it with `learnpulse stack up` or set LEARNPULSE_KAFKA__BOOTSTRAP",
                    err=True,
                )
                sys.exit(2)
            raise


def _kafka_unreachable(err: BaseException) -> bool:
    # kafka-python 2.x raises NoBrokersAvailable; 3.x a KafkaTimeoutError while bootstrapping.
    import kafka.errors as kerr

    kinds = tuple(
        getattr(kerr, name) for name in ("NoBrokersAvailable", "KafkaTimeoutError", "KafkaConnectionError")
        if hasattr(kerr, name)
    )
    return isinstance(err, kinds)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def main(ctx: click.Context) -> None:
    """learnpulse: xAPI statements → Kafka → live engagement, mastery, cohort health → ClickHouse.

    \b
    Try it:        learnpulse demo                   everything here, live view on :8080
    Services:      learnpulse stack up|down|status   local Kafka (and clickhouse-server)
    Take in:       learnpulse gateway | simulate | replay FILE | bridge --lrs URL
    Process:       learnpulse worker                 the stream processor (Faust)
    Write, serve:  learnpulse sink | serve | notify
    Ask:           learnpulse sql "SELECT …"         read-only SQL on the pipeline's ClickHouse
    Mastery model: learnpulse mastery fit | evaluate  fit BKT per skill; score it out of sample
    Plan:          learnpulse capacity --schools … --learners … --statements-per-hour …
    Settings come from LEARNPULSE_* environment variables (see README); every
    command has --help.
    """

    settings = Settings()
    configure_logs(settings.log_level, settings.client_log_level)
    ctx.obj = settings


@main.group()
def stack() -> None:
    """Local services: a Kafka broker (KRaft), optionally Debian's clickhouse-server and PostgreSQL."""


@stack.command("up")
@click.option("--brokers", type=click.IntRange(1, 9), default=None,
              help="Kafka brokers (KRaft) to run here [default: LEARNPULSE_KAFKA__BROKERS, 1]; 3 or more: "
                   "topics replicated 3 times with min.insync.replicas=2. Give every process the same "
                   "LEARNPULSE_KAFKA__BROKERS so each knows every broker.")
@click.option("--clickhouse-server", is_flag=True, help="Also start Debian's clickhouse-server on loopback.")
@click.option("--clickhouse-replicas", type=click.IntRange(0, 9), default=0,
              help="Instead, start ZooKeeper and this many clickhouse-server replicas of one shard (deploy/CLUSTER.md); "
                   "give every process LEARNPULSE_CLICKHOUSE__CLUSTER__NAME (default learnpulse) to use it.")
@click.option("--clickhouse-shards", type=click.IntRange(1, 9), default=None,
              help="With --clickhouse-replicas: this many shards of that many replicas each [default: "
                   "LEARNPULSE_CLICKHOUSE__CLUSTER__SHARDS, 1]; give every process the same "
                   "LEARNPULSE_CLICKHOUSE__CLUSTER__SHARDS (more than 1: reads and writes go across shards).")
@click.option("--postgres", is_flag=True, help="Also start Debian's PostgreSQL on loopback (LRS store for several gateways).")
@click.option("--balancer", is_flag=True,
              help="Also start Debian's HAProxy on LEARNPULSE_BALANCER__PORT (8087) in front of the gateways "
                   "(deploy/haproxy/haproxy.cfg).")
@click.option("--backend", "backends", multiple=True, metavar="HOST:PORT",
              help="A gateway behind the balancer (repeat; default: LEARNPULSE_BALANCER__BACKENDS).")
@click.pass_obj
def stack_up(settings: Settings, brokers: int | None, clickhouse_server: bool, clickhouse_replicas: int,
             clickhouse_shards: int | None, postgres: bool, balancer: bool, backends: tuple[str, ...]) -> None:  # fmt: skip
    """Start the services (harmless when already running) and create the topics."""
    from .stack import ClickHouseServer, kafka_up
    from .topics import ensure_topics

    if clickhouse_server and clickhouse_replicas:
        raise UserError("--clickhouse-server or --clickhouse-replicas, not both (replica 1 takes the server's ports)")
    if clickhouse_shards is not None:
        if not clickhouse_replicas:
            raise UserError("--clickhouse-shards needs --clickhouse-replicas (the replicas of each shard)")
        settings.clickhouse.cluster.shards = clickhouse_shards

    if brokers is not None:
        settings.kafka.brokers = brokers
    k = settings.kafka
    click.echo(f"kafka: {kafka_up(settings)} on {k.bootstrap_servers}")
    created = ensure_topics(k.bootstrap_servers, k.topic_prefix, k.topic_replication)
    click.echo(f"topics: {len(created)} created (replication factor {k.topic_replication})")
    if clickhouse_server:
        server = ClickHouseServer(settings)
        click.echo(f"clickhouse-server: {server.up()} at {server.url}")
    if clickhouse_replicas:
        _clickhouse_cluster_up(settings, clickhouse_replicas)
    if postgres:
        from .postgres import PostgresServer

        pg = PostgresServer(settings)
        click.echo(f"postgres: {pg.up()}; use it with LEARNPULSE_LRS_STORE__URL='{pg.url()}'")
    if balancer:
        from .balancer import Balancer

        lb = Balancer(settings, list(backends) or None)
        click.echo(f"haproxy: {lb.up()} on {lb.host}:{lb.ports[0]} in front of {', '.join(lb.backends)}")


def _clickhouse_cluster_up(settings: Settings, replicas: int) -> None:
    from .stack_cluster import DEFAULT_CLUSTER, cluster_services, cluster_up

    c = settings.clickhouse
    c.cluster.replicas = replicas
    c.cluster.name = c.cluster.name or DEFAULT_CLUSTER
    click.echo(f"clickhouse cluster {c.cluster.name}: {cluster_up(settings)}")
    _zookeeper, servers = cluster_services(settings)
    for server in servers:
        click.echo(f"  {server.name}: {server.url}")
    click.echo(f"use it with LEARNPULSE_CLICKHOUSE__CLUSTER__NAME={c.cluster.name}"
               f" LEARNPULSE_CLICKHOUSE__CLUSTER__SHARDS={c.cluster.shards} and a replica's URL"
               " as LEARNPULSE_CLICKHOUSE__URL")  # fmt: skip


@main.group()
def topics() -> None:
    """Kafka topics declared in schemas/topics.py."""


@topics.command("create")
@click.pass_obj
def topics_create(settings: Settings) -> None:
    """Create missing topics with their declared partitions and configs (idempotent)."""
    from .topics import ensure_topics

    k = settings.kafka
    created = ensure_topics(k.bootstrap_servers, k.topic_prefix, k.topic_replication)
    click.echo(f"topics: {len(created)} created" + (f" ({', '.join(created)})" if created else ""))


@stack.command("down")
@click.pass_obj
def stack_down(settings: Settings) -> None:
    """Stop the services (also cleans up stale pid files after a crash)."""
    from .balancer import Balancer
    from .postgres import PostgresServer
    from .stack import ClickHouseServer, local_kafka_brokers
    from .stack_cluster import local_cluster_services

    for svc in (Balancer(settings), PostgresServer(settings), ClickHouseServer(settings),
                *local_cluster_services(settings), *reversed(local_kafka_brokers(settings))):  # fmt: skip
        click.echo(f"{svc.name}: {'stopped' if svc.stop() else 'was not running'}")


@stack.command("status")
@click.pass_obj
def stack_status(settings: Settings) -> None:
    """Show whether each service runs and listens."""
    from .balancer import Balancer
    from .postgres import PostgresServer
    from .stack import ClickHouseServer, local_kafka_brokers
    from .stack_cluster import local_cluster_services

    for svc in (*local_kafka_brokers(settings), ClickHouseServer(settings), *reversed(local_cluster_services(settings)),
                PostgresServer(settings), Balancer(settings)):  # fmt: skip
        click.echo(f"{svc.name}: {svc.status()}")


@main.command()
@click.option("--duration", type=float, default=None, help="Stop by itself after this many seconds.")
@click.option("--rate", type=float, default=200, show_default=True, help="Simulated statements per second.")
@click.pass_obj
def demo(settings: Settings, duration: float | None, rate: float) -> None:
    """Start everything here (Kafka, worker, sinks, embedded ClickHouse, simulator) and watch it live."""
    from .demo import run_demo

    run_demo(settings, duration, rate, click.echo)


from .commands import AREAS  # noqa: E402  (the group must exist first)

for _area in AREAS:
    _area.register(main)

if __name__ == "__main__":
    main()
