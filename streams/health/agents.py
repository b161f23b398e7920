"""The cohort agent: the cohort feed → ``learnpulse.cohort_health`` and ``learnpulse.alerts``.

The feed is an internal topic keyed by ``school|course|cohort``, so a cohort's learners
(spread over every partition of ``xapi.statements``) meet in one partition here, with
their own table (``cohort-state``) co-partitioned with the feed. Every feed partition
also receives each source partition's watermark; once all source partitions are past a
step boundary, each cohort of the partition is evaluated there — which is how learners
who simply stop sending become disengaged: other traffic moves event time on.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust
import orjson

from schemas import metrics
from schemas.errors import InvalidStatement
from schemas.records import AlertRecord, CohortHealthRecord

from ..config import StreamsConfig
from ..faustutil import Sender, event_context, load
from . import logic

log = logging.getLogger("learnpulse.streams.health")


def sources_key(partition: int) -> bytes:
    """Table key of a feed partition's own state: source watermarks and its cohorts."""
    return b"\x00sources:%d" % partition


def health_record(cs: dict[str, Any], h: logic.Health) -> CohortHealthRecord:
    return CohortHealthRecord(
        cs["school"], cs["course"], cs["cohort"], h.at_ms, h.learners, h.disengaged, h.share,
        h.median_active_ms_7d, h.at_ms,
    )


def alert_record(cs: dict[str, Any], a: logic.AlertChange) -> AlertRecord:
    h = a.health
    return AlertRecord(
        a.alert_id, cs["school"], cs["course"], cs["cohort"], a.state, h.at_ms, a.fired_at_ms, h.learners,
        h.disengaged, h.share, a.threshold, h.disengaged_learners, h.at_ms,
    )


