"""Small helpers around Faust used by every agent.

Batches come from ``stream.take_events``; inside a batch we touch tables for many events,
so each table access runs with *that* event as Faust's current event: Faust picks the
changelog partition and the local RocksDB partition from the current event.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from functools import partial
from typing import Any, Protocol

import faust
import orjson
import rocksdict

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


class RawSchema(faust.Schema):
    """Key and value as Kafka returned them, without Faust's per-record deserialization.

    With ``key_type=bytes, value_type=bytes`` and the raw codec, Faust 0.15 hands every fetched
    record to the streams through ``Schema.compile``'s decoder: the serializer registry (codec
    lookup, payload preparation) once for the key and once for the value, and
    ``App.create_event``, which reads ``app.conf.Event`` through Faust's settings registry each
    time. All of it returns the bytes unchanged (None stays None), which the stages decode
    themselves (``schemas.envelope``, ``orjson``). Measured with py-spy on one-statement
    envelopes: ~3.7 % of the worker's samples pre-filled. This decoder builds the same event
    (the app's Event class, the message's key, value and headers) in one call.
    """

    def __init__(self) -> None:
        super().__init__(key_type=bytes, value_type=bytes)

    def compile(self, app: Any, *, on_key_decode_error: Any = None, on_value_decode_error: Any = None,
                default_propagate: bool = False) -> Callable[..., Awaitable[Any]]:  # fmt: skip
        event_class = app.conf.Event

        async def decode(message: Any, *, propagate: bool = default_propagate) -> Any:
            return event_class(app, message.key, message.value, message.headers, message)

        return decode


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


class OffsetCoalescingTable(faust.Table):
    """A Faust table that writes its persisted changelog offsets to RocksDB once per group of
    acknowledgements, not once per changelog record (the worker's tables: ``create_app`` makes
    it the app's ``Table``).

    Faust 0.15 (at-least-once, as here: ``app.in_transaction`` is False) writes a partition's
    persisted offset with a RocksDB put in ``Collection._on_changelog_sent``, for every
    acknowledged changelog record: one put per table write (py-spy: ~3.7 % of the worker's
    samples at 1,000 single-statement POSTs/s). Recovery (``faust.tables.recovery``, ``_add``)
    reads a partition's changelog from that offset on: only the highest acknowledged offset
    per partition matters. The first acknowledgement of a group schedules a save
    (``loop.call_soon``) that runs after the acknowledgements already queued with it: those
    of one produce response (a batch per partition) make one put per partition. Saved too at
    a rebalance (before the store closes revoked partitions and recovery reads the offsets)
    and when the table stops.

    Safe: a table write puts the value in RocksDB in the same call that queues its changelog
    record (``ManagedUserDict.__setitem__``), so an acknowledged record's value is in the
    store, and the saved offset is never above an acknowledged one. It lags Faust's by at
    most one event-loop step, not by a time interval: after a SIGKILL, recovery re-applies
    about as much changelog as before. A longer lag would re-apply older changelog records
    over newer values in RocksDB whose own records the kill lost, key by key — a store state
    that is no longer a prefix of the writes, which the cohort stage's write order assumes
    (``streams.health.stored``).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._unsaved_offsets: dict[TP, int] = {}
        self._offsets_closed = False

    def _on_changelog_sent(self, fut: Any) -> None:
        if self.app.in_transaction:  # Faust's own path: saved at each commit
            super()._on_changelog_sent(fut)
            return
        res = fut.result()
        self.note_changelog_offset(res.topic_partition, res.offset)

    def note_changelog_offset(self, tp: TP, offset: int) -> None:
        """Kafka acknowledged the changelog record at ``offset`` (and every one before it in ``tp``)."""
        unsaved = self._unsaved_offsets
        if not unsaved:
            asyncio.get_running_loop().call_soon(self.save_changelog_offsets)
        if offset > unsaved.get(tp, -1):
            unsaved[tp] = offset

    def save_changelog_offsets(self) -> None:
        """Write the highest acknowledged changelog offset of each partition since the last save."""
        if self._offsets_closed or not self._unsaved_offsets:
            return
        unsaved, self._unsaved_offsets = self._unsaved_offsets, {}
        for tp, offset in unsaved.items():
            self.data.set_persisted_offset(tp, offset)

    async def on_rebalance(self, assigned: Any, revoked: Any, newly_assigned: Any, generation_id: int = 0) -> None:
        self.save_changelog_offsets()
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)

    async def on_stop(self) -> None:
        # Before the store stops (mode stops a service, then its children): a put after it
        # would reopen the partition's RocksDB.
        self.save_changelog_offsets()
        self._offsets_closed = True
        await super().on_stop()


