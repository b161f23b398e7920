"""The Faust app: built by a factory from explicit parameters (nothing at import time).

Agents (registered explicitly, no autodiscovery):

- ``streams.learner.agents``: ``xapi.statements`` (and the internal void feed) →
  ``learnpulse.engagement``, ``learnpulse.mastery``, the internal cohort feed and void feed;
- ``streams.health.agents``: the cohort feed → ``learnpulse.cohort_health``,
  ``learnpulse.alerts``.

State lives in Faust tables on RocksDB (rocksdict) with changelog topics; every table is
co-partitioned with the topic its agent reads.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faust

from schemas.topic_limits import RECORD_LIMIT, raise_record_limits
from schemas.topics import WORKER_TOPIC_MAX_MESSAGE_BYTES, Topic

from .compression import use_fast_lz4
from .config import StreamsConfig
from .faustutil import OffsetCoalescingTable, RawSchema
from .transport import ReadCommittedApp


@dataclass(frozen=True)
class StreamsParameters:
    bootstrap: str
    topic_prefix: str
    app_id: str
    datadir: Path
    web_port: int
    # Address Faust's web server listens on (settings.bind_host); Faust's own default binds
    # every interface whatever web_host says.
    bind_host: str = "127.0.0.1"
    replication: int = 1
    config: StreamsConfig = field(default_factory=StreamsConfig)
    # Kafka client id of this worker process: tells group members apart on the broker
    # (``kafka-consumer-groups --describe``), e.g. a restarted worker from its killed predecessor.
    client_id: str = "learnpulse-worker"
    # Static group membership (Kafka group.instance.id, KIP-345): one per live worker, kept
    # across restarts, so a restarted worker is back on its partitions at once instead of
    # after its dead predecessor's session; None: a dynamic member.
    instance_id: str | None = None
    # How long the group waits for a member that stopped heartbeating (see StreamsSettings).
    session_timeout_s: float = 60.0


@dataclass(frozen=True)
class Topics:
    """Faust topic handles; raw bytes in and out, our own codecs from ``schemas``."""

    statements: faust.TopicT
    deadletter: faust.TopicT
    engagement: faust.TopicT
    mastery: faust.TopicT
    cohort_health: faust.TopicT
    alerts: faust.TopicT
    # Internal: learner buckets and source watermarks, keyed by cohort (repartition).
    cohort_feed: faust.TopicT
    # Internal: void targets to look for in every partition of the learner stage.
    void_feed: faust.TopicT


def cohort_feed_name(app_id: str) -> str:
    return f"{app_id}-cohort-feed"


def void_feed_name(app_id: str) -> str:
    return f"{app_id}-void-feed"


# Tables and their partition counts; each table's changelog is ``<app id>-<table>-changelog``.
TABLES = {"learner-state": Topic.STATEMENTS.spec.partitions, "cohort-state": Topic.COHORT_HEALTH.spec.partitions}


def ensure_internal_topics(p: StreamsParameters) -> None:
    """Create the cohort feed and the table changelogs before the worker subscribes.

    Faust would create them too, but while it does, its consumer's metadata does not know
    them yet: a missing feed is ignored until the next metadata refresh (minutes) and a
    changelog "has 0 partitions" for the first table write.
    """
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    large = {RECORD_LIMIT: WORKER_TOPIC_MAX_MESSAGE_BYTES}  # a cohort's state, a feed batch
    wanted = {
        cohort_feed_name(p.app_id): (Topic.COHORT_HEALTH.spec.partitions, {**large}),
        void_feed_name(p.app_id): (
            Topic.STATEMENTS.spec.partitions, {"retention.ms": str(7 * 24 * 3600 * 1000), **large}
        ),
    }
    for table, partitions in TABLES.items():
        wanted[f"{p.app_id}-{table}-changelog"] = (partitions, {"cleanup.policy": "compact", **large})
    # Faust's leader-election topic too: every worker subscribes to it.
    wanted[f"{p.app_id}-__assignor-__leader"] = (1, {})
    admin = KafkaAdminClient(bootstrap_servers=p.bootstrap, request_timeout_ms=15_000)
    try:
        existing = set(admin.list_topics())
        for name, (partitions, configs) in wanted.items():
            if name in existing:
                continue
            try:
                admin.create_topics([NewTopic(name, partitions, p.replication, topic_configs=configs)])
            except TopicAlreadyExistsError:
                existing.add(name)  # another worker was quicker, or our metadata was older than the topic
        # Topics an earlier worker created with Kafka's default record limit.
        raise_record_limits(admin, {name: int(WORKER_TOPIC_MAX_MESSAGE_BYTES) for name, (_, configs) in wanted.items()
                                    if name in existing and RECORD_LIMIT in configs})  # fmt: skip
        _wait_for_leaders(admin, {name: partitions for name, (partitions, _) in wanted.items()})
    finally:
        admin.close()


def _wait_for_leaders(admin, wanted: dict[str, int], timeout_s: float = 60.0) -> None:
    """Return once every topic has all its partitions with a leader.

    A topic created a moment ago (by this worker or one starting beside it) can still be
    without leaders in the broker's metadata: a group leader computing the assignment then
    leaves its partitions unassigned until the next metadata refresh. Measured in CI: a
    second worker's feed partitions waited five minutes (aiokafka's default metadata age).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        # kafka-python 3.x: Metadata response fields by their protocol names.
        described = {t["name"]: t for t in admin.describe_topics(list(wanted))}
        missing = [
            name for name, partitions in wanted.items()
            if (t := described.get(name)) is None or t["error_code"]
            or len(t["partitions"]) < partitions
            or any(part["error_code"] or part["leader_id"] < 0 for part in t["partitions"])
        ]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"Kafka topics without leaders after {timeout_s:.0f}s: {', '.join(sorted(missing))}")
        time.sleep(0.2)


