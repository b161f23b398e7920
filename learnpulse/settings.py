"""Typed settings, read once from the environment in the CLI entry point.

Every variable is ``LEARNPULSE_<GROUP>__<FIELD>`` (e.g. ``LEARNPULSE_KAFKA__PORT=19092``)
or ``LEARNPULSE_<FIELD>`` for top-level fields. Sub-objects are handed to the stages.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


DEFAULT_PSEUDONYM_SECRET = "learnpulse-local-demo-secret"


class KafkaSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 19092
    controller_port: int = 19093
    # Set to use an external cluster instead of the local broker (host:port,...).
    bootstrap: str | None = None
    topic_prefix: str = ""
    # Replication factor of the topics learnpulse creates; 0: 3 on a cluster of 3 or more
    # brokers (min.insync.replicas 2), else the number of brokers.
    replication: int = 0
    # Local brokers `learnpulse stack up` runs (KRaft, each broker and controller): broker n
    # (1-based) listens on port + 2(n-1), its controller on controller_port + 2(n-1).
    brokers: int = 1
    heap: str = "512m"

    def broker_port(self, node: int) -> int:
        return self.port + 2 * (node - 1)

    def controller_port_of(self, node: int) -> int:
        return self.controller_port + 2 * (node - 1)

    @property
    def bootstrap_servers(self) -> str:
        return self.bootstrap or ",".join(f"{self.host}:{self.broker_port(n)}" for n in range(1, self.brokers + 1))

    @property
    def topic_replication(self) -> int:
        return self.replication or min(3, self.brokers)


class ClickHouseClusterSettings(BaseModel):
    """A replicated ClickHouse cluster (deploy/CLUSTER.md); empty ``name``: one node."""

    # The cluster of the servers' <remote_servers>: migrations create every table in its
    # replicated form ON CLUSTER name (schemas/clickhouse/cluster.py).
    name: str = ""
    # The local cluster `learnpulse stack up --clickhouse-replicas N` runs (tests, trials):
    # N servers as replicas of shard `shard`, replica r (1-based) on server_tcp_port + 10(r-1)
    # and server_http_port + 10(r-1); one ZooKeeper on zookeeper_port (loopback).
    replicas: int = 2
    shard: str = "01"
    # Shards of the cluster. More than one: every process writes through the Distributed
    # tables (synchronously) and reads the database `<db>_all_shards`, whose tables have
    # the local names and are Distributed over every shard (deploy/CLUSTER.md). The local
    # cluster then runs shards x replicas servers, shard s named "0s" in the macros.
    shards: int = 1
    zookeeper_port: int = 12181


class ClickHouseSettings(BaseModel):
    # chdb:///path (embedded, default) or clickhouse://user:pass@host:9000/db
    url: str = ""
    # Ports for the local Debian clickhouse-server started by `learnpulse stack up --clickhouse-server`.
    server_tcp_port: int = 19000
    server_http_port: int = 18123
    cluster: ClickHouseClusterSettings = ClickHouseClusterSettings()

    @property
    def cluster_name(self) -> str | None:
        """The cluster migrations target, or None on a single node."""
        return self.cluster.name or None

    @property
    def sharded(self) -> bool:
        """More than one shard: reads and writes go through the Distributed tables."""
        return bool(self.cluster.name) and self.cluster.shards > 1


class ResearchSettings(BaseModel):
    """Research SQL (``POST /api/sql``, ``learnpulse sql``): limits of every query (reporting/README.md)."""

    max_execution_s: float = 30
    max_memory_bytes: int = 1_000_000_000
    max_result_rows: int = 10_000
    max_result_bytes: int = 8 * 1024 * 1024
    max_rows_to_read: int = 2_000_000_000
    max_threads: int = 1
    # With a ClickHouse server: a read-only user for research queries (e.g. one with the
    # learnpulse_researcher role, deploy/clickhouse); default: the pipeline's user, read-only per query.
    url: str | None = None
    # Researcher tokens (hashed); default <home>/researchers.json.
    tokens_file: Path | None = None


class OperatorSettings(BaseModel):
    """Operators' sign-in to the dashboard (``learnpulse operators``; README "Operators")."""

    # Accounts (Argon2id hashes); default <home>/operators.json.
    accounts_file: Path | None = None
    # Mark the session cookie Secure: set it when the app is reached over HTTPS (a TLS
    # reverse proxy in front), else browsers would send the cookie over plain HTTP too.
    secure_cookies: bool = False
    # A session ends after this long without a request, and this long after sign-in whatever happens.
    session_idle_s: float = 30 * 60
    session_max_s: float = 12 * 3600
    # Lock-out: this many failed sign-ins for one account name (existing or not) within the
    # window lock it for the cool-down; from one client address, address_failures.
    lockout_failures: int = 5
    address_failures: int = 20
    lockout_window_s: float = 15 * 60
    lockout_cooldown_s: float = 15 * 60
    # Addresses of reverse proxies in front (e.g. ["127.0.0.1"]): from them, the client's
    # address for the lock-out is the nearest X-Forwarded-For hop that is not a proxy.
    # Empty: X-Forwarded-For is ignored (anyone could write it).
    trusted_proxies: list[str] = []


