"""Shared fixtures: real services started once per test session with our own launcher.

Unit tests (``tests/unit``) take none of these. A test that needs a service asks for the
fixture *and* carries the marker (``kafka``, ``clickhouse_server``); the fixtures refuse
to serve an unmarked test, so ``pytest -m "not kafka"`` really runs without Kafka.

Every test gets its own topic prefix and its own ClickHouse database on the shared
broker/engine, so tests never see each other's data. Ports are chosen free at start-up,
so a test run never collides with a running demo.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from benchmarks.ports import free_port, free_port_block
from learnpulse.settings import ClickHouseClusterSettings, ClickHouseSettings, KafkaSettings, Settings

REPO = Path(__file__).resolve().parent.parent


def _require_marker(request: pytest.FixtureRequest, marker: str) -> None:
    if request.node.get_closest_marker(marker) is None:
        pytest.fail(f"{request.node.nodeid} uses a real service but is not marked @pytest.mark.{marker}")


def listening_tcp() -> list[tuple[str, int, str]]:
    """Every listening TCP socket of this machine: (address, port, socket inode), from /proc/net/tcp and tcp6."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                address, port_hex = fields[1].rsplit(":", 1)
                found.append((_ip_of(address), int(port_hex, 16), fields[9]))
    return found


def _ip_of(hex_address: str) -> str:
    raw = bytes.fromhex(hex_address)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    # /proc/net/tcp6: four 32-bit words, each in host (little-endian) order.
    return socket.inet_ntop(socket.AF_INET6, b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4)))


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.25):
    """Poll ``predicate`` until it returns a truthy value; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


# -- Kafka -----------------------------------------------------------------------------
@pytest.fixture(scope="session")
def stack_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stack")


@pytest.fixture(scope="session")
def kafka_settings(stack_home: Path) -> Iterator[KafkaSettings]:
    """One real Kafka broker (KRaft) for the whole session, via ``learnpulse.stack``."""
    from learnpulse.stack import KafkaBroker

    settings = Settings(home=stack_home, kafka=KafkaSettings(port=free_port(), controller_port=free_port()))
    broker = KafkaBroker(settings)
    broker.up(timeout=120)
    try:
        yield settings.kafka
    finally:
        broker.stop()


@pytest.fixture
def kafka(request: pytest.FixtureRequest, kafka_settings: KafkaSettings) -> KafkaSettings:
    """The session broker with a topic prefix private to this test; topics created."""
    _require_marker(request, "kafka")
    from learnpulse.topics import ensure_topics

    k = kafka_settings.model_copy(update={"topic_prefix": f"t{uuid.uuid4().hex[:8]}."})
    ensure_topics(k.bootstrap_servers, k.topic_prefix, k.topic_replication)
    return k


# -- ClickHouse ------------------------------------------------------------------------
@pytest.fixture(scope="session")
def chdb_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    # chDB: one embedded server per process and path, so one path for the session and a
    # database per test. Closed at the end whatever a test left open: an engine alive at
    # interpreter exit can crash in chDB's shutdown (a segfault after every test passed).
    path = tmp_path_factory.mktemp("chdb")
    yield path
    from sinks.engines import close_every_chdb

    close_every_chdb()


@pytest.fixture(scope="session")
def clickhouse_server_settings(stack_home: Path) -> Iterator[ClickHouseSettings]:
    """Debian's clickhouse-server on free loopback ports in a private directory."""
    from learnpulse.stack import ClickHouseServer

    settings = Settings(
        home=stack_home,
        clickhouse=ClickHouseSettings(server_tcp_port=free_port(), server_http_port=free_port()),
    )
    server = ClickHouseServer(settings)
    server.up(timeout=90)
    try:
        yield settings.clickhouse
    finally:
        server.stop()


def _local_cluster(home: Path, name: str, shards: int, replicas: int) -> Iterator[Settings]:
    """ZooKeeper and ``shards`` x ``replicas`` clickhouse-server processes (cluster ``name``) on free loopback ports."""
    from learnpulse.stack_cluster import cluster_down, cluster_up

    servers = shards * replicas
    settings = Settings(
        home=home,
        clickhouse=ClickHouseSettings(
            server_tcp_port=free_port_block(servers), server_http_port=free_port_block(2 * servers),
            cluster=ClickHouseClusterSettings(name=name, shards=shards, replicas=replicas, zookeeper_port=free_port()),
        ),
    )
    try:
        cluster_up(settings, timeout=120)
        yield settings
    finally:
        cluster_down(settings)


@pytest.fixture(scope="session")
def clickhouse_cluster(stack_home: Path) -> Iterator[Settings]:
    """ZooKeeper and two clickhouse-server replicas of one shard (cluster ``lp_test``), loopback, private dirs."""
    yield from _local_cluster(stack_home / "cluster", "lp_test", shards=1, replicas=2)


