"""One school's oversized or poison requests never fail another school's writes (issue 11, item 2).

Real Kafka, sinks and chDB. School A sends requests Kafka cannot take while school B
posts ordinary statements at the same time, so that the gateway's group commit puts
requests of both into the same transactions. Before: A's 5 MB statements reached Kafka,
the transaction failed and B got 503s that even named the size of A's request.
"""

from __future__ import annotations

import base64
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType

from learnpulse.settings import ClickHouseSettings, GatewaySettings, Settings
from schemas.topics import Topic
from tests.conftest import free_port, free_port_block
from tests.unit.gateway.harness import LiveGateway, new_id, statement

B_THREADS, B_REQUESTS = 4, 25
A_THREADS, A_REQUESTS = 3, 4


@pytest.fixture(params=["kafka-python", "librdkafka"])
def chdb_settings(request, tmp_path, kafka, chdb_url) -> Settings:
    """Each test on both Kafka clients of the gateway's lanes."""
    return Settings(
        home=tmp_path / "home", kafka=kafka, clickhouse=ClickHouseSettings(url=chdb_url),
        gateway=GatewaySettings(kafka_client=request.param),
        metrics_port_base=free_port_block(16), web_port=free_port(), streams_web_port=free_port(), log_level="WARNING",
    )  # fmt: skip


def _random_text(n: int) -> str:
    # Incompressible: lz4 must not shrink it under Kafka's limit.
    return base64.b64encode(os.urandom(n * 3 // 4)).decode()[:n]


def _run_two_schools(gw: LiveGateway, a_statement) -> tuple[list[requests.Response], list[requests.Response]]:
    start = threading.Barrier(A_THREADS + B_THREADS)

    def school_b() -> list[requests.Response]:
        s = requests.Session()
        start.wait()
        return [s.post(gw.url, json=[statement(id=new_id()) for _ in range(3)], headers=gw.headers("b"), timeout=120)
                for _ in range(B_REQUESTS)]  # fmt: skip

    def school_a() -> list[requests.Response]:
        s = requests.Session()
        start.wait()
        return [s.post(gw.url, json=[statement(id=new_id()), a_statement()], headers=gw.headers("a"), timeout=120)
                for _ in range(A_REQUESTS)]  # fmt: skip

    with ThreadPoolExecutor(A_THREADS + B_THREADS) as pool:
        bs = [pool.submit(school_b) for _ in range(B_THREADS)]
        as_ = [pool.submit(school_a) for _ in range(A_THREADS)]
        return [r for f in as_ for r in f.result()], [r for f in bs for r in f.result()]


def _assert_b_untouched(gw: LiveGateway, b: list[requests.Response], a_words: list[str]) -> None:
    statuses = sorted({r.status_code for r in b})
    assert statuses == [200], f"school B got {statuses}: {[r.text[:200] for r in b if r.status_code != 200][:3]}"
    for r in b:
        assert not any(w in r.text for w in a_words)
    last = b[-1].json()[-1]
    assert gw.wait_readable("b", last).status_code == 200


@pytest.mark.kafka
def test_statements_over_the_limit_fail_alone_with_413_naming_the_statement_limit(chdb_settings):
    with LiveGateway(chdb_settings, ["a", "b"]) as gw:
        limit = gw.config.max_statement_bytes
        a, b = _run_two_schools(gw, lambda: statement(id=new_id(), result={"response": "x" * (5 * 1024 * 1024)}))
        _assert_b_untouched(gw, b, ["bytes", "statement", "too-large"])
        for r in a:
            assert r.status_code == 413, r.text[:300]
            err = r.json()["error"]
            assert err["rule"] == "statement.too-large" and err["path"] == "$[1]"
            assert f"at most {limit} bytes per statement" in err["message"]


@pytest.mark.kafka
def test_records_the_broker_refuses_fail_only_the_request_that_holds_them(chdb_settings):
    # The topic takes less than the gateway's own limits let through (as on a cluster
    # configured by someone else): the broker itself refuses A's records.
    topic = Topic.STATEMENTS.physical(chdb_settings.kafka.topic_prefix)
    admin = KafkaAdminClient(bootstrap_servers=chdb_settings.kafka.bootstrap_servers)
    try:
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs={"max.message.bytes": "600000"})])
    finally:
        admin.close()
    with LiveGateway(chdb_settings, ["a", "b"]) as gw:
        a, b = _run_two_schools(gw, lambda: statement(id=new_id(), result={"response": _random_text(1_000_000)}))
        _assert_b_untouched(gw, b, ["kafka.message-too-large", "MessageSizeTooLarge"])
        for r in a:
            assert r.status_code == 413, r.text[:300]
            assert r.json()["error"]["rule"] == "kafka.message-too-large"
