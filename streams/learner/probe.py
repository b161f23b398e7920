"""Whether a partition's tail holds anything a read_committed consumer would be given."""

from __future__ import annotations

from typing import Any


class GapProbe:
    """Tells whether a partition range holds records a read_committed consumer would get.

    Transactional producers (the gateway) end every transaction with a marker, and an
    aborted transaction leaves its records in the log: after the last envelope a worker
    applied, the end offset can lie past records it will never be given. A group-less
    consumer of its own reads the range from the first unapplied offset: nothing returned
    and its position at the end means the rest is markers and aborted records. Public
    aiokafka calls only (the worker's own consumer is Faust's, and asking it for a position
    before it has one blocks its thread). A yes is remembered per range.
    """

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.consumer: Any = None
        self.known: set[tuple[str, int, int, int]] = set()

    async def only_markers(self, topic: str, partition: int, start: int, end: int) -> bool:
        if (topic, partition, start, end) in self.known:
            return True
        from aiokafka import AIOKafkaConsumer, TopicPartition

        if self.consumer is None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                isolation_level="read_committed", fetch_max_wait_ms=200, max_partition_fetch_bytes=64 * 1024,
            )
            await consumer.start()
            self.consumer = consumer
        tp = TopicPartition(topic, partition)
        self.consumer.assign([tp])
        self.consumer.seek(tp, start)
        records = await self.consumer.getmany(tp, timeout_ms=500, max_records=1)
        if records.get(tp) or await self.consumer.position(tp) < end:
            return False
        if len(self.known) > 10_000:
            self.known.clear()
        self.known.add((topic, partition, start, end))
        return True

    async def close(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
            self.consumer = None
