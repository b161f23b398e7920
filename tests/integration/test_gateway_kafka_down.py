"""Kafka stops under the gateway: 503, nothing half-written, and a clean recovery.

Uses a broker of its own (the session broker is shared by every other test), stops it
between requests, then starts it again on the same data and ports.
"""

from __future__ import annotations

import time
import uuid

import orjson
import pytest

from learnpulse.settings import GatewaySettings, KafkaSettings, Settings
from learnpulse.stack import KafkaBroker
from learnpulse.topics import ensure_topics
from tests.conftest import free_port, wait_for, free_port_block
from tests.integration.test_gateway_api import _committed_records
from tests.unit.gateway.harness import LiveGateway, statement


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.parametrize("client", ["kafka-python", "librdkafka"])
def test_gateway_kafka_down_503_nothing_written_then_recovers_exactly(tmp_path, chdb_url, client):
    private = KafkaSettings(port=free_port(), controller_port=free_port(), topic_prefix="down.")
    settings = Settings(
        home=tmp_path / "home",
        kafka=private,
        clickhouse={"url": chdb_url},
        gateway=GatewaySettings(kafka_timeout_s=5, kafka_client=client),
        metrics_port_base=free_port_block(16),
    )
    broker = KafkaBroker(Settings(home=tmp_path / "broker", kafka=private))
    try:
        broker.up(timeout=120)  # inside the try: a start that times out still leaves a process to stop
        ensure_topics(private.bootstrap_servers, private.topic_prefix)
        with LiveGateway(settings, ["a"]) as gw:
            a = [statement(id=str(uuid.uuid4()), actor={"mbox": f"mailto:a{i}@example.com"}) for i in range(5)]
            b = [statement(id=str(uuid.uuid4()), actor={"mbox": f"mailto:b{i}@example.com"}) for i in range(5)]
            c = [statement(id=str(uuid.uuid4()), actor={"mbox": f"mailto:c{i}@example.com"}) for i in range(5)]
            # The gateway answers 503 until its transactional producers are initialized (on a
            # fresh broker the first one also creates the transaction log: many seconds on a
            # loaded machine); a client retries, and so does this test, on the condition.
            assert _post_until_accepted(gw, a, timeout=120).status_code == 200

            broker.stop()
            started = time.monotonic()
            r = gw.post(b, key="a")
            assert r.status_code == 503, r.text
            assert r.json()["error"]["rule"] == "kafka.unavailable"
            assert r.headers["Retry-After"]
            # Answered within its Kafka budget (5 s), not hung: bounded far above it for load.
            assert time.monotonic() - started < 60
            # The ids of the refused request are free: nothing of it was accepted.
            assert gw.gateway.index.reader.get("a", [s["id"] for s in b]) == {}

            broker.up(timeout=120)
            r = _post_until_accepted(gw, c, timeout=120)
            assert r.status_code == 200, r.text
            assert gw.post(b, key="a").status_code == 200  # the retry stores b, once
            for s in a + b + c:
                assert gw.wait_readable("a", s["id"], timeout=90).status_code == 200

            def sunk() -> int:
                (n,) = gw.ch.query("SELECT count() FROM (SELECT DISTINCT statement_id FROM {db}.statements_raw)")
                return int(n[0])

            # Readable by id comes from the accepted-id index, before the sink wrote them.
            wait_for(lambda: sunk() >= 15, 180, "the 15 statements in ClickHouse")
            assert sunk() == 15
        committed = [s["statement"]["id"] for v in _committed_records(settings) for s in orjson.loads(v)["statements"]]
        assert sorted(committed) == sorted(s["id"] for s in a + b + c)
    finally:
        broker.stop()


def _post_until_accepted(gw: LiveGateway, statements: list[dict], timeout: float):
    """POST until the answer is not a 503 (Kafka not ready yet) or ``timeout`` passes; the last answer."""
    deadline = time.monotonic() + timeout
    while (r := gw.post(statements, key="a")).status_code == 503 and time.monotonic() < deadline:
        time.sleep(1)
    return r
