"""A local replicated ClickHouse: ZooKeeper (Debian) and S shards x R clickhouse-server replicas.

``learnpulse stack up --clickhouse-shards S --clickhouse-replicas R`` and the test fixtures
run it (S=1 by default), everything on
127.0.0.1 in private directories under the home: ZooKeeper keeps the replication log,
the hashes of the last inserted blocks (deduplication) and the ``ON CLUSTER`` DDL queue;
each replica gets ``remote_servers`` (the cluster ``settings.clickhouse.cluster.name``),
``macros`` ({shard}, {replica}) and the ZooKeeper address in its generated config.
Production clusters use ClickHouse Keeper instead (deploy/CLUSTER.md).
"""

from __future__ import annotations

import socket
from pathlib import Path
from xml.sax.saxutils import escape

from .errors import UserError
from .settings import ClickHouseClusterSettings, ClickHouseSettings, Settings
from .stack import ClickHouseServer, Service

ZOOKEEPER_JAR = Path("/usr/share/java/zookeeper.jar")
# Debian's log4j settings for the server (the jar's Class-Path lists its other jars).
ZOOKEEPER_CONF = Path("/etc/zookeeper/conf_example")
DEFAULT_CLUSTER = "learnpulse"
# The ON CLUSTER queue in ZooKeeper (the same on every replica of the cluster).
DDL_QUEUE = "/clickhouse/task_queue/ddl"


class ZooKeeperServer(Service):
    """One standalone ZooKeeper (Debian package ``zookeeper``) on loopback with a private data directory."""

    def __init__(self, settings: Settings) -> None:
        self.port = settings.clickhouse.cluster.zookeeper_port
        super().__init__("zookeeper", settings.home.resolve() / "zookeeper", "127.0.0.1", (self.port,))

    def _write_config(self) -> Path:
        (self.dir / "data").mkdir(parents=True, exist_ok=True)
        cfg = self.dir / "zoo.cfg"
        cfg.write_text(
            "tickTime=2000\n"
            f"dataDir={self.dir / 'data'}\n"
            f"clientPort={self.port}\n"
            "clientPortAddress=127.0.0.1\n"
            # No admin web server (it would take port 8080 on every interface).
            "admin.enableServer=false\n"
            "4lw.commands.whitelist=srvr\n"
            "maxClientCnxns=200\n"
            # Old snapshots and logs are purged hourly (a long-running trial stays small).
            "autopurge.snapRetainCount=3\nautopurge.purgeInterval=1\n"
        )
        return cfg

    def up(self, timeout: float = 60) -> str:
        if not self._prepare_start("java", "openjdk-17-jre-headless"):
            self._wait_ready(self.ready, timeout)
            return "already running"
        if not ZOOKEEPER_JAR.exists():
            raise UserError(f"{ZOOKEEPER_JAR} not found: apt-get install zookeeper (or run `make setup`)")
        cfg = self._write_config()
        # IPv4 only: the JVM would otherwise listen on ::ffff:127.0.0.1.
        self._spawn([
            "java", "-Xmx256m", "-XX:+UseSerialGC", "-Djava.net.preferIPv4Stack=true",
            f"-Dzookeeper.log.dir={self.dir / 'logs'}", "-cp", f"{ZOOKEEPER_CONF}:{ZOOKEEPER_JAR}",
            "org.apache.zookeeper.server.ZooKeeperServerMain", str(cfg),
        ])  # fmt: skip
        self._wait_ready(self.ready, timeout)
        return "started"

    def ready(self) -> bool:
        """``srvr`` names the server's mode once it serves clients (``ruok`` answers earlier:
        a clickhouse-server 18.16 whose first session is refused then crashes)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as conn:
                conn.sendall(b"srvr")
                answer = b""
                while chunk := conn.recv(4096):
                    answer += chunk
                return b"Mode: standalone" in answer
        except OSError:
            return False


class ClickHouseReplica(ClickHouseServer):
    """Server ``replica`` (1-based, numbered across shards) of the local cluster.

    Servers 1..R are the replicas of shard 1, R+1..2R those of shard 2, and so on.
    Ports: native ``server_tcp_port + r - 1``, HTTP ``server_http_port + 2(r - 1)``, the
    interserver port (replicas fetch parts from each other) the HTTP port + 1.
    """

    def __init__(self, settings: Settings, replica: int) -> None:
        c = settings.clickhouse
        self.replica = replica
        self.cluster_settings = c.cluster
        self.cluster = c.cluster.name or DEFAULT_CLUSTER
        super().__init__(
            settings, name=f"clickhouse-r{replica}",
            tcp_port=replica_tcp_port(c, replica), http_port=c.server_http_port + 2 * (replica - 1),
        )  # fmt: skip
        self.interserver_port = self.http_port + 1
        self.ports = (self.tcp_port, self.interserver_port)
        self.shard = shard_of(c.cluster, replica)

    def url_for(self, database: str = "learnpulse") -> str:
        """This replica's URL, the other replicas of its shard as ``alt_hosts`` (where a client
        goes when it is down)."""
        others = [f"127.0.0.1:{replica_tcp_port(self.settings, r)}"
                  for r in servers_of_shard(self.cluster_settings, self.shard) if r != self.replica]  # fmt: skip
        url = super().url_for(database)
        return f"{url}?alt_hosts={','.join(others)}" if others else url

    def _more_config(self) -> str:
        c = self.cluster_settings
        password = escape(self.password)

        def shard(s: int) -> str:
            replicas = "".join(
                f"<replica><host>127.0.0.1</host><port>{replica_tcp_port(self.settings, r)}</port>"
                f"<user>default</user><password>{password}</password></replica>"
                for r in servers_of_shard(c, s)
            )
            return f"<shard><internal_replication>true</internal_replication>{replicas}</shard>"

        shards = "".join(shard(s) for s in range(1, c.shards + 1))
        return f"""  <interserver_http_host>127.0.0.1</interserver_http_host>
  <interserver_http_port>{self.interserver_port}</interserver_http_port>
  <remote_servers><{self.cluster}>{shards}</{self.cluster}></remote_servers>
  <macros><shard>{escape(shard_macro(c, self.shard))}</shard><replica>r{self.replica}</replica></macros>
  <zookeeper><node><host>127.0.0.1</host><port>{c.zookeeper_port}</port></node><session_timeout_ms>30000</session_timeout_ms></zookeeper>
  <distributed_ddl><path>{DDL_QUEUE}</path></distributed_ddl>
