"""Small helpers around Faust used by every agent.

Batches come from ``stream.take_events``; inside a batch we touch tables for many events,
so each table access runs with *that* event as Faust's current event: Faust picks the
changelog partition and the local RocksDB partition from the current event.
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from typing import Any

import faust
import orjson

# Faust keeps the event being processed in this context variable (faust-streaming 0.15,
# ``faust.streams``); tables read it to choose the partition.
from faust.streams import _current_event

from schemas import metrics
from schemas.deadletter import DeadLetter, source_of
from schemas.errors import InvalidStatement


@contextmanager
def event_context(event: faust.EventT) -> Iterator[None]:
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


def load(table: faust.Table, key: bytes) -> dict[str, Any] | None:
    # One store lookup (``table.get`` asks the store twice: ``in``, then ``[]``).
    try:
        raw = table.data[key]
    except KeyError:
        return None
    return orjson.loads(raw)


class Sender:
    """Sends straight to the producer (aiokafka), in call order.

    Not Faust's ``send_soon`` buffer: its flush before an offset commit gives up after
    0.1 s without progress, while the aiokafka producer's flush waits for every
    acknowledgement, so a committed offset always has its records delivered.
    """

    def __init__(self, app: faust.App) -> None:
        self.app = app

    async def send(
        self, topic: str, key: bytes | None, value: bytes, partition: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> Awaitable[Any]:
        """Queue a record; returns its delivery (awaitable: Kafka's acknowledgement)."""
        return await self.app.producer.send(topic, key, value, partition, None, headers)

    async def dead_letter(self, topic: str, msg: Any, err: InvalidStatement, stage: str) -> Awaitable[Any]:
        """Forward an unprocessable message with its reason (never raise: that would lose it)."""
        metrics.DEADLETTERS.labels("streams", err.rule).inc()
        return await self.send(
            topic,
            msg.key,
            msg.value,
            headers=DeadLetter(err.rule, str(err), source_of(msg.topic, msg.partition, msg.offset), stage).headers(),
        )
