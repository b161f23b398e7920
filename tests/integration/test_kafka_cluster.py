"""A 3-broker Kafka cluster (``learnpulse stack up --brokers 3``): a partition leader SIGKILLed under load.

The cluster runs from the same Maven jars as the single broker, on loopback ports of its own.
Topics are replicated 3 times with ``min.insync.replicas=2``, so with one broker gone the
gateway's transactional, ``acks=all`` writes still complete on the other two, and an
acknowledged statement is on at least two brokers before its client hears 200.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections import Counter

import orjson
import pytest
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType

from learnpulse.settings import GatewaySettings, KafkaSettings, Settings
from learnpulse.stack import kafka_brokers, kafka_up
from learnpulse.topics import ensure_topics
from schemas.topics import Topic
from tests.conftest import free_port_block, wait_for
from tests.integration.test_gateway_api import _committed_records
from tests.unit.gateway.harness import LiveGateway, statement

BEFORE_KILL, AFTER_KILL = 250, 250


def _partitions(admin: KafkaAdminClient, topic: str) -> list[dict]:
    (described,) = admin.describe_topics([topic])
    return sorted(described["partitions"], key=lambda p: p["partition_index"])


def _post_one(gw: LiveGateway, refused: Counter, deadline: float) -> str | None:
    """POST one new learner's statement until it is acknowledged (as a browser retries a 503)."""
    s = statement(id=str(uuid.uuid4()), actor={"mbox": f"mailto:{uuid.uuid4().hex}@example.com"})
    while time.monotonic() < deadline:
        r = gw.post([s], key="a", timeout=60)
        if r.status_code == 200:
            return s["id"]
        refused[r.status_code] += 1
        assert r.status_code == 503, r.text  # never a 500: Kafka's trouble is "try again"
        time.sleep(0.2)
    return None


@pytest.mark.kafka
@pytest.mark.slow
def test_kafka_cluster_leader_killed_under_load_keeps_acknowledging_and_loses_nothing(tmp_path, chdb_url):
    base = free_port_block(6)
    cluster = KafkaSettings(port=base, controller_port=base + 1, brokers=3, topic_prefix="c3.")
    stack = Settings(home=tmp_path / "cluster", kafka=cluster)
    kafka_up(stack, timeout=240)
    brokers = {b.node: b for b in kafka_brokers(stack)}
    topic = Topic.STATEMENTS.physical(cluster.topic_prefix)
    admin = None
    try:
        ensure_topics(cluster.bootstrap_servers, cluster.topic_prefix, cluster.topic_replication)
        admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap_servers, request_timeout_ms=30_000)
        parts = _partitions(admin, topic)
        assert len(parts) == Topic.STATEMENTS.spec.partitions
        assert all(sorted(p["replica_nodes"]) == [1, 2, 3] for p in parts)
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic, ["min.insync.replicas"])])
        assert configs["topic"][topic]["min.insync.replicas"]["value"] == "2"

        settings = Settings(
            home=tmp_path / "home", kafka=cluster, clickhouse={"url": chdb_url},
            gateway=GatewaySettings(kafka_timeout_s=20), metrics_port_base=free_port_block(16),
        )  # fmt: skip
        refused: Counter = Counter()
        acknowledged: list[str] = []
        with LiveGateway(settings, ["a"]) as gw:
            deadline = time.monotonic() + 600
            for _ in range(BEFORE_KILL):
                sid = _post_one(gw, refused, deadline)
                assert sid, f"not acknowledged before the kill; refused {dict(refused)}"
                acknowledged.append(sid)

            leader = _partitions(admin, topic)[0]["leader_id"]
            victim = brokers[leader]
            pid = victim.pid()
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            killed_at = time.monotonic()

            deadline = time.monotonic() + 600
            for _ in range(AFTER_KILL):
                sid = _post_one(gw, refused, deadline)
                assert sid, f"the gateway stopped acknowledging after broker {leader} was killed; refused {dict(refused)}"
                acknowledged.append(sid)
            after_kill_s = time.monotonic() - killed_at

            # The killed broker comes back on its data and rejoins every partition's ISR.
            victim.up(timeout=240)
            wait_for(lambda: all(len(p["isr_nodes"]) == 3 for p in _partitions(admin, topic)), 300,
                     f"broker {leader} back in the ISR of every partition of {topic}")  # fmt: skip

            def sunk() -> int:
                (n,) = gw.ch.query("SELECT count() FROM (SELECT DISTINCT statement_id FROM {db}.statements_raw)")
                return int(n[0])

            wait_for(lambda: sunk() >= len(acknowledged), 300, "every acknowledged statement in ClickHouse")
            in_clickhouse = sunk()

        committed = [s["statement"]["id"] for v in _committed_records(settings) for s in orjson.loads(v)["statements"]]
        counts = Counter(committed)
        lost = set(acknowledged) - set(counts)
        doubled = [sid for sid, n in counts.items() if n > 1]
        assert not lost, f"{len(lost)} acknowledged statements missing from {topic}"
        assert not doubled, f"{len(doubled)} statements committed twice"
        assert set(counts) == set(acknowledged)  # nothing unacknowledged became visible
        assert in_clickhouse == len(acknowledged)
        print(f"broker {leader} killed: {AFTER_KILL} more acknowledged in {after_kill_s:.1f} s; refused meanwhile "
              f"{dict(refused)}; {len(acknowledged)} acknowledged, 0 lost, 0 doubled")  # fmt: skip
    finally:
        if admin is not None:
            admin.close()
        for b in reversed(list(brokers.values())):
            b.stop()
