"""The cohort stage's batches, driven with a fake sender and an in-memory table (no Faust, no Kafka)."""

from __future__ import annotations

import asyncio

import orjson

from schemas.records import AlertRecord, CohortHealthRecord
from streams.config import HOUR_MS, HealthParams, HealthThresholds, StreamsConfig
from streams.health.stage import CohortStage, CohortTopics, sources_key

from .fakes import Event, FakeSender, FakeTable, Message

T0 = 1_767_225_600_000
TOPICS = CohortTopics(feed="cohort-feed", cohort_health="cohort_health", alerts="alerts", deadletter="deadletter",
                      source_partitions=2)
CONFIG = StreamsConfig(health=HealthParams(defaults=HealthThresholds(
    inactive_days=1 / 24, low_active_fraction=0.0, alert_share=0.5, resolve_share=0.2, min_cohort_size=2)))
_offsets = iter(range(10**6))


def feed(partition: int, doc: dict | bytes) -> Event:
    value = doc if isinstance(doc, bytes) else orjson.dumps(doc)
    return Event(Message(TOPICS.feed, partition, next(_offsets), b"k", value))


def buckets(partition: int, *learners: str) -> Event:
    return feed(partition, {"k": "bs", "school": "s", "course": "c", "cohort": "k",
                            "b": [[name, T0, 600_000, T0 + 60_000, 1] for name in learners]})


def watermark(partition: int, src: int, wm: int) -> Event:
    return feed(partition, {"k": "wm", "src": src, "wm": wm, "idle": False})


def batch() -> list[Event]:
    return [buckets(2, "a", "b"), watermark(2, 0, T0 + 2 * HOUR_MS), watermark(2, 1, T0 + 2 * HOUR_MS + 5)]


def records(sender: FakeSender) -> list[tuple[str, int | None, object]]:
    decode = {TOPICS.cohort_health: CohortHealthRecord.decode, TOPICS.alerts: AlertRecord.decode}
    return [(t, p, decode[t](v)) for t, _k, v, p in sender.sent]


def test_cohort_stage_emits_each_step_once_and_saves_only_after_kafka_acknowledged_it():
    table, sender = FakeTable(), FakeSender(acknowledge=False)
    stage = CohortStage(table, sender, TOPICS, CONFIG)
    events = batch()

    async def scenario() -> None:
        task = asyncio.create_task(stage.process_batch(events))
        for _ in range(20):
            await asyncio.sleep(0)
        assert not task.done() and sender.pending
        assert table.data == {}, "nothing is saved before the records are acknowledged"
        for future in sender.pending:
            future.set_result(None)
        await task

    asyncio.run(scenario())
    sent = records(sender)
    health = [r for t, p, r in sent if t == TOPICS.cohort_health]
    assert [(h.at_ms, h.learners, h.disengaged) for h in health] == [(T0 + HOUR_MS, 2, 0), (T0 + 2 * HOUR_MS, 2, 2)]
    assert {p for t, p, _r in sent if t == TOPICS.cohort_health} == {2}  # the feed partition of the cohort
    assert [(p, r.state, r.at_ms) for t, p, r in sent if t == TOPICS.alerts] == [(0, "fired", T0 + 2 * HOUR_MS)]
    assert orjson.loads(table.data[sources_key(2)])["ge"] == T0 + 2 * HOUR_MS
    # Redelivered after the save: the steps are done, nothing again.
    again = FakeSender()
    asyncio.run(CohortStage(table, again, TOPICS, CONFIG).process_batch(events))
    assert again.sent == []
    # Redelivered after a crash before the save: the same records, the same versions.
    replay = FakeSender()
    asyncio.run(CohortStage(FakeTable(), replay, TOPICS, CONFIG).process_batch(events))
    assert records(replay) == sent


def test_cohort_stage_bad_feed_records_go_to_the_dead_letters_and_the_rest_is_applied():
    table, sender = FakeTable(), FakeSender()
    events = [feed(1, b"{no"), feed(1, {"k": "zz"}), watermark(1, 0, T0)]
    asyncio.run(CohortStage(table, sender, TOPICS, CONFIG).process_batch(events))
    assert [(d[2].rule, d[3]) for d in sender.dead] == [("feed.shape", "streams:cohort"), ("feed.kind", "streams:cohort")]
    assert orjson.loads(table.data[sources_key(1)])["src"] == {"0": [T0, False]}