def load(table: StateTable, key: bytes) -> dict[str, Any] | None:
    # One store lookup (``table.get`` asks the store twice: ``in``, then ``[]``).
    try:
        raw = table.data[key]
    except KeyError:
        return None
    return orjson.loads(raw)


class StateWrites(Protocol):
    """Saves a batch's table writes: ``(event, key, value)``, each into the partition of its event."""

    async def write(self, writes: list[tuple[Any, bytes, bytes]]) -> None: ...


class PerKeyWrites:
    """Faust's own path, one key at a time (``table[key] = value``): kept for in-memory tables."""

    def __init__(self, table: StateTable) -> None:
        self.table = table

    async def write(self, writes: list[tuple[Any, bytes, bytes]]) -> None:
        table = self.table
        for event, key, value in writes:
            with event_context(event):
                table[key] = value


class ChangelogWrites:
    """A batch's table writes: each key into the local store, its changelog record straight to
    the producer, and the changelog offset the store keeps once per partition.

    Faust's path (``table[key] = value``) costs per key a future message, a trip through its
    producer buffer (whose conductor stops handing records to every agent while more than 100
    wait) and a RocksDB write of the persisted offset when Kafka acknowledges it. A batch
    writes a record per learner it touched, so at ~1,000 statements/s that path held the
    worker's offset commits up for 3-12 s. What Faust does per key is kept: the local store
    first (:func:`store_values`: a write batch per partition), then the record to the
    changelog partition of the event; the offset commit waits
    for the producer's acknowledgements (as for :class:`Sender`); the persisted offset goes
    through :class:`OffsetCoalescingTable` as Faust's own acknowledgements do, once a
    partition's last record of the batch is acknowledged (they are acknowledged in order).
    At least once only (``app.in_transaction`` False, as here).
    """

    def __init__(self, app: faust.App, table: OffsetCoalescingTable) -> None:
        self.app = app
        self.table = table

    async def write(self, writes: list[tuple[Any, bytes, bytes]]) -> None:
        store_values(self.table.data, writes)
        topic = self.table.changelog_topic.get_topic_name()
        send = self.app.producer.send
        last: dict[int, Awaitable[Any]] = {}
        for event, key, value in writes:
            partition = event.message.partition
            last[partition] = await send(topic, key, value, partition, None, None)
        for partition, delivery in last.items():
            # A partition's records are acknowledged in order: its last one stands for all.
            asyncio.ensure_future(delivery).add_done_callback(partial(self._persisted, TP(topic, partition)))

    def _persisted(self, tp: TP, delivery: asyncio.Future) -> None:
        if delivery.cancelled() or delivery.exception() is not None:
            return  # the commit's flush fails too; recovery reads from the previous offset
        self.table.note_changelog_offset(tp, delivery.result().offset)


def store_values(store: Any, writes: list[tuple[Any, bytes, bytes]]) -> None:
    """Put each ``(event, key, value)`` into the local store's partition of its event.

    Faust's RocksDB store (rocksdict) gets each partition's values in one write batch, as
    Faust's own changelog recovery writes them (``Store.apply_changelog_batch``): a put per
    key wrote RocksDB's log once per key (py-spy at 750 single-statement POSTs/s: 8 % of the
    worker in ``Store._set``; ~11 µs a 2 KB value against ~4 µs in a batch). A batch is atomic,
    so the order a stage's save keeps within a partition (``streams.health.stored``; learners
    before their partition's state) holds a fortiori after a kill: all of the partition's
    writes or none. Keys and values are the tables' raw bytes (``key_type=bytes``,
    ``value_type=bytes``, the raw serializer), what Faust's ``_set`` stores. Any other store
    (in memory) is written key by key, as Faust does.
    """
    if not getattr(store, "use_rocksdict", False) or not hasattr(store, "_db_for_partition"):
        for event, key, value in writes:
            with event_context(event):
                store[key] = value
        return
    batches: dict[int, Any] = {}
    key_index = store._key_index  # Faust's key → partition cache, as ``_set`` keeps it
    for event, key, value in writes:
        partition = event.message.partition
        batch = batches.get(partition)
        if batch is None:
            batch = batches[partition] = rocksdict.WriteBatch(raw_mode=True)
        batch.put(key, value)
        key_index[key] = partition
    for partition, batch in batches.items():
        store._db_for_partition(partition).write(batch)


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
