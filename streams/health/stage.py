"""The cohort stage: the cohort feed → ``learnpulse.cohort_health`` and ``learnpulse.alerts``.

The feed is an internal topic keyed by ``school|course|cohort``, so a cohort's learners
(spread over every partition of ``xapi.statements``) meet in one partition here, with
their own table (``cohort-state``) co-partitioned with the feed. Every feed partition
also receives each source partition's watermark; once all source partitions are past a
step boundary, each cohort of the partition is evaluated there — which is how learners
who simply stop sending become disengaged: other traffic moves event time on.

The Faust agent (``streams.health.agents``) is a few lines calling
:meth:`CohortStage.process_batch`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from schemas import metrics
from schemas.errors import InvalidStatement
from schemas.records import AlertRecord, CohortHealthRecord

from ..config import StreamsConfig
from ..faustutil import PerKeyWrites, Sends, StateTable, StateWrites, event_context, load
from . import logic
from .state import CohortDoc, cohort_key
from .stored import StoredCohort

log = logging.getLogger("learnpulse.streams.health")


def sources_key(partition: int) -> bytes:
    """Table key of a feed partition's own state: source watermarks and its cohorts."""
    return b"\x00sources:%d" % partition


def health_record(cs: CohortDoc, h: logic.Health) -> CohortHealthRecord:
    return CohortHealthRecord(
        cs["school"], cs["course"], cs["cohort"], h.at_ms, h.learners, h.disengaged, h.share,
        h.median_active_ms_7d, h.at_ms,
    )


def alert_record(cs: CohortDoc, a: logic.AlertChange) -> AlertRecord:
    h = a.health
    return AlertRecord(
        a.alert_id, cs["school"], cs["course"], cs["cohort"], a.state, h.at_ms, a.fired_at_ms, h.learners,
        h.disengaged, h.share, a.threshold, h.disengaged_learners, h.at_ms,
    )


class FeedSources:
    """A feed partition's own document, stored as ``{"src": {source partition: [watermark ms,
    idle]}, "ck": [its cohort keys, first seen first], "ge": last step evaluated (None: none)}``."""

    __slots__ = ("doc", "_known")

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self._known: set[str] | None = None

    @classmethod
    def new(cls) -> FeedSources:
        return cls({"src": {}, "ck": [], "ge": None})

    @property
    def watermarks(self) -> dict[str, list[Any]]:
        """Source partition (as a string) → ``[watermark ms or None, idle]``."""
        return self.doc["src"]

    def report(self, source: int, watermark: int | None, idle: bool) -> None:
        self.doc["src"][str(source)] = [watermark, idle]

    @property
    def cohort_keys(self) -> list[str]:
        return self.doc["ck"]

    def include(self, ck: str) -> None:
        """List a cohort of the partition (once). Also for a cohort already stored: a kill
        between the cohort's save and this document's left it out, and a cohort left out
        was never evaluated again."""
        if self._known is None:
            self._known = set(self.doc["ck"])
        if ck not in self._known:
            self._known.add(ck)
            self.doc["ck"].append(ck)

    @property
    def evaluated_step(self) -> int | None:
        return self.doc.get("ge")

    @evaluated_step.setter
    def evaluated_step(self, step: int) -> None:
        self.doc["ge"] = step


@dataclass(frozen=True, slots=True)
class CohortTopics:
    feed: str
    cohort_health: str
    alerts: str
    deadletter: str
    source_partitions: int  # of xapi.statements: how many watermarks a feed partition waits for


@dataclass(slots=True)
class FeedPartition:
    """One feed partition's share of a batch: what it read, emits and will save."""

    partition: int
    events: list[Any]
    sources: FeedSources = field(default_factory=FeedSources.new)  # the partition's own state (see sources_key)
    cohorts: dict[str, StoredCohort] = field(default_factory=dict)  # cohort key → state, read in this batch
    pending: list[tuple[str, bytes, bytes]] = field(default_factory=list)  # (topic, key, value) to send
    dead: list[tuple[Any, InvalidStatement]] = field(default_factory=list)
    writes: dict[bytes, bytes] = field(default_factory=dict)


