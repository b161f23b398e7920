"""A server engine's other connections (no server needed: clickhouse-driver connects lazily)."""

from __future__ import annotations

from sinks.engines import ServerEngine


def _engine() -> ServerEngine:
    return ServerEngine("127.0.0.1", 9, "u", "p", "learnpulse", connect_timeout=1.5, alt_hosts="127.0.0.2:9",
                        session_settings={"max_threads": 2})  # fmt: skip


def _client_args(engine: ServerEngine) -> tuple:
    conn = engine._client.connection
    return conn.hosts, conn.user, conn.password, conn.connect_timeout, conn.database


def test_a_sibling_is_a_new_connection_with_the_same_servers_database_timeouts_and_settings():
    engine = _engine()
    other = engine.sibling()
    assert other._client is not engine._client
    assert _client_args(other) == _client_args(engine)
    assert other.session_settings == {"max_threads": 2}


def test_the_all_shards_connection_keeps_the_connect_timeout_and_replicas():
    engine = _engine()
    shards = engine.across_shards()
    assert shards.database != engine.database
    assert _client_args(shards)[:4] == _client_args(engine)[:4]
    assert shards.session_settings != engine.session_settings
