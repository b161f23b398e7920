"""The local stack: a real Kafka broker (KRaft) and, optionally, Debian's clickhouse-server.

Everything lives under the data directory (``LEARNPULSE_HOME``, default ``.learnpulse``):
jars, configs, data, logs and pid files. Servers bind to 127.0.0.1 only. ``up`` is
idempotent; ``down`` also cleans up after a crash (stale pid files).
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from .errors import UserError
from .settings import Settings

log = logging.getLogger("learnpulse.stack")

REPO = Path(__file__).resolve().parent.parent
KAFKA_POM = REPO / "deploy" / "kafka" / "pom.xml"
CLICKHOUSE_BINARY = "/usr/sbin/clickhouse-server"


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _require_tool(tool: str, debian_package: str) -> None:
    if shutil.which(tool) is None:
        raise UserError(f"`{tool}` not found: install it (apt-get install {debian_package}, or `make setup`) and retry")


def pid_alive(pid: int | None) -> bool:
    """Whether ``pid`` runs (a zombie does not count); False for None."""
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); read its state.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


@dataclass
class Service:
    """A server process we start, track by pid file, and stop."""

    name: str
    dir: Path
    host: str
    ports: tuple[int, ...]

    @property
    def pidfile(self) -> Path:
        return self.dir / f"{self.name}.pid"

    @property
    def logfile(self) -> Path:
        return self.dir / "logs" / f"{self.name}.out"

    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def status(self) -> str:
        pid = self.pid()
        if pid is None:
            return "stopped" + (" (stale pid file)" if self.pidfile.exists() else "")
        listening = all(port_open(self.host, p) for p in self.ports)
        return f"running (pid {pid}, {'listening on ' + ','.join(map(str, self.ports)) if listening else 'not listening yet'})"

    def _check_ports_free(self) -> None:
        for p in self.ports:
            if port_open(self.host, p):
                raise UserError(
                    f"{self.name}: port {p} on {self.host} is already taken by another process; "
                    f"stop it or choose other ports (see `learnpulse stack up --help`)"
                )

    def _prepare_start(self, tool: str, debian_package: str) -> bool:
        """Before spawning: False if it runs already; else the tool is there, the ports are
        free and the directories exist."""
        if self.pid() is not None:
            return False
        self.pidfile.unlink(missing_ok=True)
        _require_tool(tool, debian_package)
        self._check_ports_free()
        (self.dir / "logs").mkdir(parents=True, exist_ok=True)
        return True

    def _spawn(self, cmd: list[str], env: dict[str, str] | None = None, user: str | None = None) -> int:
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        with open(self.logfile, "ab") as out:
            proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env={**os.environ, **(env or {})}, cwd=self.dir, user=user,
            )
        self.pidfile.write_text(str(proc.pid))
        return proc.pid

    def _wait_ready(self, ready, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pid() is None:
                tail = self.logfile.read_text(errors="replace").strip().splitlines()[-5:] if self.logfile.exists() else []
                raise UserError(f"{self.name} exited during start-up; last log lines: {' | '.join(tail)} (log: {self.logfile})")
            if ready():
                return
            time.sleep(0.3)
        raise UserError(f"{self.name} did not become ready in {timeout:.0f}s; see {self.logfile}")

    # The signal asking for a clean, prompt stop.
    stop_signal = signal.SIGTERM

    def stop(self, timeout: float = 20) -> bool:
        """``stop_signal``, then SIGKILL after ``timeout``; removes the pid file. True if it was running."""
        pid = self.pid()
        if pid is None:
            self.pidfile.unlink(missing_ok=True)
            return False
        try:
            os.killpg(pid, self.stop_signal)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.2)
        if pid_alive(pid):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        # Reap it if it is our child (tests start the stack in-process).
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        self.pidfile.unlink(missing_ok=True)
        return True


class KafkaBroker(Service):
    """Broker ``node`` (1-based) of the local KRaft cluster of ``settings.kafka.brokers``: each node
    is a broker and a controller (combined mode), in a directory of its own under the home."""

    def __init__(self, settings: Settings, node: int = 1) -> None:
        k = settings.kafka
        name = "kafka" if node == 1 else f"kafka-{node}"
        super().__init__(name, settings.home.resolve() / name, k.host, (k.broker_port(node), k.controller_port_of(node)))
        self.settings = k
        self.node = node
        self.cache_dir = settings.cache_dir
        self.cluster_id_file = settings.home.resolve() / "kafka-cluster-id"

    @property
    def libs(self) -> Path:
        # Keyed by the pom's content, so changing the Kafka version resolves anew.
        digest = hashlib.sha256(KAFKA_POM.read_bytes()).hexdigest()[:12] if KAFKA_POM.exists() else "nopom"
        return self.cache_dir.expanduser().resolve() / f"kafka-jars-{digest}"

    def ensure_jars(self) -> None:
        """Resolve the broker jars from Maven Central once; later starts are offline."""
        marker = self.libs / ".complete"
        if marker.exists():
            return
        _require_tool("mvn", "maven")
        if not KAFKA_POM.exists():
            raise UserError(f"{KAFKA_POM} missing: run learnpulse from a checkout of the repository")
        log.warning("resolving Kafka jars from Maven Central (first start only)")
        self.libs.parent.mkdir(parents=True, exist_ok=True)
        # Two first starts at once (a demo and a test run) must not interleave: take a
        # lock, resolve into a private directory, then rename it into place.
        with open(self.libs.parent / ".kafka-jars.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if marker.exists():
                return
            staging = Path(tempfile.mkdtemp(prefix="kafka-jars-", dir=self.libs.parent))
            res = subprocess.run(
                ["mvn", "-q", "-B", "-f", str(KAFKA_POM), "dependency:copy-dependencies",
                 f"-DoutputDirectory={staging}", "-DincludeScope=runtime"],
                capture_output=True, text=True,
            )
            if res.returncode != 0:
                shutil.rmtree(staging, ignore_errors=True)
                tail = (res.stdout + res.stderr).strip().splitlines()[-3:]
                raise UserError(
                    f"Maven could not resolve the Kafka jars (exit {res.returncode}); is Maven Central reachable? "
                    + " | ".join(tail)
                )
            (staging / ".complete").write_text("ok\n")
            shutil.rmtree(self.libs, ignore_errors=True)
            staging.rename(self.libs)

    def _write_config(self) -> Path:
        k = self.settings
        data = self.dir / "data"
        props = self.dir / "server.properties"
        port, controller = k.broker_port(self.node), k.controller_port_of(self.node)
        voters = ",".join(f"{n}@{k.host}:{k.controller_port_of(n)}" for n in range(1, k.brokers + 1))
        # Internal topics replicated like learnpulse's own (acks=all waits for min.insync.replicas).
        replication, min_isr = k.topic_replication, min(2, k.topic_replication)
        props.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    f"node.id={self.node}",
                    f"controller.quorum.voters={voters}",
                    f"listeners=PLAINTEXT://{k.host}:{port},CONTROLLER://{k.host}:{controller}",
                    f"advertised.listeners=PLAINTEXT://{k.host}:{port}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    "inter.broker.listener.name=PLAINTEXT",
                    f"log.dirs={data}",
                    "num.partitions=1",
                    f"default.replication.factor={replication}",
                    f"min.insync.replicas={min_isr}",
                    f"offsets.topic.replication.factor={replication}",
                    "offsets.topic.num.partitions=12",
                    f"transaction.state.log.replication.factor={replication}",
                    f"transaction.state.log.min.isr={min_isr}",
                    # A replica that was down may not become leader: an acknowledged record is never lost.
                    "unclean.leader.election.enable=false",
                    "group.initial.rebalance.delay.ms=0",
                    # Topics are created by learnpulse with their declared partitions.
                    "auto.create.topics.enable=false",
                    "log.retention.check.interval.ms=60000",
                ]
            )
            + "\n"
        )
        (self.dir / "log4j.properties").write_text(
            "log4j.rootLogger=WARN, file\n"
            "log4j.appender.file=org.apache.log4j.RollingFileAppender\n"
            f"log4j.appender.file.File={self.dir / 'logs' / 'server.log'}\n"
            "log4j.appender.file.MaxFileSize=20MB\nlog4j.appender.file.MaxBackupIndex=2\n"
            "log4j.appender.file.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
            "log4j.logger.kafka=WARN\nlog4j.logger.org.apache.kafka=WARN\n"
            # Why each consumer group rebalanced (a line per rebalance): operators need it.
            "log4j.logger.kafka.coordinator.group=INFO\nlog4j.logger.org.apache.kafka.coordinator.group=INFO\n"
        )
        if not (data / "meta.properties").exists():
            # `--cluster-id=` form: an id may start with "-", which a separate argument would not survive.
            cluster_id = self._cluster_id()
            res = subprocess.run(
                self._java() + ["kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}", "-c", str(props)],
                capture_output=True, text=True,
            )
            if res.returncode != 0:
                raise UserError(f"formatting Kafka storage failed: {res.stdout[-300:]} {res.stderr[-300:]}")
        return props

    def _cluster_id(self) -> str:
        """One id for every node of the local cluster, made once (the first node's, if it has one)."""
        if self.cluster_id_file.exists():
            return self.cluster_id_file.read_text().strip()
        first = self.dir.parent / "kafka" / "data" / "meta.properties"
        if first.exists():
            for line in first.read_text().splitlines():
                if line.startswith("cluster.id="):
                    return line.split("=", 1)[1].strip()
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        self.cluster_id_file.write_text(cluster_id + "\n")
        return cluster_id

    def _java(self) -> list[str]:
        return [
            "java", f"-Xmx{self.settings.heap}", f"-Xms{self.settings.heap}", "-XX:+UseG1GC",
            f"-Dlog4j.configuration=file:{self.dir / 'log4j.properties'}",
            "-Djava.awt.headless=true", "-cp", f"{self.libs}/*",
        ]

    def up(self, timeout: float = 90) -> str:
        started = self.start()
        self._wait_ready(self.ready, timeout)
        return started

    def start(self) -> str:
        """Spawn the broker without waiting for it: a cluster's nodes must all be started before
        any can be ready (the controllers need a majority of the quorum)."""
        if not self._prepare_start("java", "openjdk-17-jre-headless"):
            return "already running"
        self.ensure_jars()
        props = self._write_config()
        self._spawn(self._java() + ["kafka.Kafka", str(props)])
        return "started"

    def wait_ready(self, timeout: float = 90) -> None:
        self._wait_ready(self.ready, timeout)

    def ready(self) -> bool:
        """This node answers and the cluster lists it among its brokers."""
        return self.node in self.listed_brokers()

    def listed_brokers(self) -> set[int]:
        """The broker ids this node's metadata lists; empty while it does not answer."""
        port = self.settings.broker_port(self.node)
        if not port_open(self.settings.host, port):
            return set()
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        try:
            admin = KafkaAdminClient(
                bootstrap_servers=f"{self.settings.host}:{port}", request_timeout_ms=3000, bootstrap_timeout_ms=3000
            )
        except (KafkaError, OSError, ValueError):
            return set()
        try:
            brokers = admin.describe_cluster().get("brokers", [])
            return {b.get("broker_id", b.get("node_id")) for b in brokers}
        except (KafkaError, OSError):
            return set()
        finally:
            admin.close()


def kafka_brokers(settings: Settings) -> list[KafkaBroker]:
    """Every node of the local cluster (``settings.kafka.brokers``)."""
    return [KafkaBroker(settings, node) for node in range(1, settings.kafka.brokers + 1)]


def local_kafka_brokers(settings: Settings) -> list[KafkaBroker]:
    """The configured brokers and any other this home has run (a cluster started with a larger
    ``--brokers`` than the settings now say): what ``stack down`` and ``status`` look at."""
    home = settings.home.resolve()
    nodes = set(range(1, settings.kafka.brokers + 1))
    nodes |= {int(d.name.split("-", 1)[1]) for d in home.glob("kafka-*") if d.is_dir() and d.name.split("-", 1)[1].isdigit()}
    return [KafkaBroker(settings, node) for node in sorted(nodes)]


def _wait_every_broker_sees_all(brokers: list[KafkaBroker], timeout: float) -> None:
    """Until each node's metadata lists every node: a client bootstrapped on a node that does
    not know the others yet may be sent to a controller it cannot resolve."""
    everyone = {b.node for b in brokers}
    deadline = time.monotonic() + timeout
    for b in brokers:
        while not everyone <= b.listed_brokers():
            if time.monotonic() >= deadline:
                raise UserError(f"Kafka node {b.node} did not list every broker {sorted(everyone)} within {timeout:.0f}s")
            time.sleep(0.5)


def kafka_up(settings: Settings, timeout: float = 120) -> str:
    """Start every local broker, then wait until each is ready; what happened, in a few words."""
    brokers = kafka_brokers(settings)
    outcomes = [b.start() for b in brokers]
    for b in brokers:
        b.wait_ready(timeout)
    _wait_every_broker_sees_all(brokers, timeout)
    if len(brokers) == 1:
        return outcomes[0]
    return f"{outcomes.count('started')} of {len(brokers)} brokers started, the others already running"


class ClickHouseServer(Service):
    """Debian's clickhouse-server on loopback ports with a private data directory."""

    def __init__(self, settings: Settings, name: str = "clickhouse", tcp_port: int | None = None,
                 http_port: int | None = None) -> None:  # fmt: skip
        c = settings.clickhouse
        self.tcp_port = tcp_port or c.server_tcp_port
        self.http_port = http_port or c.server_http_port
        super().__init__(name, settings.home.resolve() / name, "127.0.0.1", (self.tcp_port,))
        self.settings = c
        self.home = settings.home
        self._password: str | None = None

    def _more_config(self) -> str:
        """XML elements a subclass adds to config.xml (a cluster replica's)."""
        return ""

    def _write_config(self) -> Path:
        d = self.dir
        for sub in ("data", "tmp", "user_files", "format_schemas", "logs"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        users = d / "users.xml"
        users.write_text(_USERS_XML.format(sha256=hashlib.sha256(self.password.encode()).hexdigest()))
        users.chmod(0o600)
        cfg = d / "config.xml"
        cfg.write_text(
            f"""<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>{d}/logs/server.log</log><errorlog>{d}/logs/server.err.log</errorlog><size>20M</size><count>2</count></logger>
  <tcp_port>{self.tcp_port}</tcp_port>
  <http_port>{self.http_port}</http_port>
  <listen_host>127.0.0.1</listen_host>
  <path>{d}/data/</path>
  <tmp_path>{d}/tmp/</tmp_path>
  <user_files_path>{d}/user_files/</user_files_path>
  <format_schema_path>{d}/format_schemas/</format_schema_path>
  <users_config>{d}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>268435456</mark_cache_size>
  <max_concurrent_queries>100</max_concurrent_queries>
{self._more_config()}</yandex>
"""
        )
        # A replica's config names the interserver user's password.
        cfg.chmod(0o600)
        return cfg

    def up(self, timeout: float = 60) -> str:
        if self.pid() is not None:
            self._wait_ready(self.ready, timeout)
            return "already running"
        if not Path(CLICKHOUSE_BINARY).exists():
            raise UserError(f"{CLICKHOUSE_BINARY} not found: apt-get install clickhouse-server (or run `make setup`)")
        self.pidfile.unlink(missing_ok=True)
        self._check_ports_free()
        cfg = self._write_config()
        self._spawn([CLICKHOUSE_BINARY, f"--config-file={cfg}"])
        self._wait_ready(self.ready, timeout)
        return "started"

    def ready(self) -> bool:
        if not port_open("127.0.0.1", self.tcp_port):
            return False
        from clickhouse_driver import Client

        try:
            Client("127.0.0.1", port=self.tcp_port, password=self.password,
                   connect_timeout=2).execute("SELECT 1")  # fmt: skip
            return True
        except Exception:  # any failure means "not ready yet"
            return False

    @property
    def password(self) -> str:
        """The ``default`` user's password: random, made once, kept in the home (0600)."""
        if self._password is None:
            from .local_secrets import CLICKHOUSE_PASSWORD_FILE, local_secret

            self._password, created = local_secret(self.home, CLICKHOUSE_PASSWORD_FILE)
            if created:
                log.warning("clickhouse-server: generated a password for user default in %s (mode 0600)",
                            self.home.resolve() / CLICKHOUSE_PASSWORD_FILE)  # fmt: skip
        return self._password

    def url_for(self, database: str = "learnpulse") -> str:
        return f"clickhouse://default:{quote(self.password, safe='')}@127.0.0.1:{self.tcp_port}/{database}"

    @property
    def url(self) -> str:
        return self.url_for("learnpulse")


_USERS_XML = """<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
  <users>
    <default><password_sha256_hex>{sha256}</password_sha256_hex><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></default>
  </users>
  <quotas><default></default></quotas>
</yandex>
"""
