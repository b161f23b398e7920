"""Running a statement once in every shard (schemas/clickhouse/replicas.py, migrate.py), on fakes."""

from __future__ import annotations

from typing import Any

import pytest

from schemas.clickhouse.cluster import OncePerShard
from schemas.clickhouse.engine import ClickHouseUnavailable
from schemas.clickhouse.migrate import execute_forward
from schemas.clickhouse.replicas import ReplicasUnreachable, once_per_shard


class FakeServer:
    """An engine that answers system.clusters with ``hosts`` and records what it ran."""

    def __init__(self, name: str, hosts: list[tuple[int, int, str, int]] = (), down: bool = False) -> None:
        self.name, self.hosts, self.down = name, list(hosts), down
        self.ran: list[str] = []
        self.closed = False
        self.opened: list[FakeServer] = []
        self.servers: dict[tuple[str, int], FakeServer] = {}

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        assert "system.clusters" in sql and params == {"cluster": "lp"}
        return self.hosts

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> None:
        if self.down:
            raise ClickHouseUnavailable(f"{self.name} does not answer")
        self.ran.append(sql)

    def at(self, host: str, port: int) -> FakeServer:
        server = self.servers[(host, port)]
        self.opened.append(server)
        return server

    def close(self) -> None:
        self.closed = True


def test_one_shard_runs_it_on_the_connected_server_only():
    ch = FakeServer("r1", [(1, 1, "h1", 9000), (1, 2, "h2", 9000)])
    once_per_shard(ch, "lp", lambda e: e.execute("ALTER"), ch.at)
    assert ch.ran == ["ALTER"] and ch.opened == []


def test_several_shards_run_it_on_the_first_replica_of_each_that_answers():
    ch = FakeServer("migrator", [(1, 1, "a1", 9000), (1, 2, "a2", 9000), (2, 1, "b1", 9000), (2, 2, "b2", 9000)])
    ch.servers = {(h, 9000): FakeServer(h, down=h == "b1") for h in ("a1", "a2", "b1", "b2")}
    once_per_shard(ch, "lp", lambda e: e.execute("ALTER"), ch.at)
    ran = {s.name: s.ran for s in ch.servers.values()}
    assert ran == {"a1": ["ALTER"], "a2": [], "b1": [], "b2": ["ALTER"]}
    assert [s.name for s in ch.opened] == ["a1", "b1", "b2"] and all(s.closed for s in ch.opened)


def test_a_shard_with_no_replica_answering_is_named():
    ch = FakeServer("migrator", [(1, 1, "a1", 9000), (2, 1, "b1", 9000), (2, 2, "b2", 9000)])
    ch.servers = {(h, 9000): FakeServer(h, down=h != "a1") for h in ("a1", "b1", "b2")}
    with pytest.raises(ReplicasUnreachable, match=r"shard 2 of cluster lp.*b1:9000.*b2:9000"):
        once_per_shard(ch, "lp", lambda e: e.execute("ALTER"), ch.at)


def test_execute_forward_sends_only_once_per_shard_statements_to_every_shard():
    ch = FakeServer("migrator", [(1, 1, "a1", 9000), (2, 1, "b1", 9000)])
    ch.servers = {(h, 9000): FakeServer(h) for h in ("a1", "b1")}
    execute_forward(ch, "DROP TABLE IF EXISTS lpdb.t_distributed ON CLUSTER lp", "lp")
    execute_forward(ch, OncePerShard("ALTER TABLE lpdb.t ADD COLUMN x UInt8"), "lp")
    assert ch.ran == ["DROP TABLE IF EXISTS lpdb.t_distributed ON CLUSTER lp"]
    assert [s.ran for s in ch.servers.values()] == [["ALTER TABLE lpdb.t ADD COLUMN x UInt8"]] * 2
    single = FakeServer("one node")
    execute_forward(single, OncePerShard("ALTER TABLE lpdb.t ADD COLUMN x UInt8"), None)  # no cluster: as is
    assert single.ran == ["ALTER TABLE lpdb.t ADD COLUMN x UInt8"]
