"""Faust's Kafka transport reading only committed records (``isolation_level=read_committed``).

The gateway writes ``xapi.statements`` in Kafka transactions, one per HTTP request batch,
and answers 503 when one aborts: the statements of an aborted transaction stay in the log
but were never accepted, so the stream worker must not count them. The sinks read with
``read_committed``; a Faust worker reads ``read_uncommitted`` (aiokafka's default).

faust-streaming 0.15 has no setting for it: ``AIOKafkaConsumerThread._create_worker_consumer``
asks for ``read_committed`` only when the app runs with
``processing_guarantee="exactly_once"``, which also makes every output a transaction of a
producer per partition — a different delivery design from ours (idempotent records with
deterministic versions) and a large cost per batch. So this module swaps in the smallest
subclass chain Faust allows: the app's transport → its consumer → the consumer's thread,
which builds the aiokafka consumer as Faust does and sets its isolation level before
Faust starts it (aiokafka hands the level to its fetcher in ``start()``).

The same consumer thread also rewinds, after a rebalance, the partitions the group never
committed (see ``seek_to_committed_or_reset``): without it a worker could skip them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiokafka
import faust
from faust.transport.drivers import aiokafka as driver

READ_COMMITTED = "read_committed"


class ReadCommittedConsumerThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka 0.14 keeps the constructor's argument here and reads it in start().
        if getattr(consumer, "_isolation_level", None) not in ("read_uncommitted", READ_COMMITTED):
            raise RuntimeError(f"aiokafka {aiokafka.__version__}: cannot set the consumer's isolation level")
        consumer._isolation_level = READ_COMMITTED
        return consumer

    async def seek_to_committed(self) -> Mapping[Any, int]:
        return await self.call_thread(self._seek_to_committed_or_reset)

    async def _seek_to_committed_or_reset(self) -> Mapping[Any, int]:
        return await seek_to_committed_or_reset(self._ensure_consumer(), self.app.conf.consumer_auto_offset_reset)


async def seek_to_committed_or_reset(consumer: aiokafka.AIOKafkaConsumer, reset: str) -> Mapping[Any, int | None]:
    """``consumer.seek_to_committed()``, also for partitions the group never committed.

    Faust discards records it fetched while a rebalance was under way and relies on this
    seek to fetch them again. aiokafka's ``seek_to_committed`` leaves a partition without
    a committed offset (or committed at 0) where its position is — measured: a worker
    that took over partitions its predecessor had not committed yet had fetched them to
    the end during the rebalance, dropped the records, and never read them (lag unchanged
    for minutes, nothing acknowledged). Such partitions go back to where the reset policy
    (``reset``: earliest or latest) starts a new group.
    """
    committed = await consumer.seek_to_committed()
    never = [tp for tp, offset in committed.items() if offset is None or offset < 0]
    for tp, offset in committed.items():
        if offset == 0:
            consumer.seek(tp, 0)
    if never:
        if reset == "latest":
            await consumer.seek_to_end(*never)
        else:
            await consumer.seek_to_beginning(*never)
    return committed


class ReadCommittedConsumer(driver.Consumer):
    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return ReadCommittedConsumerThread(self, loop=self.loop, beacon=self.beacon)


class ReadCommittedTransport(driver.Transport):
    Consumer = ReadCommittedConsumer


class ReadCommittedApp(faust.App):
    """A Faust app whose worker consumer reads committed records only (producers unchanged)."""

    def _new_transport(self) -> Any:
        return ReadCommittedTransport(self.conf.broker_consumer, self)