def register(app: faust.App, topics: Any, config: StreamsConfig) -> None:
    feed = topics.cohort_feed
    if topics.cohort_health.partitions != feed.partitions or topics.alerts.partitions != 1:
        raise ValueError("cohort_health must have the cohort feed's partition count and alerts one partition")
    n_sources = topics.statements.partitions
    params = config.health
    table = app.Table("cohort-state", default=None, partitions=feed.partitions, key_type=bytes, value_type=bytes)
    consumed = metrics.MESSAGES_IN.labels("streams", feed.get_topic_name())
    out_health = metrics.MESSAGES_OUT.labels("streams", topics.cohort_health.get_topic_name())
    out_alerts = metrics.MESSAGES_OUT.labels("streams", topics.alerts.get_topic_name())
    sender = Sender(app)
    health_topic = topics.cohort_health.get_topic_name()
    alerts_topic = topics.alerts.get_topic_name()
    dlq_topic = topics.deadletter.get_topic_name()

    def emit_health(cs: dict[str, Any], rec: CohortHealthRecord, pending: list) -> None:
        pending.append((health_topic, rec_key(cs), rec.encode()))
        out_health.inc()
        metrics.COHORT_DISENGAGED_SHARE.labels(cs["school"], cs["course"], cs["cohort"]).set(rec.share)

    def emit_alert(cs: dict[str, Any], rec: AlertRecord, pending: list) -> None:
        pending.append((alerts_topic, rec_key(cs), rec.encode()))
        out_alerts.inc()
        metrics.COHORT_ALERT_ACTIVE.labels(cs["school"], cs["course"], cs["cohort"]).set(
            1 if rec.state == "fired" else 0
        )

    def rec_key(cs: dict[str, Any]) -> bytes:
        return f"{cs['school']}|{cs['course']}|{cs['cohort']}".encode()

    @app.agent(feed, concurrency=1)
    async def cohorts(stream: faust.StreamT) -> None:
        async for events in stream.take_events(config.batch_max, within=config.batch_within_s):
            consumed.inc(len(events))
            by_partition: dict[int, list[faust.EventT]] = {}
            for event in events:
                by_partition.setdefault(event.message.partition, []).append(event)
            deliveries = []
            saves: list[tuple[faust.EventT, dict[bytes, bytes]]] = []
            for partition, evs in by_partition.items():
                pending: list[tuple[str, bytes, bytes]] = []
                dead: list[tuple[Any, InvalidStatement]] = []
                writes: dict[bytes, bytes] = {}
                try:
                    process(partition, evs, pending, dead, writes)
                except Exception:  # keep the worker going; the inputs are replayable and idempotent
                    log.exception("cohort agent failed on feed partition %s", partition)
                    metrics.ERRORS.labels("streams", "cohort_agent").inc()
                    writes.clear()  # nothing half-applied is saved
                for msg, err in dead:
                    deliveries.append(await sender.dead_letter(dlq_topic, msg, err, "streams:cohort"))
                for topic, key, value in pending:
                    # cohort_health has the feed's partition count: a cohort's records stay
                    # in the partition its key hashes to, like the feed's; alerts has one.
                    deliveries.append(await sender.send(topic, key, value, partition if topic == health_topic else 0))
                saves.append((evs[-1], writes))
            # Records first, state second. A step is emitted once, when the watermark passes
            # it; were the state saved first (RocksDB keeps it through a crash) and the
            # process killed before Kafka acknowledged the records, the redelivered feed
            # would find the step done and the records would be lost. Saved after the
            # acknowledgements, a crash at any point leaves either the old state (the step
            # is computed again: same figures, same version) or the new one with its
            # records in Kafka. One round trip per batch.
            if deliveries:
                await asyncio.gather(*deliveries)
            for event, writes in saves:
                with event_context(event):
                    for key, value in writes.items():
                        table[key] = value

    def process(partition: int, evs: list[faust.EventT], pending: list, dead: list, writes: dict[bytes, bytes]) -> None:
        last_event = evs[-1]
        with event_context(last_event):
            srcs = load(table, sources_key(partition)) or {"src": {}, "ck": [], "ge": None}
        cohorts_seen: dict[str, dict[str, Any]] = {}
        dirty: set[str] = set()
        for event in evs:
            msg = event.message
            try:
                doc = orjson.loads(msg.value)
                kind = doc["k"]
                if kind == "wm":
                    srcs["src"][str(doc["src"])] = [doc["wm"], bool(doc["idle"])]
                    continue
                if kind != "bs":
                    raise InvalidStatement("feed.kind", f"unknown feed record kind {kind!r}")
                ck = f"{doc['school']}|{doc['course']}|{doc['cohort']}"
                cs = cohorts_seen.get(ck)
                if cs is None:
                    with event_context(event):
                        cs = load(table, ck.encode())
                    if cs is None:
                        cs = logic.new_cohort(doc["school"], doc["course"], doc["cohort"])
                        srcs["ck"].append(ck)
                    cohorts_seen[ck] = cs
                # One message per cohort and learner-stage batch: [learner, hour, active, last, version]
                for learner, hour, active, last, version in doc["b"]:
                    if logic.merge_bucket(cs, learner, hour, active, last, version, params):
                        dirty.add(ck)
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as err:
                dead.append((msg, InvalidStatement("feed.shape", repr(err))))
            except InvalidStatement as err:
                dead.append((msg, err))
        gw = logic.global_watermark(srcs["src"], n_sources)
        if gw is not None:
            step_at = gw - gw % params.step_ms
            if srcs.get("ge") is None or step_at > srcs["ge"]:
                srcs["ge"] = step_at
                todo = srcs["ck"]
            else:
                # The watermark did not move (or moved back: a partition woke up); cohorts
                # created or fed in this batch still catch up with the others.
                todo = list(cohorts_seen)
            for ck in todo:
                cs = cohorts_seen.get(ck)
                if cs is None:
                    with event_context(last_event):
                        cs = load(table, ck.encode())
                    if cs is None:
                        continue
                    cohorts_seen[ck] = cs
                healths, alerts = logic.advance(cs, srcs["ge"], params)
                for h in healths:
                    emit_health(cs, health_record(cs, h), pending)
                for a in alerts:
                    emit_alert(cs, alert_record(cs, a), pending)
                dirty.add(ck)
        for ck in dirty:
            writes[ck.encode()] = orjson.dumps(cohorts_seen[ck])
        writes[sources_key(partition)] = orjson.dumps(srcs)
