"""The learner stage: ``xapi.statements`` → engagement and mastery records and the cohort feed.

One Faust agent (``streams.learner.agents``, a few lines calling :class:`LearnerStage`), one table (``learner-state``, keyed by learner, co-partitioned with
``xapi.statements``). Envelopes are processed in batches (``take_events``): each learner's
state is read once per batch, all its envelopes applied, written back once, and each
derived record sent once per batch (the latest version of its key).

The cohort feed (an internal topic keyed by cohort) receives, per batch and cohort, the
learners' cumulative hourly buckets and, from every source partition, its event-time
watermark; a partition read to its end is reported idle by a timer so it does not hold
the others back.

**Voids by another actor.** A voiding statement is keyed — and so partitioned — by its
own actor, while its target's observation lives in the state of the target's learner,
whose pseudonym the void does not carry. Chosen design: the learner stage resolves it
itself, through a second input co-partitioned with ``xapi.statements``, the internal
*void feed* (``<app id>-void-feed``, read by this same agent):

1. the voiding learner's own state is tried first (same-actor voids, the common case:
   undone at once, deterministically, in statement order);
2. otherwise the target key is looked up, for the envelope's own partition, in an
   in-memory index *statement key → owning learner* of every observation still in an
   undo history (:class:`OwnerIndex`: derived from the table — built from it on first
   need, kept up to date from each batch's observations, dropped at every rebalance, so
   it is exactly as crash-safe as the table itself and costs nothing on the hot path but
   a list append per observation); found → undone in the owner's state; not found →
   remembered as a *pending void* of the partition (bounded: ``mastery.PENDING_VOIDS``
   per partition), which drops the target's observation should it arrive later;
3. and, per batch, the unresolved target keys are sent once to every *other* partition of
   the void feed, where step 2 runs for that partition.

Whatever order a void and its target meet in (target first: observed, then undone; void
first: the observation is dropped), the final mastery figures and versions are the same
(see ``streams.mastery.logic``). Alternatives weighed: a topic of voids keyed by statement
id joined with a table *statement id → learner* costs a changelog write (and a message)
per observation on the hot path; correcting from ClickHouse's ``statement_voids`` would
make the stream read the store it feeds (and chDB allows one process per path) and lag by
the sink's batches. What is not covered: a void arriving after its target left the undo
history (``mastery.HISTORY`` later observations of that skill), or after more than
``PENDING_VOIDS`` other unresolved voids of its partition when it came first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from schemas import metrics
from schemas.envelope import StatementEnvelope
from schemas.errors import InvalidStatement

from ..config import StreamsConfig
from ..faustutil import PerKeyWrites, Sends, StateTable, StateWrites, event_context, load
from ..mastery.logic import MasteryModel
from .logic import LearnerLogic, Outputs, OwnerIndex, add_pending_void, partition_watermark
from .state import LearnerState, PartitionState

log = logging.getLogger("learnpulse.streams.learner")


def part_key(partition: int) -> bytes:
    """Table key of a source partition's own state (never a learner pseudonym: those are hex)."""
    return b"\x00partition:%d" % partition


class Probe(Protocol):
    async def only_markers(self, topic: str, partition: int, start: int, end: int) -> bool: ...


@dataclass(frozen=True, slots=True)
class LearnerTopics:
    """Names of the topics the stage reads and writes, and the partition counts it fans out to."""

    statements: str
    void_feed: str
    engagement: str
    mastery: str
    cohort_feed: str
    deadletter: str
    source_partitions: int
    feed_partitions: int


class LearnerCounters:
    """The stage's Prometheus series, labelled once."""

    __slots__ = ("consumed", "voids_in", "statements", "late", "duplicates", "engagement", "mastery",
                 "cohort_feed", "void_feed")

    def __init__(self, t: LearnerTopics) -> None:
        self.consumed = metrics.MESSAGES_IN.labels("streams", t.statements)
        self.voids_in = metrics.MESSAGES_IN.labels("streams", t.void_feed)
        self.statements = metrics.STREAM_STATEMENTS.labels("learner")
        self.late = metrics.STREAM_LATE.labels("learner")
        self.duplicates = metrics.STREAM_DUPLICATES.labels("learner")
        self.engagement = metrics.MESSAGES_OUT.labels("streams", t.engagement)
        self.mastery = metrics.MESSAGES_OUT.labels("streams", t.mastery)
        self.cohort_feed = metrics.MESSAGES_OUT.labels("streams", t.cohort_feed)
        self.void_feed = metrics.MESSAGES_OUT.labels("streams", t.void_feed)