class WorkerApp(ReadCommittedApp):
    """The worker's Faust app: reads committed records only (see ``.transport``), without
    Faust's ``Monitor`` sensor.

    Faust 0.15 adds its ``Monitor`` to the app's sensors at start: for every fetched record
    and every event the conductor and the stream call it (message in, stream event in and
    out, message out; each a dict built over the sensors), and for every record produced. It
    keeps Faust's own statistics for Faust's web views (``/stats``), which nothing here reads:
    the worker's figures are its Prometheus metrics (``schemas.metrics``). Measured with
    py-spy on one-statement envelopes: ~3 % of the worker's samples pre-filled. Left out of
    the sensors it is neither called nor started (the boot strategy starts the sensors it
    finds then).
    """

    def on_init_dependencies(self) -> Any:
        services = super().on_init_dependencies()
        self.sensors.remove(self.monitor)
        return services


def create_app(p: StreamsParameters) -> faust.App:
    use_fast_lz4()  # aiokafka's lz4 is LZ4 HC, a large share of the worker's CPU (see .compression)
    # Reads only committed records: the gateway's aborted transactions never count (see .transport).
    app = WorkerApp(
        p.app_id,
        broker=f"kafka://{p.bootstrap}",
        store="rocksdb://",
        # Persisted changelog offsets saved once per group of acknowledgements, not per record.
        Table=OffsetCoalescingTable,
        datadir=str(p.datadir),
        autodiscover=False,
        broker_client_id=p.client_id,
        # faust-streaming 0.15 hands this to aiokafka 0.14's consumer as group_instance_id
        # (JoinGroup v5+; a static member sends no LeaveGroup when it stops). Faust's
        # assignor checks that the assignment the broker keeps for the member names this
        # worker's web URL, so a restarted worker must keep its web port too (it does:
        # settings.streams_web_port or --web-port); with another port it never gets its
        # partitions (AssertionError in PartitionAssignor.on_assignment).
        consumer_group_instance_id=p.instance_id,
        broker_session_timeout=p.session_timeout_s,
        # Faust refuses a session timeout above the request timeout (default 90 s).
        broker_request_timeout=max(90.0, p.session_timeout_s + 30.0),
        web_enabled=True,
        # Only Faust's liveness page: its other views show the tables (learners' state), the
        # partitions and statistics to anyone who asks, and nothing here reads them.
        web_tables_enabled=False,
        web_router_enabled=False,
        web_stats_enabled=False,
        web_graph_enabled=False,
        web_host=p.bind_host,
        web_bind=p.bind_host,
        web_port=p.web_port,
        topic_partitions=Topic.STATEMENTS.spec.partitions,
        topic_replication_factor=p.replication,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_compression_type="lz4",
        producer_linger_ms=5,
        producer_max_batch_size=256 * 1024,
        # A cohort's state and an alert grow with its learners (schemas.topics). A broker
        # answering Fetch v3+ returns a larger first batch whole anyway (KIP-74; measured with
        # aiokafka 0.14 and a 6 MiB record at a 4 MiB fetch size): the fetch size is kept at
        # the limit for a broker that would truncate it (aiokafka then skips past its offset).
        producer_max_request_size=int(WORKER_TOPIC_MAX_MESSAGE_BYTES),
        consumer_max_fetch_size=int(WORKER_TOPIC_MAX_MESSAGE_BYTES),
        key_serializer="raw",
        value_serializer="raw",
        stream_wait_empty=False,
        # A partition count change or a topic the group leader did not yet see heals at
        # the next metadata refresh: every 30 s rather than aiokafka's 5 minutes.
        consumer_metadata_max_age_ms=30_000,
        # The stages' table writes bypass Faust's producer buffer (faustutil.ChangelogWrites);
        # its default size is for what Faust itself still sends there.
    )

    def topic(t: Topic) -> faust.TopicT:
        return app.topic(t.physical(p.topic_prefix), schema=RawSchema(), partitions=t.spec.partitions)

    feed = app.topic(
        cohort_feed_name(p.app_id),
        schema=RawSchema(),
        partitions=Topic.COHORT_HEALTH.spec.partitions,
        internal=True,
    )
    void_feed = app.topic(
        void_feed_name(p.app_id),
        schema=RawSchema(),
        partitions=Topic.STATEMENTS.spec.partitions,
        internal=True,
    )
    topics = Topics(
        statements=topic(Topic.STATEMENTS),
        deadletter=topic(Topic.DEADLETTER),
        engagement=topic(Topic.ENGAGEMENT),
        mastery=topic(Topic.MASTERY),
        cohort_health=topic(Topic.COHORT_HEALTH),
        alerts=topic(Topic.ALERTS),
        cohort_feed=feed,
        void_feed=void_feed,
    )
    from .health.agents import register as register_health
    from .learner.agents import register as register_learner
    from .mastery.logic import load_model

    model = load_model(p.config.mastery_file, p.config.skill_map_file)
    register_learner(app, topics, p.config, model, p.bootstrap)
    register_health(app, topics, p.config)
    install_state_dump(app)
    return app


