"""Each envelope lands on the partition of its learner's key, whichever Kafka client the
gateway's lanes use: kafka-python's key hash (murmur2, as Java's and the streams app's),
over the topic's partitions in order. librdkafka's own default partitioner (CRC32) would put
a learner's statements elsewhere than kafka-python did, so the key's partition is given.
"""

from __future__ import annotations

import pytest
from kafka import KafkaConsumer
from kafka.partitioner.default import murmur2

from schemas.topics import Topic
from tests.unit.gateway.harness import LiveGateway, new_id, statement


@pytest.mark.kafka
@pytest.mark.parametrize("client", ["kafka-python", "librdkafka"])
def test_every_envelope_is_on_its_learners_partition(settings, client):
    settings = settings.model_copy(update={"gateway": settings.gateway.model_copy(update={"kafka_client": client})})
    learners = [f"mailto:p{i}@example.com" for i in range(40)]
    with LiveGateway(settings, ["a"]) as gw:
        assert gw.gateway.sender.params.client == client
        for mbox in learners:
            r = gw.post([statement(id=new_id(), actor={"mbox": mbox})], key="a")
            assert r.status_code == 200, r.text
    topic = Topic.STATEMENTS.physical(settings.kafka.topic_prefix)
    c = KafkaConsumer(topic, bootstrap_servers=settings.kafka.bootstrap_servers, group_id=None,
                      auto_offset_reset="earliest", enable_auto_commit=False, isolation_level="read_committed",
                      consumer_timeout_ms=5000)  # fmt: skip
    try:
        records = list(c)
        partitions = sorted(c.partitions_for_topic(topic))
    finally:
        c.close()
    assert len(partitions) > 1
    assert len(records) == len(learners)
    used = set()
    for m in records:
        assert m.partition == partitions[(murmur2(m.key) & 0x7FFFFFFF) % len(partitions)], m.key
        used.add(m.partition)
    assert len(used) > 1  # forty learners over several partitions: the hash decided, not one default
