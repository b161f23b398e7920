"""The learner agent: ``xapi.statements`` → engagement, mastery, activity records and the cohort feed.

One agent, one table (``learner-state``, keyed by learner, co-partitioned with
``xapi.statements``). Envelopes are processed in batches (``take_events``): each learner's
state is read once per batch, all its envelopes applied, written back once, and each
derived record sent once per batch (the latest version of its key).

The cohort feed (an internal topic keyed by cohort) receives each learner's cumulative
hourly buckets and, from every source partition, its event-time watermark; a partition
read to its end is reported idle by a timer so it does not hold the others back.
"""

from __future__ import annotations

import logging
from typing import Any

import faust
import orjson

from schemas import metrics
from schemas.envelope import StatementEnvelope
from schemas.errors import InvalidStatement

from ..config import StreamsConfig
from ..faustutil import Sender, event_context, load
from ..mastery.logic import MasteryModel
from .logic import LearnerLogic, Outputs, partition_watermark

log = logging.getLogger("learnpulse.streams.learner")


def part_key(partition: int) -> bytes:
    """Table key of a source partition's own state (never a learner pseudonym: those are hex)."""
    return b"\x00partition:%d" % partition


def register(app: faust.App, topics: Any, config: StreamsConfig, model: MasteryModel) -> None:
    src = topics.statements
    for derived in (topics.engagement, topics.mastery, topics.activity):
        if derived.partitions != src.partitions:
            raise ValueError(f"{derived.get_topic_name()} must have the partition count of {src.get_topic_name()}")
    n_feed = topics.cohort_feed.partitions
    table = app.Table("learner-state", default=None, partitions=src.partitions, key_type=bytes, value_type=bytes)
    logic = LearnerLogic(config, model)
    lag = config.health.watermark_lag_ms
    consumed = metrics.MESSAGES_IN.labels("streams", src.get_topic_name())
    statements = metrics.STREAM_STATEMENTS.labels("learner")
    late = metrics.STREAM_LATE.labels("learner")
    out_counters = {
        name: metrics.MESSAGES_OUT.labels("streams", getattr(topics, name).get_topic_name())
        for name in ("engagement", "mastery", "activity", "cohort_feed")
    }
    sender = Sender(app)
    names = {name: getattr(topics, name).get_topic_name() for name in (
        "engagement", "mastery", "activity", "cohort_feed", "deadletter")}
    # Watermark last reported per source partition, and whether it was reported idle
    # (processing bookkeeping of this process only; a restart simply reports again).
    reported: dict[int, tuple[int | None, bool]] = {}

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

    async def send(out: Outputs, partition_of: dict[str, int]) -> None:
        # Cohort buckets first: the watermark ticks that follow must not overtake them.
        for (ckey, _learner, _hour), value in out.cohort.items():
            await sender.send(names["cohort_feed"], ckey.encode(), orjson.dumps(value), cohort_partition(ckey))
        # A learner's derived records go to the partition its statements came from: the
        # derived topics have the statements' partition count, so that is the partition
        # the default (murmur2) partitioner would pick for the same key, without hashing.
        for r in out.engagement.values():
            await sender.send(names["engagement"], r.learner.encode(), r.encode(), partition_of[r.learner])
        for r in out.mastery.values():
            await sender.send(names["mastery"], r.learner.encode(), r.encode(), partition_of[r.learner])
        for r in out.activity.values():
            await sender.send(names["activity"], r.learner.encode(), r.encode(), partition_of[r.learner])
        out_counters["engagement"].inc(len(out.engagement))
        out_counters["mastery"].inc(len(out.mastery))
        out_counters["activity"].inc(len(out.activity))
        out_counters["cohort_feed"].inc(len(out.cohort))

    @app.agent(src, concurrency=1)
    async def learners(stream: faust.StreamT) -> None:
        async for events in stream.take_events(config.batch_max, within=config.batch_within_s):
            consumed.inc(len(events))
            out = Outputs()
            states: dict[bytes, list[Any]] = {}  # key → [state, last event]
            parts: dict[int, list[Any]] = {}
            dead: list[tuple[Any, InvalidStatement]] = []
            partition_of: dict[str, int] = {}
            for event in events:
                msg = event.message
                with event_context(event):
                    pheld = parts.get(msg.partition)
                    if pheld is None:
                        pheld = parts[msg.partition] = [load(table, part_key(msg.partition)) or {}, event]
                    pheld[1] = event
                pheld[0]["o"] = msg.offset
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
                try:
                    logic.apply(held[0], pheld[0], env, msg.offset, out)
                except InvalidStatement as err:
                    dead.append((msg, err))
                except Exception as err:  # a bug must not lose the event: keep it in the DLQ
                    log.exception("learner agent failed on %s/%s/%s", msg.topic, msg.partition, msg.offset)
                    dead.append((msg, InvalidStatement("streams.internal", repr(err))))
            for key, (state, event) in states.items():
                with event_context(event):
                    table[key] = orjson.dumps(state)
            for partition, (pstate, event) in parts.items():
                with event_context(event):
                    table[part_key(partition)] = orjson.dumps(pstate)
            for msg, err in dead:
                await sender.dead_letter(names["deadletter"], msg, err, "streams:learner")
            await send(out, partition_of)
            for partition, (pstate, _event) in parts.items():
                await tick(partition, partition_watermark(pstate, lag), False)
            statements.inc(out.statements)
            late.inc(out.late)

    @app.timer(interval=1.0)
    async def report_idle_partitions() -> None:
        """A partition read to its end no longer holds the cohort watermark back."""
        tps = [tp for tp in app.consumer.assignment() if tp.topic == src.get_topic_name()]
        if not tps:
            return
        ends = await app.consumer.highwaters(*tps)
        for tp in tps:
            end = ends.get(tp)
            if end is None:
                continue
            pstate = load(table, part_key(tp.partition)) or {}
            if pstate.get("o", -1) + 1 >= end:
                await tick(tp.partition, partition_watermark(pstate, lag), True)