class SinkSettings(BaseModel):
    max_rows: int = 20_000
    max_wait_s: float = 1.0
    # The engagement sink's (the dashboard's live rollups); see sinks.specs.SinkParameters.
    rollup_max_wait_s: float = 0.5
    # The statements sink's ends measured this often while it holds records, and a due batch
    # reads up to the ends measured then for at most this long (Consistent-Through follows its
    # own batches, not the next ones; see sinks.specs.SinkParameters). None: 1 s, no wait.
    consistent_progress_s: float | None = Field(default=0.25, gt=0)


class GatewaySettings(BaseModel):
    """The LRS Statements API (``learnpulse gateway``)."""

    port: int = 8088
    # Hashed HTTP Basic credentials per school; default <home>/credentials.json.
    credentials_file: Path | None = None
    prefix: str = "/xapi"
    # 413 above these.
    max_body_bytes: int = 16 * 1024 * 1024
    # 413 above this many bytes of one State/Activity Profile/Agent Profile document.
    max_document_bytes: int = 2 * 1024 * 1024
    max_batch: int = 1000
    # Per statement as stored (JSON); with its envelope it must fit one Kafka message (4 MiB).
    max_statement_bytes: int = 1024 * 1024
    # Page size cap of GET /statements.
    max_limit: int = 500
    # X-Experience-API-Version echoed on errors of requests without a usable one.
    default_version: str = "1.0.3"
    # Seconds a request waits for Kafka before 503.
    kafka_timeout_s: float = 10.0
    # Transactional producers committing in parallel (more: lower latency for small requests,
    # fewer: less CPU per statement for large ones).
    kafka_lanes: int = 2
    # Milliseconds a lane holds a Kafka transaction open for more requests after its first
    # (0: commits at once). Each transaction costs the broker AddPartitionsToTxn, EndTxn and
    # a marker on every partition it touched, whatever its size; single-statement POSTs made
    # transactions of ~4 requests at 750/s. 20 ms: 178 -> 72 transactions/s there and the
    # broker's CPU 0.40 -> 0.29 cores (bench_end_to_end --path server --rates 100,750); each
    # request waits up to this long more (POST p50 5 -> 25 ms at 100/s, 26 -> 35 at 750/s).
    kafka_linger_ms: float = Field(default=20.0, ge=0)
    # The lanes' Kafka client: "librdkafka" (confluent-kafka: record batches, protocol and I/O in
    # C threads that do not hold the GIL; about a fifth less CPU per single-statement POST,
    # measured with benchmarks.bench_gateway --browser) or "kafka-python" (pure Python).
    kafka_client: Literal["kafka-python", "librdkafka"] = "librdkafka"
    # librdkafka: its statistics (records queued, requests, retries, round trips, broker and
    # transaction state) are exported as the lanes' metrics every this many ms (0: not at all).
    kafka_statistics_interval_ms: int = Field(default=15_000, ge=0)
    # The event loop serving requests: "uvloop" (libuv; about a fifth less CPU per request than
    # the standard loop, measured with benchmarks.bench_gateway --browser) or "asyncio".
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    # Kafka transactional.id; unique per gateway process (default: learnpulse-gateway-<host>-<port>).
    transactional_id: str | None = None
    # Clock skew allowed between gateway hosts and the sinks' for Consistent-Through (0: one host).
    clock_margin_ms: int = 0
    # The accepted-id index keeps each statement's JSON until the statements sink has it (reads
    # by id before that); then every this many seconds it is dropped and only a comparison key
    # stays (0: never, the index then grows by every statement's JSON).
    index_prune_interval_s: float = Field(default=10.0, ge=0)
    # Slow clients: headers must be complete this long after connecting (or after the previous
    # answer); a body must arrive at body_min_rate bytes/s on average after body_grace_s. 408 else.
    header_timeout_s: float = 15.0
    body_grace_s: float = 10.0
    body_min_rate: int = 64 * 1024
    # 429 + Retry-After above these (0: no limit): requests per second per client address and per
    # key; sign-in attempts that need a password check (not yet verified pairs) per address and
    # per key; lockout_failures failed sign-ins within 60 s lock out further checks for lockout_s.
    requests_per_s_per_address: float = 2000
    requests_per_s_per_key: float = 2000
    auth_attempts_per_s: float = 2
    lockout_failures: int = 10
    lockout_s: float = 300
    # Addresses of load balancers in front of the gateways (deploy/haproxy): their
    # X-Forwarded-For names the client those limits count. Empty: the header is ignored.
    trusted_proxies: list[str] = []
    # HMAC key signing the `more` paging tokens; unset: a random key kept in <home>/gateway-cursor.key
    # (0600, made on first start), shared by every gateway of that home.
    cursor_key: SecretStr | None = None