@dataclass(slots=True)
class Held:
    """A state document read for this batch, and the last event that touched it (its table
    write runs as that event, so Faust picks the event's changelog partition)."""

    state: dict[str, Any]
    event: Any


@dataclass(slots=True)
class Batch:
    """What one batch of events gathers before anything is sent or saved."""

    out: Outputs = field(default_factory=lambda: Outputs(coalesce=True))  # records made once per batch
    learners: dict[bytes, Held] = field(default_factory=dict)  # learner key → its state
    partitions: dict[int, Held] = field(default_factory=dict)  # source partition → its state
    dead: list[tuple[Any, InvalidStatement]] = field(default_factory=list)
    partition_of: dict[str, int] = field(default_factory=dict)  # learner → its source partition
    # Void targets to look for, per partition, with an event of that partition.
    void_work: dict[int, tuple[list[str], Any]] = field(default_factory=dict)
    # Unresolved targets of this batch's own voids, per source partition.
    broadcast: dict[int, list[str]] = field(default_factory=dict)
    touched: set[int] = field(default_factory=set)  # source partitions with envelopes in this batch
    last_read: dict[int, int] = field(default_factory=dict)  # their last offset in this batch
    envelopes: int = 0


class LearnerStage:
    """Envelopes and void-feed messages in, records out, state saved after Kafka acknowledged them.

    ``committed_offset(partition)``: the group's committed offset of a source partition as this
    worker knows it; ``cohort_partition_of(key)``: the cohort feed partition of a cohort key
    (the producer's partitioner). Both are Faust's in the worker, plain functions in tests.
    """

    def __init__(
        self, table: StateTable, sender: Sends, topics: LearnerTopics, config: StreamsConfig, model: MasteryModel,
        *, committed_offset: Callable[[int], int | None], cohort_partition_of: Callable[[bytes], int],
        probe: Probe | None = None, state: StateWrites | None = None,
    ) -> None:
        self.table = table
        self.state = state or PerKeyWrites(table)
        self.sender = sender
        self.topics = topics
        self.logic = LearnerLogic(config, model)
        self.lag = config.health.watermark_lag_ms
        self.step = config.health.step_ms
        self.committed_offset = committed_offset
        self.cohort_partition_of = cohort_partition_of
        self.probe = probe
        self.counters = LearnerCounters(topics)
        self.index = OwnerIndex()
        # Replay after a crash or a rebalance. The table can be ahead of the committed offset
        # (RocksDB keeps what a killed process wrote; a changelog carries what the previous
        # owner wrote after its last commit), while the records of those envelopes may never
        # have reached Kafka: they are re-sent when the envelopes come again (see
        # ``LearnerLogic.reemit``). Until then the partition's watermark, taken from that same
        # table, would run ahead of the cohort buckets it vouches for, and the cohort stage
        # would close hours without them. So a partition reports no watermark until this
        # process has re-read it up to the offset its state had when it took the partition
        # (``replay_to``), or the group's committed offset is past that.
        self.replay_to: dict[int, int] = {}
        self.seen: set[int] = set()  # partitions whose state this process has looked at since it took them
        # Per source partition, the step of the watermark last reported (None: no watermark)
        # and whether it was reported idle (processing bookkeeping of this process only; a
        # restart simply reports again).
        self.reported: dict[int, tuple[int | None, bool]] = {}
        # The producer's own partitioner (murmur2, pure Python in aiokafka) costs ~40 µs a
        # call; a cohort's partition never changes, so compute it once per cohort.
        self.feed_partition: dict[str, int] = {}
        # Per source partition: (last applied offset, end offset) at the previous idle check.
        self.quiet: dict[int, tuple[int, int]] = {}

    # -- partitions: taken, replayed, reported ------------------------------------------
    def reset(self) -> None:
        """Partitions were revoked or assigned: forget what was derived from the old assignment."""
        self.index.reset()
        self.seen.clear()
        self.replay_to.clear()
        # Another worker may have reported a partition since this one last did: report
        # afresh whatever this process holds after a rebalance.
        self.reported.clear()

    def took(self, partition: int, pstate: dict[str, Any]) -> None:
        """First sight of a partition since this process took it: remember how far its state is."""
        if partition not in self.seen:
            self.seen.add(partition)
            offset = PartitionState(pstate).offset
            if offset >= 0:
                self.replay_to[partition] = offset

    def held_back(self, partition: int, processed: int | None) -> bool:
        """True while ``partition`` is being replayed (``processed``: its last offset read in this batch)."""
        target = self.replay_to.get(partition)
        if target is None:
            return False
        committed = self.committed_offset(partition)
        if (processed is not None and processed >= target) or (committed is not None and committed > target):
            del self.replay_to[partition]
            return False
        return True

    async def tick(self, partition: int, wm: int | None, idle: bool) -> None:
        """Report a source partition's watermark to every cohort feed partition, once per step it enters.

        The cohort stage uses the watermarks only for the step their global watermark passed
        (``streams.health.logic.global_watermark``: the lowest or the highest of them, chosen by
        their idle flags), and rounding down to a step commutes with both. So a watermark that
        moved within its step changes nothing there: it is not sent (fed live, every batch
        moves it, and each tick is a message to every feed partition). A change of step or
        of the idle flag is sent at once, after the buckets of the batch that made it.
        """
        if wm is not None:
            metrics.STREAM_WATERMARK.labels(str(partition)).set(wm / 1000)
        reported = (None if wm is None else wm // self.step, idle)
        if self.reported.get(partition) == reported:
            return
        self.reported[partition] = reported
        value = orjson.dumps({"k": "wm", "src": partition, "wm": wm, "idle": idle})
        for q in range(self.topics.feed_partitions):
            await self.sender.send(self.topics.cohort_feed, b"\x00wm", value, partition=q)

    async def report_idle_partitions(self, ends: dict[int, int]) -> None:
        """A partition read to its end (``ends``: end offset per assigned source partition) no
        longer holds the cohort watermark back.

        Read to its end: its last applied envelope is the last record before the end offset
        (the last stable offset: we read committed records only), or what follows it is none
        of ours — transaction markers, aborted records — as the probe of that range finds
        (see :class:`streams.learner.probe.GapProbe`).
        """
        for partition, end in ends.items():
            pstate = load(self.table, part_key(partition)) or {}
            self.took(partition, pstate)
            if self.held_back(partition, None):
                continue
            applied = PartitionState(pstate).offset
            idle = applied + 1 >= end
            if not idle and self.probe is not None:
                # Probe only a partition that stood still since the last tick (not one being read).
                if self.quiet.get(partition) == (applied, end):
                    idle = await self.probe.only_markers(self.topics.statements, partition, applied + 1, end)
                self.quiet[partition] = (applied, end)
            if idle:
                await self.tick(partition, partition_watermark(pstate, self.lag), True)

    # -- one batch ------------------------------------------------------------------------
    async def process_batch(self, events: Iterable[Any]) -> None:
        """Apply a batch of events (``xapi.statements`` envelopes and void-feed messages)."""
        batch = Batch()
        void_feed = self.topics.void_feed
        for event in events:
            if event.message.topic == void_feed:
                self.read_void_targets(event, batch)
            else:
                self.apply_envelope(event, batch)
        self.counters.consumed.inc(batch.envelopes)
        self.resolve_voids(batch)
        self.logic.flush(batch.out)
        # Records first, state second (as in the cohort stage). The state forgets what it
        # sent and can no longer change — cohort buckets behind the partition's watermark,
        # engagement hours before the horizon's day — so a redelivered envelope cannot
        # re-emit them (see LearnerLogic.reemit). Saved before Kafka acknowledged those
        # records (RocksDB keeps it through a SIGKILL), they were lost with the process: the
        # cohort stage closed hours without them (issue 12: missing and different
        # cohort_health rows, missing alerts). Saved after, a crash leaves the old state (the
        # envelopes are applied again: same records, same versions) or the new one with its
        # records in Kafka. One round trip a batch.
        await self.deliver(batch)
        await self.save(batch)
        await self.report_watermarks(batch)
        self.count(batch.out)

    def learner_state(self, batch: Batch, key: bytes, event: Any) -> Held:
        held = batch.learners.get(key)
        if held is None:
            with event_context(event):
                state = load(self.table, key) or {}
            held = batch.learners[key] = Held(state, event)
        return held

    def partition_state(self, batch: Batch, partition: int, event: Any) -> tuple[Held, bool]:
        """The partition's state for this batch, and whether it was read just now."""
        held = batch.partitions.get(partition)
        if held is not None:
            return held, False
        with event_context(event):
            state = load(self.table, part_key(partition)) or {}
        held = batch.partitions[partition] = Held(state, event)
        return held, True

    def read_void_targets(self, event: Any, batch: Batch) -> None:
        """A void-feed message: targets another partition's voids did not find."""
        msg = event.message
        self.counters.voids_in.inc()
        try:
            targets = orjson.loads(msg.value)["t"]
            if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
                raise TypeError("targets must be a list of strings")
        except (orjson.JSONDecodeError, KeyError, TypeError) as err:
            batch.dead.append((msg, InvalidStatement("void_feed.shape", repr(err))))
            return
        batch.void_work.setdefault(msg.partition, ([], event))[0].extend(targets)

    def apply_envelope(self, event: Any, batch: Batch) -> None:
        """An ``xapi.statements`` envelope: applied to its learner's and its partition's state."""
        msg = event.message
        batch.envelopes += 1
        batch.touched.add(msg.partition)
        pheld, first = self.partition_state(batch, msg.partition, event)
        if first:
            self.took(msg.partition, pheld.state)
        pheld.event = event
        PartitionState(pheld.state).read_up_to(msg.offset)
        batch.last_read[msg.partition] = msg.offset
        try:
            env = StatementEnvelope.decode(msg.value)
        except InvalidStatement as err:
            batch.dead.append((msg, err))
            return
        batch.partition_of[env.learner] = msg.partition
        held = self.learner_state(batch, env.learner.encode(), event)
        held.event = event
        out = batch.out
        before = len(out.voids)
        try:
            self.logic.apply(held.state, pheld.state, env, msg.offset, out)
            LearnerState(held.state).partition = msg.partition
        except InvalidStatement as err:
            batch.dead.append((msg, err))
        except Exception as err:  # a bug must not lose the event: keep it in the DLQ
            log.exception("learner agent failed on %s/%s/%s", msg.topic, msg.partition, msg.offset)
            batch.dead.append((msg, InvalidStatement("streams.internal", repr(err))))
        if len(out.voids) > before:
            new = out.voids[before:]
            batch.void_work.setdefault(msg.partition, ([], event))[0].extend(new)
            batch.broadcast.setdefault(msg.partition, []).extend(new)

    def resolve_voids(self, batch: Batch) -> None:
        """Undo each void target in its owner's state if the partition holds it, else keep it pending."""
        out, index = batch.out, self.index
        if not batch.void_work:
            index.apply(out.observed, batch.partition_of)
            return
        if not index.ready:
            index.build(self.table.data.items(), {key: held.state for key, held in batch.learners.items()})
        else:
            index.apply(out.observed, batch.partition_of)
        done = len(out.observed)
        for partition, (targets, event) in batch.void_work.items():
            pheld, _first = self.partition_state(batch, partition, event)
            for target in targets:
                if not self.undo_in_owner(batch, partition, target, event):
                    add_pending_void(pheld.state, target)
        index.apply(out.observed[done:], batch.partition_of)

    def undo_in_owner(self, batch: Batch, partition: int, target: str, event: Any) -> bool:
        owner = self.index.owner(target, partition)
        if owner is None:
            return False
        held = self.learner_state(batch, owner.encode(), event)
        batch.partition_of[owner] = partition
        return self.logic.undo(held.state, "", owner, target, batch.out)

    async def deliver(self, batch: Batch) -> None:
        """Send dead letters, records and void broadcasts; return once Kafka acknowledged them all."""
        deliveries: list[Awaitable[Any]] = []
        for msg, err in batch.dead:
            deliveries.append(await self.sender.dead_letter(self.topics.deadletter, msg, err, "streams:learner"))
        await self.send_records(batch.out, batch.partition_of, deliveries)
        await self.broadcast_voids(batch.broadcast, deliveries)
        if deliveries:
            await asyncio.gather(*deliveries)

    def cohort_partition(self, ckey: str) -> int:
        q = self.feed_partition.get(ckey)
        if q is None:
            if len(self.feed_partition) > 100_000:
                self.feed_partition.clear()
            q = self.feed_partition[ckey] = self.cohort_partition_of(ckey.encode())
        return q

    async def send_records(self, out: Outputs, partition_of: dict[str, int], deliveries: list) -> None:
        t, send = self.topics, self.sender.send
        # Cohort buckets first (the watermark ticks that follow must not overtake them),
        # one message per cohort and batch.
        by_cohort: dict[str, list[list[Any]]] = {}
        for (ckey, learner, hour), b in out.cohort.items():
            group = by_cohort.get(ckey)
            if group is None:
                group = by_cohort[ckey] = []
            group.append([learner, hour, b["a"], b["l"], b["v"]])
        for ckey, buckets in by_cohort.items():
            school, course, cohort = ckey.split("|", 2)
            value = orjson.dumps({"k": "bs", "school": school, "course": course, "cohort": cohort, "b": buckets})
            deliveries.append(await send(t.cohort_feed, ckey.encode(), value, self.cohort_partition(ckey)))
        # A learner's derived records go to the partition its statements came from: the
        # derived topics have the statements' partition count, so that is the partition
        # the default (murmur2) partitioner would pick for the same key, without hashing.
        for r in out.engagement.values():
            deliveries.append(await send(t.engagement, r.learner.encode(), r.encode(), partition_of[r.learner]))
        for r in out.mastery.values():
            deliveries.append(await send(t.mastery, r.learner.encode(), r.encode(), partition_of[r.learner]))
        self.counters.engagement.inc(len(out.engagement))
        self.counters.mastery.inc(len(out.mastery))
        self.counters.cohort_feed.inc(len(by_cohort))

    async def broadcast_voids(self, broadcast: dict[int, list[str]], deliveries: list) -> None:
        """This batch's unresolved void targets, to every other partition of the void feed."""
        if not broadcast:
            return
        for q in range(self.topics.source_partitions):
            targets = [t for p, ts in broadcast.items() if p != q for t in ts]
            if targets:
                deliveries.append(
                    await self.sender.send(self.topics.void_feed, b"\x00void", orjson.dumps({"t": targets}), partition=q))
                self.counters.void_feed.inc()

    async def save(self, batch: Batch) -> None:
        # Learners before their partitions: a crash between the two leaves partition state
        # behind, never ahead (a redelivered envelope brings its ``mx`` up again).
        writes = [(held.event, key, orjson.dumps(held.state)) for key, held in batch.learners.items()]
        writes += [(held.event, part_key(p), orjson.dumps(held.state)) for p, held in batch.partitions.items()]
        await self.state.write(writes)

    async def report_watermarks(self, batch: Batch) -> None:
        for partition in batch.touched:
            if self.held_back(partition, batch.last_read[partition]):
                continue
            await self.tick(partition, partition_watermark(batch.partitions[partition].state, self.lag), False)

    def count(self, out: Outputs) -> None:
        self.counters.statements.inc(out.statements)
        self.counters.late.inc(out.late)
        self.counters.duplicates.inc(out.duplicates)