class CohortStage:
    """Cohort feed batches in; health and alert records out; state saved after Kafka acknowledged them."""

    def __init__(self, table: StateTable, sender: Sends, topics: CohortTopics, config: StreamsConfig,
                 state: StateWrites | None = None) -> None:  # fmt: skip
        self.table = table
        self.state = state or PerKeyWrites(table)
        self.sender = sender
        self.topics = topics
        self.params = config.health
        self.consumed = metrics.MESSAGES_IN.labels("streams", topics.feed)
        self.out_health = metrics.MESSAGES_OUT.labels("streams", topics.cohort_health)
        self.out_alerts = metrics.MESSAGES_OUT.labels("streams", topics.alerts)

    async def process_batch(self, events: list[Any]) -> None:
        self.consumed.inc(len(events))
        deliveries: list[Awaitable[Any]] = []
        saves: list[tuple[Any, dict[bytes, bytes]]] = []
        for partition, evs in by_partition(events).items():
            work = FeedPartition(partition, evs)
            try:
                self.process_partition(work)
            except Exception:  # keep the worker going; the inputs are replayable and idempotent
                log.exception("cohort agent failed on feed partition %s", partition)
                metrics.ERRORS.labels("streams", "cohort_agent").inc()
                work.writes.clear()  # nothing half-applied is saved
            await self.send(work, deliveries)
            saves.append((evs[-1], work.writes))
        # Records first, state second. A step is emitted once, when the watermark passes
        # it; were the state saved first (RocksDB keeps it through a crash) and the
        # process killed before Kafka acknowledged the records, the redelivered feed
        # would find the step done and the records would be lost. Saved after the
        # acknowledgements, a crash at any point leaves either the old state (the step
        # is computed again: same figures, same version) or the new one with its
        # records in Kafka. One round trip per batch.
        if deliveries:
            await asyncio.gather(*deliveries)
        await self.save(saves)

    def process_partition(self, work: FeedPartition) -> None:
        with event_context(work.events[-1]):
            stored = load(self.table, sources_key(work.partition))
        work.sources = FeedSources(stored) if stored else FeedSources.new()
        for event in work.events:
            self.read(work, event)
        self.evaluate(work)
        # The partition's own document last: its evaluated step is then never ahead of its cohorts'.
        for stored in work.cohorts.values():
            work.writes.update(stored.writes())
        work.writes[sources_key(work.partition)] = orjson.dumps(work.sources.doc)

    def read(self, work: FeedPartition, event: Any) -> None:
        """One feed record: a source partition's watermark, or a cohort's learner buckets."""
        msg = event.message
        try:
            doc = orjson.loads(msg.value)
            kind = doc["k"]
            if kind == "wm":
                watermark, idle = doc["wm"], bool(doc["idle"])
                work.sources.report(doc["src"], watermark, idle)
                return
            if kind != "bs":
                raise InvalidStatement("feed.kind", f"unknown feed record kind {kind!r}")
            self.merge_buckets(work, event, doc)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            work.dead.append((msg, InvalidStatement("feed.shape", repr(err))))
        except InvalidStatement as err:
            work.dead.append((msg, err))

    def merge_buckets(self, work: FeedPartition, event: Any, doc: dict[str, Any]) -> None:
        ck = f"{doc['school']}|{doc['course']}|{doc['cohort']}"
        stored = work.cohorts.get(ck)
        if stored is None:
            stored = StoredCohort.load(self.table, ck, event) or StoredCohort.new(
                self.table, doc["school"], doc["course"], doc["cohort"], event)
            work.sources.include(ck)
            work.cohorts[ck] = stored
        cs = stored.doc
        # One message per cohort and learner-stage batch: [learner, hour, active, last, version]
        for learner, hour, active, last, version in doc["b"]:
            logic.merge_bucket(cs, learner, hour, active, last, version, self.params)

    def evaluate(self, work: FeedPartition) -> None:
        """Advance the partition's cohorts to the step the global watermark passed."""
        srcs = work.sources
        gw = logic.global_watermark(srcs.watermarks, self.topics.source_partitions)
        if gw is None:
            return
        step_at = gw - gw % self.params.step_ms
        evaluated = srcs.evaluated_step
        if evaluated is None or step_at > evaluated:
            srcs.evaluated_step = evaluated = step_at
            todo = srcs.cohort_keys
        else:
            # The watermark did not move (or moved back: a partition woke up); cohorts
            # created or fed in this batch still catch up with the others.
            todo = list(work.cohorts)
        for ck in todo:
            stored = work.cohorts.get(ck)
            if stored is None:
                stored = StoredCohort.load(self.table, ck, work.events[-1])
                if stored is None:
                    continue
                work.cohorts[ck] = stored
            cs = stored.doc
            healths, alerts = logic.advance(cs, evaluated, self.params)
            for h in healths:
                self.emit_health(work, cs, health_record(cs, h))
            for a in alerts:
                self.emit_alert(work, cs, alert_record(cs, a))

    def emit_health(self, work: FeedPartition, cs: CohortDoc, rec: CohortHealthRecord) -> None:
        work.pending.append((self.topics.cohort_health, cohort_key(cs).encode(), rec.encode()))
        self.out_health.inc()
        metrics.COHORT_DISENGAGED_SHARE.labels(cs["school"], cs["course"], cs["cohort"]).set(rec.share)

    def emit_alert(self, work: FeedPartition, cs: CohortDoc, rec: AlertRecord) -> None:
        work.pending.append((self.topics.alerts, cohort_key(cs).encode(), rec.encode()))
        self.out_alerts.inc()
        metrics.COHORT_ALERT_ACTIVE.labels(cs["school"], cs["course"], cs["cohort"]).set(
            1 if rec.state == "fired" else 0
        )

    async def send(self, work: FeedPartition, deliveries: list[Awaitable[Any]]) -> None:
        for msg, err in work.dead:
            deliveries.append(await self.sender.dead_letter(self.topics.deadletter, msg, err, "streams:cohort"))
        health_topic = self.topics.cohort_health
        for topic, key, value in work.pending:
            # cohort_health has the feed's partition count: a cohort's records stay in the
            # partition its key hashes to, like the feed's; alerts has one.
            deliveries.append(await self.sender.send(topic, key, value, work.partition if topic == health_topic else 0))

    async def save(self, saves: list[tuple[Any, dict[bytes, bytes]]]) -> None:
        await self.state.write([(event, key, value) for event, writes in saves for key, value in writes.items()])


def by_partition(events: Iterable[Any]) -> dict[int, list[Any]]:
    grouped: dict[int, list[Any]] = {}
    for event in events:
        grouped.setdefault(event.message.partition, []).append(event)
    return grouped