class BalancerSettings(BaseModel):
    """HAProxy in front of several gateways (``learnpulse stack up --balancer``, deploy/haproxy)."""

    host: str = "127.0.0.1"
    port: int = 8087
    # The gateways, host:port each.
    backends: list[str] = []


class LrsStoreSettings(BaseModel):
    """The LRS's transactional store: documents and accepted statement ids (``schemas.lrs_store``)."""

    # sqlite:///path (embedded; default <home>/lrs-store.sqlite3) or postgresql://user:pass@host:port/db
    # (`learnpulse stack up --postgres` prints the URL of its local server, password in a 0600 passfile).
    url: str = ""
    # Port of the local PostgreSQL started by `learnpulse stack up --postgres` (loopback only).
    postgres_port: int = 15432


class StreamsSettings(BaseModel):
    """Stream computations (defaults in ``streams.config``); files are JSON, documented there."""

    # Per-school disengagement/alert thresholds (streams.config.load_health_params).
    thresholds_file: Path | None = None
    # BKT parameters per skill (streams.mastery.logic.load_model); default streams/mastery/skills.json.
    mastery_file: Path | None = None
    # Per-course activity → skills mapping.
    skill_map_file: Path | None = None
    session_gap_min: float = 30
    idle_cutoff_min: float = 15
    inactive_days: float = 7
    # How far the cohort watermark trails the newest statement time of a partition: more
    # than the disorder of statements within a partition keeps cohort figures exact.
    watermark_lag_min: float = 10
    # Envelopes per processing batch.
    batch_max: int = 1000
    # How long a worker that stopped heartbeating keeps its partitions. Workers are static
    # group members (Kafka group.instance.id from their --name): a worker restarted under
    # its name (and web port) takes its place back at once, so this only delays the
    # hand-over of a worker that does not come back.
    session_timeout_s: float = 60


class WebhookSettings(BaseModel):
    """One webhook the alert notifier POSTs to (body and headers: ``sinks.notifier``)."""

    url: str
    # HMAC-SHA256 key: when set, requests carry X-Learnpulse-Signature: sha256=<hex>.
    secret: SecretStr | None = None
    # Only alerts of these schools; empty: every school.
    schools: list[str] = []
    # Name in metrics and logs; default webhook-<n>.
    name: str | None = None
    # Learners named in a body at most (the rest are counted in disengaged_learners_omitted):
    # a large cohort's alert would otherwise be megabytes, which common receivers refuse.
    # None: every name.
    max_learners: int | None = Field(default=1000, ge=0)


