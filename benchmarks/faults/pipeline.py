"""The pipeline under test: the processes of one ClickHouse path, started through the CLI.

``LocalPipeline("server")``: ``learnpulse stack up --clickhouse-server`` (Kafka and Debian's
clickhouse-server), then ``gateway``, ``sink`` and ``worker`` as separate processes.
``LocalPipeline("chdb")``: Kafka, then ``gateway`` (which runs the sinks: one process owns
an embedded chDB path) and ``worker``.
``LocalPipeline("server", clickhouse_replicas=N)``: the ClickHouse cluster form instead of one
server (``stack up --clickhouse-replicas N``: ZooKeeper and N replicas of one shard, every table
replicated ON CLUSTER); one ``sink`` process per replica, each writing to its own replica with
the others as ``alt_hosts``, sharing the sinks' partitions (as docker-compose.cluster.yml runs
sink-1 and sink-2); the other processes use replica 1's URL. ``OperatorPipeline``: an existing deployment.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .procs import REPO, Command, External, Process, StackService, free_port, free_port_block, wait_until

#: the cluster name the cluster form runs under (``remote_servers``, ON CLUSTER)
CLUSTER = "learnpulse"
# Ports taken per replica from one base: more than stack_cluster uses, so its layout may change.
PORTS_PER_REPLICA = 10


@dataclass
class Pipeline:
    """What the scenarios need to know about a pipeline, whoever started it."""

    path: str  # "server", "chdb" or "operator"
    gateway_url: str  # …/xapi
    kafka_bootstrap: str
    processes: dict[str, Process] = field(default_factory=dict)
    #: a process that a scenario may kill must be known here; "sink" is absent where the gateway runs the sinks
    sinks_in: str = "sink"
    #: held while a scenario kills/restarts a process, so the crash watcher leaves it alone
    lock: threading.RLock = field(default_factory=threading.RLock)

    def credential(self, school: str) -> tuple[str, str]:
        raise NotImplementedError

    @contextlib.contextmanager
    def clickhouse(self) -> Iterator[object]:
        """A ClickHouse engine to count rows with (``schemas.clickhouse.engine.ClickHouse``)."""
        raise NotImplementedError
        yield

    def clickhouse_live(self) -> bool:
        """Whether ClickHouse can be read while the pipeline runs (chDB: only by its owner)."""
        return True

    def crashed(self) -> list[str]:
        """Processes of ours that exited without being asked to, each restarted; a line per crash."""
        out = []
        with self.lock:
            for p in self.processes.values():
                if isinstance(p, Command) and p.died():
                    code = p.popen.returncode
                    how = f"signal {-code}" if code < 0 else f"status {code}"
                    out.append(f"{p.name} exited by itself ({how}), restarted: {p.tail(2)}")
                    p.restart()
        return out

    def down(self) -> None:
        pass


class LocalPipeline(Pipeline):
    def __init__(self, path: str, home: Path | None = None, clickhouse_replicas: int = 0) -> None:
        if clickhouse_replicas and path != "server":
            raise ValueError("the ClickHouse cluster form runs on the server path only")
        self.replicas = clickhouse_replicas
        self._tmp = None if home else tempfile.TemporaryDirectory(prefix=f"lp-faults-{path}-")
        self.home = Path(home or self._tmp.name)
        self.logs = self.home / "bench-logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        kafka_port, gateway_port = free_port(), free_port()
        # A replica's ports are a base + an offset (learnpulse.stack_cluster): blocks of free ports.
        block = PORTS_PER_REPLICA * clickhouse_replicas
        self.ch_tcp = free_port_block(block) if clickhouse_replicas else free_port()
        env = {
            "LEARNPULSE_HOME": str(self.home),
            "LEARNPULSE_KAFKA__PORT": str(kafka_port),
            "LEARNPULSE_KAFKA__CONTROLLER_PORT": str(free_port()),
            "LEARNPULSE_CLICKHOUSE__SERVER_TCP_PORT": str(self.ch_tcp),
            "LEARNPULSE_CLICKHOUSE__SERVER_HTTP_PORT": str(free_port_block(block) if clickhouse_replicas else free_port()),
            "LEARNPULSE_GATEWAY__PORT": str(gateway_port),
            "LEARNPULSE_METRICS_PORT_BASE": str(free_port()),
            "LEARNPULSE_WEB_PORT": str(free_port()),
            "LEARNPULSE_STREAMS_WEB_PORT": str(free_port()),
            "LEARNPULSE_LOG_LEVEL": "WARNING",
        }
        if clickhouse_replicas:
            env |= {
                "LEARNPULSE_CLICKHOUSE__CLUSTER__NAME": CLUSTER,
                "LEARNPULSE_CLICKHOUSE__CLUSTER__REPLICAS": str(clickhouse_replicas),
                "LEARNPULSE_CLICKHOUSE__CLUSTER__ZOOKEEPER_PORT": str(free_port()),
            }
        if path == "server":
            env["LEARNPULSE_CLICKHOUSE__URL"] = f"clickhouse://default:@127.0.0.1:{self.ch_tcp}/learnpulse"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("LEARNPULSE_")} | env
        super().__init__(path, f"http://127.0.0.1:{gateway_port}/xapi", f"127.0.0.1:{kafka_port}")
        self.sinks_in = "sink" if path == "server" else "gateway"

        def command(name: str, args: list[str], port: int | None = None) -> Command:
            return Command(name, args, self.env | {"LEARNPULSE_METRICS_PORT": str(free_port())}, self.logs, port)

        up = ["stack", "up"]
        if clickhouse_replicas:
            up += ["--clickhouse-replicas", str(clickhouse_replicas)]
        elif path == "server":
            up += ["--clickhouse-server"]
        self.processes["kafka"] = StackService(
            "kafka", self.home / "kafka" / "kafka.pid", command("stack-up", ["stack", "up"]), kafka_port
        )
        self._stack_up = command("stack-up", up)
        if clickhouse_replicas:
            self._add_cluster_services(command("stack-up-ch", up))
        elif path == "server":
            self.processes["clickhouse"] = StackService(
                "clickhouse", self.home / "clickhouse" / "clickhouse.pid", command("stack-up-ch", up), self.ch_tcp
            )
        self.processes["worker"] = command("worker", ["worker"])
        if clickhouse_replicas:
            for r in range(1, clickhouse_replicas + 1):
                # Static membership ids, as docker-compose.cluster.yml gives sink-1 and sink-2.
                self.processes[sink_name(r)] = command(sink_name(r), ["sink", "--instance-id", f"sink-{r}"])
        elif path == "server":
            self.processes["sink"] = command("sink", ["sink"])
        self.processes["gateway"] = command("gateway", ["gateway"], gateway_port)

    @property
    def form(self) -> str:
        """The path and ClickHouse form, as the reports name it."""
        return f"{self.path}, cluster of {self.replicas} replicas" if self.replicas else self.path

    def _add_cluster_services(self, up: Command) -> None:
        """ZooKeeper and every replica, each restarted by ``stack up --clickhouse-replicas N``."""
        zookeeper_port = int(self.env["LEARNPULSE_CLICKHOUSE__CLUSTER__ZOOKEEPER_PORT"])
        self.processes["zookeeper"] = StackService(
            "zookeeper", self.home / "zookeeper" / "zookeeper.pid", up, zookeeper_port
        )
        for r in range(1, self.replicas + 1):
            name = f"clickhouse-r{r}"
            self.processes[name] = StackService(name, self.home / name / f"{name}.pid", up, self.ch_tcp + r - 1)

    def up(self, echo) -> None:
        echo(f"[{self.form}] learnpulse stack up in {self.home} …")
        printed = self._run(self._stack_up.args)
        # The server's URL as `stack up` prints it: with the password it generated, if any.
        url = re.search(r" at (clickhouse://\S+)", printed)
        if url:
            self._use_clickhouse_url(url.group(1))
        if self.replicas:
            self._use_replica_urls(replica_urls(printed))
        self._run(["db", "migrate"])
        for name in ("worker", *(n for n in self.processes if n.startswith("sink")), "gateway"):
            if name in self.processes:
                self.processes[name].restart()
        echo(f"[{self.form}] gateway {self.gateway_url}, Kafka {self.kafka_bootstrap}; logs in {self.logs}")

    def _use_replica_urls(self, urls: dict[int, str]) -> None:
        """Replica 1's URL for every process, then each sink process its own replica's."""
        missing = [r for r in range(1, self.replicas + 1) if r not in urls]
        if missing:
            raise RuntimeError(f"`stack up` printed no URL for replica(s) {missing}")
        self._use_clickhouse_url(urls[1])
        for r in range(1, self.replicas + 1):
            self.processes[sink_name(r)].env["LEARNPULSE_CLICKHOUSE__URL"] = urls[r]

    def _use_clickhouse_url(self, url: str) -> None:
        self.env["LEARNPULSE_CLICKHOUSE__URL"] = url
        commands = [p for p in self.processes.values() if isinstance(p, Command)]
        commands += [p.up for p in self.processes.values() if isinstance(p, StackService)]
        for c in commands:
            c.env["LEARNPULSE_CLICKHOUSE__URL"] = url

    def _run(self, args: list[str]) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "learnpulse", *args], cwd=REPO, env=self.env,
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"learnpulse {' '.join(args)} failed: {done.stderr.strip()[-2000:]}")
        return done.stdout

    def credential(self, school: str) -> tuple[str, str]:
        out = self._run(["credentials", "add", "--school", school])
        key = re.search(r"^key:\s+(\S+)", out, re.M)
        secret = re.search(r"^secret:\s+(\S+)", out, re.M)
        return key.group(1), secret.group(1)

    def clickhouse_live(self) -> bool:
        return self.path == "server"

    @contextlib.contextmanager
    def clickhouse(self) -> Iterator[object]:
        from sinks.engines import engine_from_url

        if self.path == "server":
            ch = engine_from_url(self.env["LEARNPULSE_CLICKHOUSE__URL"])
            try:
                yield ch
            finally:
                ch.close()
            return
        # chDB: only its owner reads it. Stop the gateway cleanly (it flushes and commits),
        # read, and start it again: a clean restart, not a fault.
        gateway = self.processes["gateway"]
        with self.lock:
            gateway.stop()
            ch = engine_from_url(f"chdb://{self.home / 'chdb'}")
            try:
                yield ch
            finally:
                ch.close()
                gateway.restart()

    def down(self) -> None:
        for name in ("gateway", *(n for n in self.processes if n.startswith("sink")), "worker"):
            if name in self.processes:
                self.processes[name].stop()
        with contextlib.suppress(Exception):
            self._run(["stack", "down"])
        if self._tmp is not None:
            self._tmp.cleanup()


def sink_name(replica: int) -> str:
    """The sink process writing to replica ``replica`` (1-based): ``sink`` for the first, as on one server."""
    return "sink" if replica == 1 else f"sink-{replica}"


def replica_urls(printed: str) -> dict[int, str]:
    """``{replica: URL}`` from what ``stack up --clickhouse-replicas N`` prints (``  clickhouse-rN: URL``)."""
    return {int(m.group(1)): m.group(2) for m in re.finditer(r"^\s+clickhouse-r(\d+): (clickhouse://\S+)", printed, re.M)}


class OperatorPipeline(Pipeline):
    """An existing deployment: its gateway URL, a credential, Kafka, a ClickHouse server URL,
    and for every process a scenario may kill, its pid (or @pid-file) and restart command."""

    def __init__(self, gateway_url: str, credential: str, kafka: str, clickhouse_url: str,
                 pids: dict[str, str], restarts: dict[str, str]) -> None:  # fmt: skip
        super().__init__("operator", gateway_url.rstrip("/"), kafka)
        self._credential = tuple(credential.split(":", 1))
        self.clickhouse_url = clickhouse_url
        for name, pid in pids.items():
            self.processes[name] = External(name, pid, restarts.get(name))
        self.sinks_in = "sink" if "sink" in pids else "gateway"

    def credential(self, school: str) -> tuple[str, str]:
        return self._credential  # one school: the credential's

    @contextlib.contextmanager
    def clickhouse(self) -> Iterator[object]:
        from sinks.engines import engine_from_url

        ch = engine_from_url(self.clickhouse_url)
        try:
            yield ch
        finally:
            ch.close()


def wait_processes_ready(pipeline: Pipeline, timeout: float = 180) -> None:
    for p in pipeline.processes.values():
        wait_until(p.ready, timeout, f"{p.name} ready")
