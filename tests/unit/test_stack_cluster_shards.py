"""The local cluster's server layout and generated config for several shards, offline (no server started)."""

from __future__ import annotations

import re

from learnpulse.settings import ClickHouseClusterSettings, ClickHouseSettings, Settings
from learnpulse.stack_cluster import cluster_services


def _servers(tmp_path, shards: int, replicas: int):
    settings = Settings(home=tmp_path, clickhouse=ClickHouseSettings(
        server_tcp_port=30000, server_http_port=31000,
        cluster=ClickHouseClusterSettings(name="lp", shards=shards, replicas=replicas)))  # fmt: skip
    return cluster_services(settings)[1]


def test_two_shards_of_two_replicas_are_four_servers_each_with_its_shard_macro_and_the_whole_cluster(tmp_path):
    servers = _servers(tmp_path, shards=2, replicas=2)
    assert [s.tcp_port for s in servers] == [30000, 30001, 30002, 30003]
    assert [s.shard for s in servers] == [1, 1, 2, 2]
    for server in servers:
        config = server._more_config()
        shards = re.findall(r"<shard><internal_replication>true</internal_replication>(.*?)</shard>", config)
        # remote_servers: both shards, each naming its two replicas' ports.
        assert [re.findall(r"<port>(\d+)</port>", s) for s in shards] == [["30000", "30001"], ["30002", "30003"]]
        assert f"<macros><shard>0{server.shard}</shard><replica>r{server.replica}</replica></macros>" in config
    # A client's alternatives are the other replicas of its own shard.
    assert servers[2].url_for("db").endswith("?alt_hosts=127.0.0.1:30003")


def test_one_shard_keeps_the_configured_shard_macro_and_every_replica_in_it(tmp_path):
    servers = _servers(tmp_path, shards=1, replicas=2)
    assert [s.shard for s in servers] == [1, 1]
    config = servers[1]._more_config()
    assert config.count("<shard><internal_replication>") == 1
    assert "<macros><shard>01</shard><replica>r2</replica></macros>" in config
