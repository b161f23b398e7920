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

The consumer also decides which offsets to commit by its own rule (see
``ReadCommittedConsumer._filter_committable_offsets``): Faust's stalls on transaction markers.

Its fetches wait for a few tens of records (``FETCH_MIN_BYTES``, at most ``FETCH_MAX_WAIT_MS``)
instead of returning each trickle of a live feed at once.

And it hands each fetched record to the streams without four asyncio tasks per record
(see ``ReadCommittedConsumer.wait_first``): on one-statement messages that was the largest
single cost of the worker.

And the app's flow control clears the streams' queues only when the flow was suspended (see
:class:`ResumingFlowControl`): mode's cleared them at every resume, dropping the records
fetched at the end of a table recovery.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable, Mapping
from typing import Any

import aiokafka
import faust
from faust.transport.drivers import aiokafka as driver
from mode.services import WaitResults
from mode.utils.objects import cached_property
from mode.utils.queues import FlowControlEvent

READ_COMMITTED = "read_committed"

# A fetch is answered once it holds this many bytes, or after FETCH_MAX_WAIT_MS. Faust asks
# for 1 byte (answered as soon as anything arrived): fed live, a trickle of a few records
# per fetch, each fetch a wake-up of the consumer thread, a hand-over to the event loop and
# a round of Faust's per-fetch bookkeeping. Measured (bench_streams --per-envelope 1
# --rate 1000): ~0.2 CPU-s per 1,000 statements instead of ~0.08 on a pre-filled topic.
# 32 KB is a few tens of one-statement envelopes; at high rates it fills at once (no wait),
# at a trickle a fetch waits at most 50 ms — a quarter of the learner batch window
# (StreamsConfig.batch_within_s), far below the 2 s freshness aim of the rollups.
FETCH_MIN_BYTES = 32 * 1024
FETCH_MAX_WAIT_MS = 50

log = logging.getLogger("learnpulse.streams.transport")


class ReadCommittedConsumerThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka 0.14 keeps the constructor's argument here and reads it in start().
        if getattr(consumer, "_isolation_level", None) not in ("read_uncommitted", READ_COMMITTED):
            raise RuntimeError(f"aiokafka {aiokafka.__version__}: cannot set the consumer's isolation level")
        consumer._isolation_level = READ_COMMITTED
        # Same private attributes, read in start() too (see FETCH_MIN_BYTES).
        if not all(hasattr(consumer, name) for name in ("_fetch_min_bytes", "_fetch_max_wait_ms")):
            raise RuntimeError(f"aiokafka {aiokafka.__version__}: cannot set the consumer's fetch size")
        consumer._fetch_min_bytes = FETCH_MIN_BYTES
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
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


def first_pending_offsets(messages: Iterable[Any]) -> dict[Any, int]:
    """The lowest offset per partition among messages handed to a stream and not yet acknowledged."""
    first: dict[Any, int] = {}
    for message in messages:
        if not message.acked:
            offset = first.get(message.tp)
            if offset is None or message.offset < offset:
                first[message.tp] = message.offset
    return first


def commit_position(acked: Iterable[int], pending: int | None, committed: int | None) -> int | None:
    """The offset to commit for a partition, or None when it would not move.

    ``acked``: offsets processed since the last commit; ``pending``: the lowest offset handed
    to the stream and not processed yet. Records reach the stream in offset order, so every
    record below the highest processed offset under ``pending`` was processed: what else lies
    there are transaction markers, aborted records or compacted-away offsets, none of which a
    consumer is ever given. The position after it is what Kafka's own consumers commit.
    """
    done = [offset for offset in acked if pending is None or offset < pending]
    if not done:
        return None
    position = max(done) + 1
    return position if committed is None or position > committed else None


class Delivery:
    """A fetched record on its way to the streams: the conductor's callback for it, not run yet."""

    __slots__ = ("coro",)

    def __init__(self, coro: Coroutine[Any, Any, Any]) -> None:
        self.coro = coro

    def __await__(self):
        return self.coro.__await__()


async def resume(coro: Coroutine[Any, Any, Any], waiting: Any) -> Any:
    """Run ``coro`` on from where it stopped, awaiting ``waiting`` (the future it yielded; None:
    a bare yield), as the asyncio task running it would have; cancelled, it cancels ``coro``."""
    try:
        while True:
            if waiting is None:
                await asyncio.sleep(0)
            else:
                await asyncio.wait((waiting,))
            try:
                waiting = coro.send(None)
            except StopIteration as done:
                return done.value
    except asyncio.CancelledError as err:
        if waiting is not None:
            waiting.cancel()
        try:
            coro.throw(err)
        except BaseException:  # noqa: BLE001 (it ends, with the cancellation or anything it raised instead)
            pass
        else:
            coro.close()  # it caught the cancellation and waits on: stop it
        raise