def new_worker(app: faust.App, loglevel: str) -> faust.Worker:
    """The Faust worker that runs ``app``, logging at ``loglevel`` — without Faust's start-up spinner.

    At WARNING and above Faust 0.15 turns a terminal spinner on, and to spin it for every
    log record it sets the root logger to DEBUG (``Worker._setup_spinner_handler``): every
    library's debug call then builds its record, dropped only at the handler, long after the
    spinner stopped. Faust logs each changelog write that way: measured ~3% of the worker's
    busy time fed live at 1,000 statements/s. Without the spinner the root logger keeps the
    configured level.
    """
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    worker.spinner = None
    return worker


def install_state_dump(app: faust.App) -> None:
    """``kill -USR1 <worker pid>`` logs the consumer's partition bookkeeping, Faust's and aiokafka's.

    For a worker that looks alive but does not advance: which partitions it holds and
    fetches, what it has read, acknowledged and committed, and where aiokafka's fetch
    position stands. Private attributes of faust-streaming 0.15 / aiokafka 0.14, read
    without locks: a debugging aid, never used by the processing itself.
    """
    import asyncio
    import io
    import logging
    import signal

    log = logging.getLogger("learnpulse.streams.debug")

    def faust_view(out: io.StringIO) -> None:
        c = app.consumer
        out.write(f"generation {app.consumer_generation_id} flow_active={c.flow_active}\n")
        for name in ("_active_partitions", "_paused_partitions", "_buffered_partitions"):
            out.write(f"{name}: {sorted(str(tp) for tp in (getattr(c, name, None) or ()))}\n")
        for tp in sorted(c.assignment()):
            acked = c._acked.get(tp) or []
            out.write(f"{tp.topic}/{tp.partition}: read={c._read_offset.get(tp)} "
                      f"committed={c._committed_offset.get(tp)} acked={len(acked)}\n")

    def aiokafka_view(out: io.StringIO) -> None:
        kc = app.consumer._thread._consumer
        subscription = kc._subscription._subscription
        assignment = subscription.assignment if subscription else None
        out.write(f"aiokafka assignment active={assignment.active if assignment else None}\n")
        for tp in sorted(assignment.tps if assignment else ()):
            st = assignment.state_value(tp)
            out.write(f"  {tp.topic}/{tp.partition}: position={st._position} valid={st.has_valid_position} "
                      f"awaiting_reset={st.awaiting_reset} paused={st.paused}\n")

    def dump() -> None:
        out = io.StringIO()
        for view in (faust_view, aiokafka_view):
            try:
                view(out)
            except Exception as err:  # a library changed: say so, keep the worker running
                out.write(f"{view.__name__} unavailable: {err!r}\n")
        log.warning("state dump\n%s", out.getvalue())

    @app.task
    async def _install() -> None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump)
