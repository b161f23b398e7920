"""Small helpers around Faust used by every agent.

Batches come from ``stream.take_events``; inside a batch we touch tables for many events,
so each table access runs with *that* event as Faust's current event: Faust picks the
changelog partition and the local RocksDB partition from the current event.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any, Protocol

import faust
import orjson

# Faust keeps the event being processed in this context variable (faust-streaming 0.15,
# ``faust.streams``); tables read it to choose the partition.
from faust.streams import _current_event
from faust.types import TP

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


class StateTable(Protocol):
    """What a stage needs of its Faust table: the local store to read, item assignment to write
    (which also writes the changelog, in the partition of the current event)."""

    @property
    def data(self) -> MutableMapping[bytes, bytes]: ...

    def __setitem__(self, key: bytes, value: bytes) -> None: ...


class Sends(Protocol):
    """What a stage needs to send: :class:`Sender`, or a fake in unit tests."""

    async def send(
        self, topic: str, key: bytes | None, value: bytes, partition: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> Awaitable[Any]: ...

    async def dead_letter(self, topic: str, msg: Any, err: InvalidStatement, stage: str) -> Awaitable[Any]: ...


def committed_offset(app: faust.App, topic: str, partition: int) -> int | None:
    """The offset this worker's consumer last committed for ``topic``/``partition`` (None: none yet).

    faust-streaming 0.15.3 keeps it in ``Consumer._committed_offset`` only: ``ConsumerT`` has no
    public accessor for it (nor for the acknowledged offsets it commits from). The public
    alternatives ask the broker (aiokafka's ``AIOKafkaConsumer.committed``, whose consumer
    Faust also keeps private, or an admin ``OffsetFetch``): a round trip per batch while a
    partition is replayed. Read here only, so an upgrade of Faust has one place to change.
    """
    return app.consumer._committed_offset.get(TP(topic, partition))


async def process_or_stop_commits(app: faust.App, process: Callable[[Any], Awaitable[None]], events: Any) -> None:
    """``await process(events)``; if it raises (not a cancellation: Faust re-reads a rebalance's
    records itself), the worker stops committing before Faust restarts the agent (see
    ``streams.transport.ReadCommittedConsumer.stop_commits``)."""
    try:
        await process(events)
    except Exception as err:
        stop = getattr(app.consumer, "stop_commits", None)
        if stop is not None:
            stop(err)
        raise


class BatchClock:
    """Times an agent's batches and the pauses between them (``learnpulse_stream_batch_seconds``,
    ``learnpulse_stream_batch_pause_seconds``): a commit that held the agent up shows as a long pause."""

    def __init__(self, agent: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.busy = metrics.STREAM_BATCH_SECONDS.labels(agent)
        self.pause = metrics.STREAM_BATCH_PAUSE_SECONDS.labels(agent)
        self.clock = clock
        self.ended: float | None = None  # when the previous batch ended (None: no batch yet)

    async def run(self, process: Callable[[Any], Awaitable[None]], events: Any) -> None:
        """``await process(events)``, timed."""
        started = self.clock()
        if self.ended is not None:
            self.pause.observe(started - self.ended)
        try:
            await process(events)
        finally:
            self.ended = self.clock()
            self.busy.observe(self.ended - started)


def load(table: StateTable, key: bytes) -> dict[str, Any] | None:
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
