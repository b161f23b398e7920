"""The learner agent: ``xapi.statements`` → engagement and mastery records and the cohort feed.

One agent, one table (``learner-state``, keyed by learner, co-partitioned with
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
from typing import Any

import faust
import orjson
from faust.types import TP

from schemas import metrics
from schemas.envelope import StatementEnvelope
from schemas.errors import InvalidStatement

from ..config import StreamsConfig
from ..faustutil import Sender, event_context, load
from ..mastery.logic import MasteryModel
from .logic import LearnerLogic, Outputs, OwnerIndex, add_pending_void, partition_watermark

log = logging.getLogger("learnpulse.streams.learner")


def part_key(partition: int) -> bytes:
    """Table key of a source partition's own state (never a learner pseudonym: those are hex)."""
    return b"\x00partition:%d" % partition


def register(app: faust.App, topics: Any, config: StreamsConfig, model: MasteryModel, bootstrap: str) -> None:
    src = topics.statements
    for derived in (topics.engagement, topics.mastery, topics.void_feed):
        if derived.partitions != src.partitions:
            raise ValueError(f"{derived.get_topic_name()} must have the partition count of {src.get_topic_name()}")
    n_feed = topics.cohort_feed.partitions
    n_src = src.partitions
    table = app.Table("learner-state", default=None, partitions=src.partitions, key_type=bytes, value_type=bytes)
    logic = LearnerLogic(config, model)
    lag = config.health.watermark_lag_ms
    consumed = metrics.MESSAGES_IN.labels("streams", src.get_topic_name())
    voids_in = metrics.MESSAGES_IN.labels("streams", topics.void_feed.get_topic_name())
    statements = metrics.STREAM_STATEMENTS.labels("learner")
    late = metrics.STREAM_LATE.labels("learner")
    duplicates = metrics.STREAM_DUPLICATES.labels("learner")
    out_counters = {
        name: metrics.MESSAGES_OUT.labels("streams", getattr(topics, name).get_topic_name())
        for name in ("engagement", "mastery", "cohort_feed", "void_feed")
    }
    sender = Sender(app)
    names = {name: getattr(topics, name).get_topic_name() for name in (
        "engagement", "mastery", "cohort_feed", "deadletter", "void_feed", "statements")}
    src_name, void_name = names["statements"], names["void_feed"]
    index = OwnerIndex()

    # Replay after a crash or a rebalance. The table can be ahead of the committed offset
    # (RocksDB keeps what a killed process wrote; a changelog carries what the previous
    # owner wrote after its last commit), while the records of those envelopes may never
    # have reached Kafka: they are re-sent when the envelopes come again (see
    # ``LearnerLogic.reemit``). Until then the partition's watermark, taken from that same
    # table, would run ahead of the cohort buckets it vouches for, and the cohort stage
    # would close hours without them. So a partition reports no watermark until this
    # process has re-read it up to the offset its state had when it took the partition
    # (``replay_to``), or the group's committed offset is past that.
    replay_to: dict[int, int] = {}
    seen: set[int] = set()  # partitions whose state this process has looked at since it took them

    def held_back(partition: int, processed: int | None) -> bool:
        """True while ``partition`` is being replayed (``processed``: its last offset read in this batch)."""
        target = replay_to.get(partition)
        if target is None:
            return False
        committed = app.consumer._committed_offset.get(TP(src_name, partition))  # faust 0.15 bookkeeping
        if (processed is not None and processed >= target) or (committed is not None and committed > target):
            del replay_to[partition]
            return False
        return True

    def took(partition: int, pstate: dict[str, Any]) -> None:
        """First sight of a partition since this process took it: remember how far its state is."""
        if partition not in seen:
            seen.add(partition)
            if pstate.get("o", -1) >= 0:
                replay_to[partition] = pstate["o"]

    # Watermark last reported per source partition, and whether it was reported idle
    # (processing bookkeeping of this process only; a restart simply reports again).
    reported: dict[int, tuple[int | None, bool]] = {}

    def reset() -> None:
        index.reset()
        seen.clear()
        replay_to.clear()
        # Another worker may have reported a partition since this one last did: report
        # afresh whatever this process holds after a rebalance.
        reported.clear()

    @app.on_partitions_revoked.connect
    async def _revoked(_app: Any, revoked: Any, **_kw: Any) -> None:
        reset()

    @app.on_partitions_assigned.connect
    async def _assigned(_app: Any, assigned: Any, **_kw: Any) -> None:
        reset()
        metrics.STREAM_ASSIGNED_PARTITIONS.set(sum(1 for tp in app.consumer.assignment() if tp.topic == src_name))

    async def tick(partition: int, wm: int | None, idle: bool) -> None:
        if reported.get(partition) == (wm, idle):
            return
        reported[partition] = (wm, idle)
        value = orjson.dumps({"k": "wm", "src": partition, "wm": wm, "idle": idle})
        for q in range(n_feed):
            await sender.send(names["cohort_feed"], b"\x00wm", value, partition=q)
        if wm is not None:
            metrics.STREAM_WATERMARK.labels(str(partition)).set(wm / 1000)

    feed_partition: dict[str, int] = {}

    def cohort_partition(ckey: str) -> int:
        # The producer's own partitioner (murmur2, pure Python in aiokafka) costs ~40 µs a
        # call; a cohort's partition never changes, so compute it once per cohort.
        q = feed_partition.get(ckey)
        if q is None:
            if len(feed_partition) > 100_000:
                feed_partition.clear()
            q = feed_partition[ckey] = app.producer.key_partition(names["cohort_feed"], ckey.encode()).partition
        return q

    async def send(out: Outputs, partition_of: dict[str, int], deliveries: list) -> None:
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
            deliveries.append(await sender.send(names["cohort_feed"], ckey.encode(), value, cohort_partition(ckey)))
        # A learner's derived records go to the partition its statements came from: the
        # derived topics have the statements' partition count, so that is the partition
        # the default (murmur2) partitioner would pick for the same key, without hashing.
        for r in out.engagement.values():
            deliveries.append(
                await sender.send(names["engagement"], r.learner.encode(), r.encode(), partition_of[r.learner]))
        for r in out.mastery.values():
            deliveries.append(
                await sender.send(names["mastery"], r.learner.encode(), r.encode(), partition_of[r.learner]))
        out_counters["engagement"].inc(len(out.engagement))
        out_counters["mastery"].inc(len(out.mastery))
        out_counters["cohort_feed"].inc(len(by_cohort))

    def resolve(
        work: dict[int, tuple[list[str], faust.EventT]], states: dict[bytes, list[Any]],
        parts: dict[int, list[Any]], out: Outputs, partition_of: dict[str, int],
    ) -> None:
        """Undo each void target in its owner's state if the partition holds it, else keep it pending."""
        if not index.ready:
            index.build(table.data.items(), states)
        else:
            index.apply(out.observed, partition_of)
        done = len(out.observed)
        for partition, (targets, event) in work.items():
            with event_context(event):
                pheld = parts.get(partition)
                if pheld is None:
                    pheld = parts[partition] = [load(table, part_key(partition)) or {}, event]
                for target in targets:
                    owner = index.owner(target, partition)
                    if owner is not None:
                        key = owner.encode()
                        held = states.get(key)
                        if held is None:
                            held = states[key] = [load(table, key) or {}, event]
                        partition_of[owner] = partition
                        if logic.undo(held[0], "", owner, target, out):
                            continue
                    add_pending_void(pheld[0], target)
        index.apply(out.observed[done:], partition_of)

    @app.agent(app.topic(src_name, void_name, key_type=bytes, value_type=bytes), concurrency=1)
    async def learners(stream: faust.StreamT) -> None:
        async for events in stream.take_events(config.batch_max, within=config.batch_within_s):
            out = Outputs()
            states: dict[bytes, list[Any]] = {}  # key → [state, last event]
            parts: dict[int, list[Any]] = {}
            dead: list[tuple[Any, InvalidStatement]] = []
            partition_of: dict[str, int] = {}
            # Void targets to look for, per partition, with an event of that partition.
            work: dict[int, tuple[list[str], faust.EventT]] = {}
            # Unresolved targets of this batch's own voids, per source partition.
            broadcast: dict[int, list[str]] = {}
            touched: set[int] = set()  # source partitions with envelopes in this batch
            last_read: dict[int, int] = {}  # their last offset in this batch
            n_envelopes = 0
            for event in events:
                msg = event.message
                if msg.topic == void_name:
                    voids_in.inc()
                    try:
                        targets = orjson.loads(msg.value)["t"]
                        if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
                            raise TypeError("targets must be a list of strings")
                    except (orjson.JSONDecodeError, KeyError, TypeError) as err:
                        dead.append((msg, InvalidStatement("void_feed.shape", repr(err))))
                        continue
                    work.setdefault(msg.partition, ([], event))[0].extend(targets)
                    continue
                n_envelopes += 1
                touched.add(msg.partition)
                with event_context(event):
                    pheld = parts.get(msg.partition)
                    if pheld is None:
                        pheld = parts[msg.partition] = [load(table, part_key(msg.partition)) or {}, event]
                        took(msg.partition, pheld[0])
                    pheld[1] = event
                pheld[0]["o"] = max(msg.offset, pheld[0].get("o", -1))
                last_read[msg.partition] = msg.offset
                try:
                    env = StatementEnvelope.decode(msg.value)
                except InvalidStatement as err:
                    dead.append((msg, err))
                    continue
                key = env.learner.encode()
                partition_of[env.learner] = msg.partition
                with event_context(event):
                    held = states.get(key)
                    if held is None:
                        held = states[key] = [load(table, key) or {}, event]
                    held[1] = event
                before = len(out.voids)
                try:
                    logic.apply(held[0], pheld[0], env, msg.offset, out)
                    held[0]["p"] = msg.partition
                except InvalidStatement as err:
                    dead.append((msg, err))
                except Exception as err:  # a bug must not lose the event: keep it in the DLQ
                    log.exception("learner agent failed on %s/%s/%s", msg.topic, msg.partition, msg.offset)
                    dead.append((msg, InvalidStatement("streams.internal", repr(err))))
                if len(out.voids) > before:
                    new = out.voids[before:]
                    work.setdefault(msg.partition, ([], event))[0].extend(new)
                    broadcast.setdefault(msg.partition, []).extend(new)
            consumed.inc(n_envelopes)
            if work:
                resolve(work, states, parts, out, partition_of)
            else:
                index.apply(out.observed, partition_of)
            # Records first, state second (as in the cohort agent). The state forgets what
            # it sent and can no longer change — cohort buckets behind the partition's
            # watermark, engagement hours before the horizon's day — so a redelivered
            # envelope cannot re-emit them (see LearnerLogic.reemit). Saved before Kafka
            # acknowledged those records (RocksDB keeps it through a SIGKILL), they were
            # lost with the process: the cohort stage closed hours without them (issue 12:
            # missing and different cohort_health rows, missing alerts). Saved after, a
            # crash leaves the old state (the envelopes are applied again: same records,
            # same versions) or the new one with its records in Kafka. One round trip a batch.
            deliveries: list = []
            for msg, err in dead:
                deliveries.append(await sender.dead_letter(names["deadletter"], msg, err, "streams:learner"))
            await send(out, partition_of, deliveries)
            if broadcast:
                for q in range(n_src):
                    targets = [t for p, ts in broadcast.items() if p != q for t in ts]
                    if targets:
                        deliveries.append(
                            await sender.send(void_name, b"\x00void", orjson.dumps({"t": targets}), partition=q))
                        out_counters["void_feed"].inc()
            if deliveries:
                await asyncio.gather(*deliveries)
            # Learners before their partitions: a crash between the two leaves partition
            # state behind, never ahead (a redelivered envelope brings its ``mx`` up again).
            for key, (state, event) in states.items():
                with event_context(event):
                    table[key] = orjson.dumps(state)
            for partition, (pstate, event) in parts.items():
                with event_context(event):
                    table[part_key(partition)] = orjson.dumps(pstate)
            for partition in touched:
                if held_back(partition, last_read[partition]):
                    continue
                await tick(partition, partition_watermark(parts[partition][0], lag), False)
            statements.inc(out.statements)
            late.inc(out.late)
            duplicates.inc(out.duplicates)

    probe = GapProbe(bootstrap)
    # Per source partition: (last applied offset, end offset) at the previous tick.
    quiet: dict[Any, tuple[int, int]] = {}

    @app.on_before_shutdown.connect
    async def _close_probe(_app: Any, **_kw: Any) -> None:
        await probe.close()

    @app.timer(interval=1.0)
    async def report_idle_partitions() -> None:
        """A partition read to its end no longer holds the cohort watermark back.

        Read to its end: its last applied envelope is the last record before the end
        offset (the last stable offset: we read committed records only), or what follows
        it is none of ours — transaction markers, aborted records — as a probe of that
        range finds (see :class:`GapProbe`).
        """
        tps = [tp for tp in app.consumer.assignment() if tp.topic == src_name]
        if not tps:
            return
        ends = await app.consumer.highwaters(*tps)
        for tp in tps:
            end = ends.get(tp)
            if end is None:
                continue
            pstate = load(table, part_key(tp.partition)) or {}
            took(tp.partition, pstate)
            if held_back(tp.partition, None):
                continue
            applied = pstate.get("o", -1)
            idle = applied + 1 >= end
            if not idle:
                # Probe only a partition that stood still since the last tick (not one being read).
                if quiet.get(tp) == (applied, end):
                    idle = await probe.only_markers(tp.topic, tp.partition, applied + 1, end)
                quiet[tp] = (applied, end)
            if idle:
                await tick(tp.partition, partition_watermark(pstate, lag), True)


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
