"""Before ``ON CLUSTER`` DDL: does every replica of the cluster answer?

A distributed DDL statement is queued in ZooKeeper and the server that took it waits for
every host of the cluster to run it, for ``distributed_ddl_task_timeout`` (180 s by
default), then fails with a timeout naming none of them. ``require_replicas`` asks each
host listed for the cluster in ``system.clusters`` first, and refuses at once, naming the
ones that do not answer (or waits for them, when told to).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from .engine import ClickHouse, ClickHouseUnavailable

#: asks ``host``:``port`` for ``SELECT 1``; True if it answered
Answers = Callable[[str, int], bool]
#: a connection to ``host``:``port`` with the caller's credentials and database
Connect = Callable[[str, int], ClickHouse]


class ReplicasUnreachable(Exception):
    """A replica of the cluster does not answer: ON CLUSTER DDL would wait for it, then fail."""


@dataclass(frozen=True)
class Replica:
    shard: int
    replica: int
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port} (shard {self.shard}, replica {self.replica})"


def cluster_replicas(ch: ClickHouse, cluster: str) -> list[Replica]:
    """Every host of ``cluster`` as the server ``ch`` is connected to knows it (its ``remote_servers``)."""
    rows = ch.query(
        "SELECT shard_num, replica_num, host_name, port FROM system.clusters "
        "WHERE cluster = {cluster:String} ORDER BY shard_num, replica_num",
        {"cluster": cluster},
    )
    return [Replica(int(shard), int(replica), str(host), int(port)) for shard, replica, host, port in rows]


def silent_replicas(replicas: list[Replica], answers: Answers) -> list[Replica]:
    """Those of ``replicas`` that do not answer now."""
    return [r for r in replicas if not answers(r.host, r.port)]


def require_replicas(ch: ClickHouse, cluster: str, answers: Answers, wait_s: float = 0.0,
                     log: Callable[[str], None] = lambda _m: None, poll_s: float = 1.0) -> None:  # fmt: skip
    """Return once every replica of ``cluster`` answers; :class:`ReplicasUnreachable` naming the
    silent ones if some still do not after ``wait_s`` seconds (0: ask once)."""
    replicas = cluster_replicas(ch, cluster)
    if not replicas:
        raise ReplicasUnreachable(
            f"cluster {cluster!r} is not in this server's system.clusters (its remote_servers): "
            "check LEARNPULSE_CLICKHOUSE__CLUSTER__NAME and the servers' configuration"
        )
    deadline = time.monotonic() + wait_s
    said = False
    while silent := silent_replicas(replicas, answers):
        if time.monotonic() >= deadline:
            raise ReplicasUnreachable(_refusal(cluster, silent, wait_s))
        if not said:
            log(f"waiting up to {wait_s:.0f}s for {_names(silent)} of cluster {cluster} to answer")
            said = True
        time.sleep(poll_s)


def once_per_shard(ch: ClickHouse, cluster: str, run: Callable[[ClickHouse], None], connect: Connect) -> None:
    """``run`` on one replica of every shard of ``cluster``: on ``ch`` itself when the cluster
    has one shard, else on the first replica of each shard that answers (a replica that stops
    answering mid-way is followed by the next: ``run`` must be safe to repeat)."""
    shards: dict[int, list[Replica]] = {}
    for r in cluster_replicas(ch, cluster):
        shards.setdefault(r.shard, []).append(r)
    if len(shards) <= 1:
        run(ch)
        return
    for shard, replicas in sorted(shards.items()):
        for replica in replicas:
            engine = connect(replica.host, replica.port)
            try:
                run(engine)
                break
            except ClickHouseUnavailable:
                continue
            finally:
                engine.close()
        else:
            raise ReplicasUnreachable(f"no replica of shard {shard} of cluster {cluster} answers: {_names(replicas)}")


def _names(replicas: list[Replica]) -> str:
    return ", ".join(str(r) for r in replicas)


def _refusal(cluster: str, silent: list[Replica], wait_s: float) -> str:
    waited = f" after waiting {wait_s:.0f}s" if wait_s else ""
    return (
        f"ON CLUSTER {cluster} needs every replica, and {_names(silent)} "
        f"{'does' if len(silent) == 1 else 'do'} not answer{waited}: the DDL would wait for "
        f"{'it' if len(silent) == 1 else 'them'} (distributed_ddl_task_timeout), then fail. Start "
        f"{'it' if len(silent) == 1 else 'them'} and migrate again, or wait for "
        f"{'it' if len(silent) == 1 else 'them'} with `learnpulse db migrate --wait-for-replicas SECONDS`"
    )