@pytest.fixture(scope="session")
def clickhouse_shards(stack_home: Path) -> Iterator[Settings]:
    """ZooKeeper and two clickhouse-server shards of one replica each (cluster ``lp_shards``), loopback."""
    yield from _local_cluster(stack_home / "shards", "lp_shards", shards=2, replicas=1)


def start_sink(sink) -> tuple[threading.Event, list[BaseException], threading.Thread]:
    """``sink.run`` in a daemon thread until the returned event is set; what it raised lands in the list."""
    stop: threading.Event = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            sink.run(stop)
        except BaseException as err:  # noqa: BLE001 - reported by the test
            errors.append(err)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return stop, errors, thread


def _database() -> str:
    return f"t_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def chdb_url(chdb_path: Path) -> str:
    return f"chdb://{chdb_path}?database={_database()}"


@pytest.fixture
def server_url(request: pytest.FixtureRequest, stack_home: Path, clickhouse_server_settings: ClickHouseSettings) -> str:
    """A fresh database on the session's server, as its password-protected ``default`` user."""
    _require_marker(request, "clickhouse_server")
    from learnpulse.stack import ClickHouseServer

    server = ClickHouseServer(Settings(home=stack_home, clickhouse=clickhouse_server_settings))
    return server.url_for(_database())


@pytest.fixture(params=["chdb", "server"])
def clickhouse_url(request: pytest.FixtureRequest) -> str:
    """Both real engines: chDB embedded and Debian's clickhouse-server (native protocol)."""
    if request.param == "chdb":
        return request.getfixturevalue("chdb_url")
    return request.getfixturevalue("server_url")


# -- PostgreSQL (the LRS transactional store for several gateways) ----------------------
@pytest.fixture(scope="session")
def postgres_server() -> Iterator[object]:
    """Debian's PostgreSQL 15 on a free loopback port, via ``learnpulse.postgres``.

    Its home is a directory of its own under the system temp dir, reachable by the
    ``postgres`` user (PostgreSQL refuses to run as root; pytest's own temp dirs are 0700).
    """
    import shutil
    import tempfile

    from learnpulse.postgres import PostgresServer
    from learnpulse.settings import LrsStoreSettings

    home = Path(tempfile.mkdtemp(prefix="learnpulse-pg-"))
    home.chmod(0o711)
    server = PostgresServer(Settings(home=home, lrs_store=LrsStoreSettings(postgres_port=free_port())))
    server.up(timeout=90)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def postgres_url(request: pytest.FixtureRequest, postgres_server) -> str:
    """A fresh PostgreSQL database private to this test: ``postgresql://…?passfile=…``."""
    _require_marker(request, "postgres")
    return postgres_server.create_database(_database())


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite store file private to this test (the embedded default)."""
    return f"sqlite:///{tmp_path / 'lrs-store.sqlite3'}"


@pytest.fixture(params=["sqlite", "postgres"])
def lrs_store_url(request: pytest.FixtureRequest) -> str:
    """Both transactional stores: SQLite (embedded default) and PostgreSQL."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("postgres_url")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The server half of `clickhouse_url` needs the server marker too.
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("clickhouse_url") == "server":
            item.add_marker(pytest.mark.clickhouse_server)
        # The PostgreSQL half of `lrs_store_url` needs the postgres marker too.
        if callspec is not None and callspec.params.get("lrs_store_url") == "postgres":
            item.add_marker(pytest.mark.postgres)


# -- pipeline processes ----------------------------------------------------------------
@pytest.fixture
def settings(tmp_path: Path, kafka: KafkaSettings, clickhouse_url: str) -> Settings:
    """Settings for one pipeline under test: private home, topics and database."""
    return Settings(
        home=tmp_path / "home",
        kafka=kafka,
        clickhouse=ClickHouseSettings(url=clickhouse_url),
        metrics_port_base=free_port_block(16),
        web_port=free_port(),
        streams_web_port=free_port(),
        log_level="WARNING",
    )


class Proc:
    """A learnpulse subcommand running as its own process, its output in a log file."""

    def __init__(self, args: list[str], settings: Settings, log: Path, extra_env: dict[str, str] | None = None):
        self.log = log
        env = {**os.environ, **settings.to_env(), **(extra_env or {})}
        self._out = open(log, "ab")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "learnpulse", *args], cwd=REPO, env=env,
            stdout=self._out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )

    def stop(self, timeout: float = 30) -> int:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        self._out.close()
        return self.popen.returncode

    def kill(self) -> None:
        self.popen.kill()
        self.popen.wait(10)

    def tail(self, n: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    """Start learnpulse subcommands as processes; all are stopped at teardown."""
    procs: list[Proc] = []

    def start(args: list[str], settings: Settings, name: str, extra_env: dict[str, str] | None = None) -> Proc:
        p = Proc(args, settings, tmp_path / f"{name}.log", extra_env)
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.stop()
