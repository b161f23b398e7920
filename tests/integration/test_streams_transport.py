"""The worker's consumer seek after a rebalance, on the real broker (see ``streams.transport``)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from kafka import KafkaProducer

from schemas.topics import Topic
from streams.transport import seek_to_committed_or_reset

N = 10


@pytest.mark.kafka
def test_streams_seek_rewinds_partitions_the_group_never_committed(kafka):
    from aiokafka import AIOKafkaConsumer, TopicPartition

    topic = Topic.STATEMENTS.physical(kafka.topic_prefix)
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all")
    for partition in (0, 1):
        for i in range(N):
            producer.send(topic, key=b"k", value=b"%d" % i, partition=partition)
    producer.flush(30)
    producer.close()
    never, committed = TopicPartition(topic, 0), TopicPartition(topic, 1)

    async def scenario() -> dict[str, dict[TopicPartition, int]]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=kafka.bootstrap_servers, group_id=f"seek-{uuid.uuid4().hex[:6]}",
            enable_auto_commit=False, auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            consumer.assign([never, committed])
            read = 0
            while read < 2 * N:  # fetched to the end, as a worker does before a rebalance drops the records
                batch = await consumer.getmany(timeout_ms=1000)
                read += sum(len(v) for v in batch.values())
            await consumer.commit({committed: 4})
            positions = {}
            await consumer.seek_to_committed()  # aiokafka alone: the uncommitted partition stays put
            positions["aiokafka"] = {tp: await consumer.position(tp) for tp in (never, committed)}
            await seek_to_committed_or_reset(consumer, "earliest")
            positions["earliest"] = {tp: await consumer.position(tp) for tp in (never, committed)}
            await seek_to_committed_or_reset(consumer, "latest")
            positions["latest"] = {tp: await consumer.position(tp) for tp in (never, committed)}
            return positions
        finally:
            await consumer.stop()

    positions = asyncio.run(scenario())
    assert positions["aiokafka"] == {never: N, committed: 4}, "the premise: aiokafka skips uncommitted partitions"
    assert positions["earliest"] == {never: 0, committed: 4}
    assert positions["latest"] == {never: N, committed: 4}
