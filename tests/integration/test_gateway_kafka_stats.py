"""librdkafka's statistics of the gateway's lanes on its /metrics (producers.gateway.rdkafka_stats),
from a gateway on real Kafka with a short statistics interval."""

from __future__ import annotations

import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.unit.gateway.harness import LiveGateway, new_id, statement

POSTS = 20


def _samples(gw: LiveGateway, lanes: set[str]) -> dict[str, list]:
    text = gw.http.get(f"http://127.0.0.1:{gw.port}/metrics").text
    found: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith("learnpulse_gateway_kafka_") and s.labels.get("lane") in lanes:
                found.setdefault(s.name, []).append(s)
    return found


@pytest.mark.kafka
def test_the_lanes_librdkafka_statistics_are_served_on_metrics(settings):
    g = settings.gateway.model_copy(update={"kafka_client": "librdkafka", "kafka_statistics_interval_ms": 300})
    settings = settings.model_copy(update={"gateway": g})
    with LiveGateway(settings, ["a"]) as gw:
        lanes = {lane.transactional_id for lane in gw.gateway.sender._lanes}
        for i in range(POSTS):
            r = gw.post([statement(id=new_id(), actor={"mbox": f"mailto:s{i}@example.com"})], key="a")
            assert r.status_code == 200, r.text
        # Statistics come every 300 ms from each lane (served by its commits or its idle poll):
        # wait until they count every record posted, and a round trip was measured (one more
        # POST per round keeps requests going in each interval).
        deadline = time.monotonic() + 120
        posted = POSTS
        while True:
            found = _samples(gw, lanes)
            sent = sum(s.value for s in found.get("learnpulse_gateway_kafka_messages_sent_total", []))
            rtts = found.get("learnpulse_gateway_kafka_broker_rtt_avg_seconds", [])
            if sent >= POSTS and rtts:
                break
            assert time.monotonic() < deadline, f"statistics not served in time: {sorted(found)}"
            r = gw.post([statement(id=new_id(), actor={"mbox": "mailto:more@example.com"})], key="a")
            assert r.status_code == 200, r.text
            posted += 1
            time.sleep(0.3)
    assert POSTS <= sent <= posted  # one record per single-statement POST, none twice
    assert {s.labels["lane"] for s in found["learnpulse_gateway_kafka_queued_messages"]} == lanes
    assert all(s.value >= 0 for s in found["learnpulse_gateway_kafka_queued_messages"])
    assert all(0 < s.value < 60 for s in rtts), rtts
    up = found["learnpulse_gateway_kafka_broker_up"]
    # The one broker of the test Kafka (host:port/id) is up for every lane.
    assert {s.labels["lane"] for s in up if s.labels["broker"].endswith("/1") and s.value == 1} == lanes
    assert sum(s.value for s in found["learnpulse_gateway_kafka_requests_total"]) > 0
    states = {s.labels["state"] for s in found["learnpulse_gateway_kafka_transaction_state"]}
    assert states and states <= {"Ready", "InTransaction", "BeginCommit", "CommittingTransaction",
                                 "CommitNotAcked", "ReadyNotAcked"}, states  # fmt: skip
    assert {s.labels["state"] for s in found["learnpulse_gateway_kafka_idempotence_state"]} == {"Assigned"}
    # The gateway stopped: its lanes' producers closed and their series went with them.
    from producers.gateway.rdkafka_stats import COLLECTOR

    assert not set(COLLECTOR.lanes()) & lanes