"""


def replica_tcp_port(c: ClickHouseSettings, replica: int) -> int:
    """The native port of replica ``replica`` (1-based) of the local cluster."""
    return c.server_tcp_port + replica - 1


def shard_of(c: ClickHouseClusterSettings, server: int) -> int:
    """The shard (1-based) of local server ``server`` (1-based, numbered across shards)."""
    return (server - 1) // c.replicas + 1


def servers_of_shard(c: ClickHouseClusterSettings, shard: int) -> range:
    """The local servers (1-based numbers) that are the replicas of ``shard``."""
    return range((shard - 1) * c.replicas + 1, shard * c.replicas + 1)


def shard_macro(c: ClickHouseClusterSettings, shard: int) -> str:
    """The ``{shard}`` macro of ``shard``: the setting ``shard`` on one shard (as before), else 01, 02, …"""
    return c.shard if c.shards == 1 else f"{shard:02d}"


def cluster_services(settings: Settings) -> tuple[ZooKeeperServer, list[ClickHouseReplica]]:
    """ZooKeeper and the servers of ``settings.clickhouse.cluster`` (not started), shard by shard."""
    c = settings.clickhouse.cluster
    if c.replicas < 1 or c.shards < 1:
        raise UserError("clickhouse.cluster.replicas and clickhouse.cluster.shards must be 1 or more")
    return ZooKeeperServer(settings), [ClickHouseReplica(settings, r) for r in range(1, c.shards * c.replicas + 1)]


def cluster_up(settings: Settings, timeout: float = 120) -> str:
    """Start ZooKeeper, then every replica; idempotent like the other services."""
    zookeeper, replicas = cluster_services(settings)
    outcomes = [f"zookeeper {zookeeper.up(timeout)}"]
    outcomes += [f"{r.name} {r.up(timeout)}" for r in replicas]
    return ", ".join(outcomes)


def cluster_down(settings: Settings) -> list[str]:
    """Stop the replicas, then ZooKeeper; the names of those that were running."""
    return [svc.name for svc in local_cluster_services(settings) if svc.stop()]


def local_cluster_services(settings: Settings) -> list[Service]:
    """The replicas this home has run (whatever ``replicas`` now says), then ZooKeeper:
    what ``stack down`` and ``status`` look at, in stopping order."""
    home = settings.home.resolve()
    numbers = (d.name.removeprefix("clickhouse-r") for d in home.glob("clickhouse-r*") if d.is_dir())
    found = {int(n) for n in numbers if n.isdigit()}
    return [*(ClickHouseReplica(settings, r) for r in sorted(found)), ZooKeeperServer(settings)]
