"""Process wiring: builds each stage from settings and runs it."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from urllib.parse import urlparse

from prometheus_client import start_http_server

from producers.kafka import ProducerParameters, StatementProducer
from producers.publisher import StatementPublisher
from producers.simulator import SimulationConfig
from schemas.clickhouse.engine import ClickHouse
from schemas.clickhouse.migrate import migrate
from schemas.topics import Topic
from sinks.engines import engine_from_url
from sinks.specs import SinkParameters, build_sinks

from .errors import UserError
from .local_secrets import pseudonym_key
from .settings import Settings

log = logging.getLogger("learnpulse")


def serve_metrics(port: int, host: str) -> None:
    """Expose this process's Prometheus metrics on ``host``:``port``/metrics (``settings.bind_host``)."""
    try:
        start_http_server(port, addr=host)
    except OSError as err:
        raise UserError(f"metrics port {port} is taken ({err}); set LEARNPULSE_METRICS_PORT_BASE") from err


def open_clickhouse(settings: Settings, migrate_schema: bool = True, across_shards: bool = True) -> ClickHouse:
    """The process's ClickHouse, migrated; on a cluster of several shards (and unless
    ``across_shards`` is False: the schema commands work on the local database) the engine
    that reads and writes every shard."""
    url = settings.clickhouse_url
    try:
        ch = engine_from_url(url)
        ch.server_version()
    except ValueError as err:
        raise UserError(str(err)) from err
    except Exception as err:
        parsed = urlparse(url)  # shown without credentials
        netloc = f"{parsed.hostname}:{parsed.port}" if parsed.port else (parsed.hostname or "")
        where = parsed._replace(netloc=netloc).geturl()
        raise UserError(f"ClickHouse not reachable at {where}: {err}") from err
    if migrate_schema:
        from schemas.clickhouse.migrate import MigrationDrift, ReplicasUnreachable

        try:
            # With every migration applied this runs no DDL and asks no replica (a replica
            # may be down); with one pending, a silent replica refuses the start at once.
            migrate(ch, cluster=settings.clickhouse.cluster_name)
        except (MigrationDrift, ReplicasUnreachable) as err:
            ch.close()
            raise UserError(str(err)) from err
    if across_shards and settings.clickhouse.sharded:
        ch = _across_shards(ch)
    return ch


def _across_shards(ch: ClickHouse) -> ClickHouse:
    """The same server, reading and writing every shard (deploy/CLUSTER.md, several shards)."""
    from sinks.engines import ServerEngine

    if not isinstance(ch, ServerEngine):
        ch.close()
        raise UserError("clickhouse.cluster.shards > 1 needs a clickhouse:// URL (a server of the cluster)")
    sharded = ch.across_shards()
    ch.close()
    return sharded


@dataclass
class SinkThreads:
    stop: threading.Event
    threads: list[threading.Thread]
    errors: list[BaseException]

    def join(self, timeout: float = 30) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout)


def sink_parameters(settings: Settings, group_id: str | None = None, instance_id: str | None = None) -> SinkParameters:
    """What the sinks take from ``settings`` (see :func:`start_sinks` for the two ids)."""
    k = settings.kafka
    return SinkParameters(
        bootstrap=k.bootstrap_servers,
        topic_prefix=k.topic_prefix,
        secret=pseudonym_key(settings),
        max_rows=settings.sink.max_rows,
        max_wait_s=settings.sink.max_wait_s,
        rollup_max_wait_s=settings.sink.rollup_max_wait_s,
        consistent_progress_s=settings.sink.consistent_progress_s,
        group_id=group_id,
        instance_id=instance_id,
        replicated=settings.clickhouse.cluster_name is not None,
    )


def start_sinks(
    settings: Settings,
    ch: ClickHouse,
    names: list[str] | None = None,
    group_id: str | None = None,
    instance_id: str | None = None,
) -> SinkThreads:
    """Run the sinks ``names`` (``sinks.specs``; default all) in threads of this process.

    ``group_id``: a consumer group prefix other than the default (groups are
    ``<prefix>-<sink>``), e.g. to replay the topics from their start into the same tables,
    which collapse the copies. ``instance_id``: static group membership, so that this
    process restarted (even after SIGKILL) gets its partitions back at once.
    """
    stop = threading.Event()
    errors: list[BaseException] = []
    threads = []
    for sink in build_sinks(sink_parameters(settings, group_id, instance_id), ch, names):
        name = sink.config.name

        def run(sink=sink):
            try:
                sink.run(stop)
            except BaseException as err:  # noqa: BLE001 - surfaced to the owner, which exits non-zero
                log.error("sink %s stopped: %s", sink.config.name, err)
                errors.append(err)
                stop.set()

        t = threading.Thread(target=run, name=f"sink-{name}", daemon=True)
        t.start()
        threads.append(t)
    return SinkThreads(stop, threads, errors)


def make_publisher(settings: Settings, stage: str, per_envelope: int = 20) -> StatementPublisher:
    """``per_envelope``: most statements of one learner per Kafka message."""
    k = settings.kafka
    producer = StatementProducer(
        ProducerParameters(bootstrap=k.bootstrap_servers, topic=Topic.STATEMENTS.physical(k.topic_prefix), stage=stage)
    )
    return StatementPublisher(producer, pseudonym_key(settings), max_per_envelope=per_envelope)


def run_simulator(
    settings: Settings,
    config: SimulationConfig,
    count: int | None,
    rate: float | None,
    stop: threading.Event | None = None,
    progress=None,
    *,
    speed: float | None = None,
    until_ms: int | None = None,
    truth=None,
    per_envelope: int = 20,
) -> int:
    """Produce ``count`` statements (None: until stopped or event time ``until_ms``).

    ``rate``: statements/s, ``speed``: event-time/wall-time ratio (None: as fast as
    possible). ``truth``: a ``producers.truth.TruthSink`` receiving the ground truth of
    exactly the statements sent; closed at the end. ``per_envelope``: most statements of
    a learner per message (1: each alone, the shape of browsers' one-statement requests).
    """
    from producers.runner import run_simulation
    from producers.simulator import Simulation

    publisher = make_publisher(settings, "simulator", per_envelope)
    sim = Simulation(config, on_truth=truth.write if truth is not None else None)
    try:
        return run_simulation(
            publisher, sim, count=count, until_ms=until_ms, rate=rate, speed=speed, stop=stop, progress=progress
        )
    finally:
        publisher.producer.close()
        if truth is not None:
            for record in sim.finish():
                truth.write(record)
            truth.close()