class NotifierSettings(BaseModel):
    """The alert notifier (``learnpulse notify``): learnpulse.alerts → webhooks, Alertmanager.

    ``config_file`` (JSON, or TOML by its ``.toml`` suffix) holds the same fields; it is
    read first, then environment values that differ from the defaults override it and
    webhooks from both are used. E.g. ``LEARNPULSE_NOTIFIER__WEBHOOKS='[{"url": "…"}]'``.
    """

    config_file: Path | None = None
    webhooks: list[WebhookSettings] = []
    # Base URL of Prometheus Alertmanager (http://host:9093); alerts go to its API v2.
    alertmanager_url: str | None = None
    alertmanager_schools: list[str] = []
    # Alertmanager `severity` label (deploy/prometheus rules use "warn" and "page").
    severity: str = "warn"
    # Fired alerts are re-sent to Alertmanager this often (each valid 4× as long).
    alertmanager_resend_s: float = 60
    timeout_s: float = 10
    # Capped exponential backoff after 5xx / no answer.
    retry_initial_s: float = 1
    retry_max_s: float = 60


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LEARNPULSE_", env_nested_delimiter="__", extra="ignore")

    home: Path = Path(".learnpulse")
    # Downloads shared by every data directory on this machine (Kafka jars): the second
    # start, and every test run, is offline.
    cache_dir: Path = Path.home() / ".cache" / "learnpulse"
    kafka: KafkaSettings = KafkaSettings()
    clickhouse: ClickHouseSettings = ClickHouseSettings()
    sink: SinkSettings = SinkSettings()
    research: ResearchSettings = ResearchSettings()
    operators: OperatorSettings = OperatorSettings()
    gateway: GatewaySettings = GatewaySettings()
    balancer: BalancerSettings = BalancerSettings()
    lrs_store: LrsStoreSettings = LrsStoreSettings()
    streams: StreamsSettings = StreamsSettings()
    notifier: NotifierSettings = NotifierSettings()
    # Key of the learner pseudonym HMAC. Left at this published default, it is never used:
    # processes use a random key generated once in the home (learnpulse/local_secrets.py).
    pseudonym_secret: SecretStr = SecretStr(DEFAULT_PSEUDONYM_SECRET)
    # Address every server of ours listens on. Loopback unless deployed in a container.
    bind_host: str = "127.0.0.1"
    metrics_port_base: int = 19100
    # This process's /metrics port; unset: metrics_port_base + the process's offset.
    metrics_port: int | None = None
    web_port: int = 8080
    streams_web_port: int = 19066
    log_level: str = "WARNING"
    # Kafka client libraries (kafka-python, aiokafka): they log every retry.
    client_log_level: str = "CRITICAL"

    def metrics_port_for(self, offset: int) -> int:
        return self.metrics_port if self.metrics_port is not None else self.metrics_port_base + offset

    def to_env(self) -> dict[str, str]:
        """These settings as ``LEARNPULSE_*`` variables, for child processes."""
        env: dict[str, str] = {}

        def plain(value: object) -> object:
            if isinstance(value, BaseModel):
                # None is left out where it is the default, kept (JSON null) where it overrides one.
                fields = type(value).model_fields
                return {k: plain(getattr(value, k)) for k in fields
                        if getattr(value, k) is not None or fields[k].default is not None}  # fmt: skip
            if isinstance(value, (list, tuple)):
                return [plain(v) for v in value]
            if isinstance(value, dict):
                return {str(k): plain(v) for k, v in value.items()}
            if isinstance(value, SecretStr):
                return value.get_secret_value()
            return str(value) if isinstance(value, Path) else value

        def put(prefix: str, value: object) -> None:
            if isinstance(value, BaseModel):
                for name in type(value).model_fields:
                    put(f"{prefix}__{name.upper()}" if prefix else name.upper(), getattr(value, name))
            elif isinstance(value, (list, dict)):
                # Lists of models (webhooks) as JSON, secrets included: pydantic-settings parses JSON.
                env[f"LEARNPULSE_{prefix}"] = json.dumps(plain(value))
            elif value is not None:
                env[f"LEARNPULSE_{prefix}"] = value.get_secret_value() if isinstance(value, SecretStr) else str(value)

        put("", self)
        return env

    @property
    def lrs_store_url(self) -> str:
        return self.lrs_store.url or f"sqlite:///{(self.home / 'lrs-store.sqlite3').resolve()}"

    @property
    def clickhouse_url(self) -> str:
        return self.clickhouse.url or f"chdb://{self.home.resolve() / 'chdb'}"