class ReadCommittedConsumer(driver.Consumer):
    # Set once a batch failed (see ``stop_commits``); the class default: none failed.
    commits_stopped: BaseException | None = None

    def __init__(self, transport: Any, callback: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(transport, lambda message: Delivery(callback(message)), *args, **kwargs)

    async def wait_first(self, *coros: Any, timeout: Any = None) -> WaitResults:
        """Faust 0.15's fetcher hands every record to the streams as
        ``wait_first(Delivery(callback(record)), suspend_flow.wait())``: a race, so that a
        rebalance (``suspend_flow``) abandons a delivery waiting on flow control or on a full
        buffer. The race costs four asyncio tasks, their cancellations and a few event-loop
        rounds per record — measured the largest single cost of the worker on one-statement
        messages. Nearly every delivery finishes without waiting, so its first step runs
        here; only one that must wait races as before (the same tasks, the rest of it in
        :func:`resume`). A stopped flow keeps Faust's race from the start.

        Private API of faust-streaming 0.15 (``_drain_messages`` is the only caller passing a
        ``Delivery``, built by the callback wrapped in ``__init__``); a Faust without that
        call shape falls through to its own ``wait_first``.
        """
        if coros and isinstance(coros[0], Delivery) and not self.suspend_flow.is_set():
            delivery, rest = coros[0], coros[1:]
            try:
                waiting = delivery.coro.send(None)
            except StopIteration as done:
                for other in rest:
                    if asyncio.iscoroutine(other):
                        other.close()  # the suspend_flow.wait() nobody awaits now
                return WaitResults([delivery], [done.value], False)
            coros = (resume(delivery.coro, waiting), *rest)
        return await super().wait_first(*coros, timeout=timeout)

    async def _add_gap(self, tp: Any, offset_from: int, offset_to: int) -> None:
        """Faust's fetch loop records every hole between two records' offsets (for the gateway's
        single-statement transactions: a marker after every record) in an interval tree, and
        yields to the event loop once per hole. Only Faust's own commit rule reads that tree
        (``_new_offset``), and ``_filter_committable_offsets`` below replaces it: nothing is
        kept, and a record behind a marker costs no extra event-loop round."""
        return None

    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return ReadCommittedConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def stop_commits(self, reason: BaseException) -> None:
        """A batch failed: commit nothing more in this process.

        Faust restarts a failed agent, which goes on with later records, while the failed
        batch's messages may already be gone from the in-flight set (held weakly): the rule
        below would then commit past them. Stopped, the group keeps the last commit and a
        restart of the worker reads them again (and the lag shows it meanwhile).
        """
        if self.commits_stopped is None:
            self.commits_stopped = reason
            log.error("a stream batch failed (%r): this worker commits no more offsets; restart it", reason)

    def _filter_committable_offsets(self, tps: Iterable[Any]) -> dict[Any, int]:
        """Faust 0.15 commits the first run of consecutive acknowledged offsets and records each
        record after a gap twice in its gap list, so behind single-record transactions (a marker
        after every record: what browsers' one-statement requests make) a commit moved a few
        offsets and its lists grew without end (measured: the group's lag grew at 30
        statements/s). Faust has no public hook for the offsets to commit: this override of its
        private method (and its ``_acked``, ``_acked_index``, ``_gap``, ``_committed_offset``,
        ``_unacked_messages``) is tied to faust-streaming 0.15. The position after the last
        processed record is committed instead."""
        if self.commits_stopped is not None:
            return {}
        pending = first_pending_offsets(self._unacked_messages)
        positions: dict[Any, int] = {}
        for tp in tps:
            position = commit_position(self._acked[tp], pending.get(tp), self._committed_offset[tp])
            if position is not None:
                forget_below(self, tp, position)
                positions[tp] = position
        return positions


def forget_below(consumer: Any, tp: Any, position: int) -> None:
    """Drop the acknowledgement and gap bookkeeping of Faust's ``consumer`` that a commit at ``position`` covers."""
    acked = consumer._acked[tp]
    acked[:] = [offset for offset in acked if offset >= position]
    index = consumer._acked_index[tp]
    index.difference_update([offset for offset in index if offset < position])
    consumer._gap[tp].chop(0, position)


class ReadCommittedTransport(driver.Transport):
    Consumer = ReadCommittedConsumer


class ResumingFlowControl(FlowControlEvent):
    """Faust's flow control into the streams' queues, whose ``resume`` clears those queues only
    when the flow was suspended.

    mode's ``FlowControlEvent.resume`` clears every queue made with ``clear_on_resume`` (each
    stream's channel queue, the changelog queue) on every call: meant to drop what was queued
    for the assignment a rebalance revoked. faust-streaming 0.15 calls it again while the flow
    is already running: a table recovery that had changelog records to read resumed the flow
    and started the fetcher (``Recovery._restart_recovery``), and ``on_recovery_completed``
    resumes the stream partitions, awaits the seek to the committed offsets — during which
    the fetcher reads those partitions and the conductor queues their records — and only then
    calls ``flow_control.resume()``, which threw them away. Nothing acknowledged them and the
    consumer's position was past them, so they were never read again. Seen on a worker
    restarted after a SIGKILL with its state directory deleted, under load: consumer group
    Stable, every partition held, recovery completed, the input's lag unchanged for 300 s
    (``kill -USR1`` state dump: Faust's read offsets and aiokafka's positions at the end,
    nothing acknowledged or pending, the agent's queue empty; a log of each delivery showed
    the records queued during "Seek stream partitions to committed offsets"). With records
    arriving after them, our commit rule (``_filter_committable_offsets``) would commit past
    them instead: envelopes lost. Upstream: faust-streaming/faust#596 (open), the same race.

    A rebalance still suspends the flow first (``_on_partitions_revoked``), so the resume
    that ends it still clears what the revoked assignment left queued; and a stream skips an
    event of another generation anyway.
    """

    def resume(self) -> None:
        if self.is_active():
            return  # running already: what the queues hold was fetched for this assignment
        super().resume()


class ReadCommittedApp(faust.App):
    """A Faust app whose worker consumer reads committed records only (producers unchanged),
    with :class:`ResumingFlowControl` as its flow control."""

    def _new_transport(self) -> Any:
        return ReadCommittedTransport(self.conf.broker_consumer, self)

    @cached_property
    def flow_control(self) -> FlowControlEvent:
        return ResumingFlowControl(loop=self.loop)
