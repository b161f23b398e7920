"""The learner stage's batches, driven with a fake sender and an in-memory table (no Faust, no Kafka).

What is checked is the stage's own contract: records before state (state saved only once Kafka
acknowledged the batch's records), redelivery re-emits the same records, a replayed partition
reports no watermark until it is read up to its state, dead letters, voids across partitions.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid

import orjson

from schemas.envelope import StatementEntry, StatementEnvelope
from schemas.profile import SKILL_EXTENSION
from schemas.records import MasteryRecord
from schemas.xapi.timefmt import format_ms
from streams.config import StreamsConfig
from streams.learner.logic import statement_key
from streams.learner.stage import LearnerStage, LearnerTopics, part_key
from streams.mastery.logic import VOIDED_VERB, MasteryModel

from .fakes import Event, FakeSender, FakeTable, Message

T0 = 1_767_225_600_000
M = 60_000
TOPICS = LearnerTopics(
    statements="xapi.statements", void_feed="void-feed", engagement="engagement", mastery="mastery",
    cohort_feed="cohort-feed", deadletter="deadletter", source_partitions=2, feed_partitions=3,
)
_ids = itertools.count(1)


def mastery_records(sender: FakeSender) -> list[MasteryRecord]:
    return [MasteryRecord.decode(v) for _t, _k, v, _p in sender.to(TOPICS.mastery)]


def stage_with(table: FakeTable, sender: FakeSender, committed: dict[int, int] | None = None) -> LearnerStage:
    committed = committed if committed is not None else {}
    return LearnerStage(
        table, sender, TOPICS, StreamsConfig(), MasteryModel(),
        committed_offset=committed.get, cohort_partition_of=lambda key: len(key) % TOPICS.feed_partitions,
    )


def statement(ts: int, success: bool | None = None, voids: str | None = None, sid: str | None = None) -> dict:
    s = {"id": sid or str(uuid.UUID(int=next(_ids))), "verb": {"id": "http://adlnet.gov/expapi/verbs/answered"},
         "timestamp": format_ms(ts),
         "object": {"objectType": "Activity", "id": "https://a/1",
                    "definition": {"extensions": {SKILL_EXTENSION: ["k"]}}}}
    if success is not None:
        s["result"] = {"success": success}
    if voids:
        s["verb"] = {"id": VOIDED_VERB}
        s["object"] = {"objectType": "StatementRef", "id": voids}
    return s


def envelope(partition: int, offset: int, learner: str, *stmts: dict) -> Event:
    env = StatementEnvelope("s", learner, T0, tuple(StatementEntry("C", "k1", x) for x in stmts))
    return Event(Message(TOPICS.statements, partition, offset, env.key, env.encode()))


def run(coro):
    return asyncio.run(coro)


def watermarks(sender: FakeSender) -> list[dict]:
    return [orjson.loads(v) for _t, k, v, _p in sender.to(TOPICS.cohort_feed) if k == b"\x00wm"]


def test_learner_stage_saves_state_only_after_kafka_acknowledged_the_records():
    table, sender = FakeTable(), FakeSender(acknowledge=False)
    stage = stage_with(table, sender)
    events = [envelope(0, 0, "aa01", statement(T0, success=True)), envelope(0, 1, "aa02", statement(T0 + M))]

    async def scenario() -> None:
        task = asyncio.create_task(stage.process_batch(events))
        for _ in range(20):
            await asyncio.sleep(0)
        assert not task.done() and sender.pending, "the batch waits for Kafka's acknowledgements"
        assert table.data == {}, "nothing is saved before the records are acknowledged"
        assert watermarks(sender) == [], "no watermark before the buckets it vouches for are in Kafka"
        for future in sender.pending:
            future.set_result(None)
        await task

    run(scenario())
    assert table.state(b"aa01")["o"] == 0 and table.state(b"aa02")["o"] == 1
    assert table.state(part_key(0))["o"] == 1
    assert {r.learner for r in mastery_records(sender)} == {"aa01"}
    assert {k for _t, k, _v, _p in sender.to(TOPICS.engagement)} == {b"aa01", b"aa02"}
    # The partition's watermark goes to every cohort feed partition, after the buckets.
    ticks = [(s[3], orjson.loads(s[2])) for s in sender.to(TOPICS.cohort_feed) if s[1] == b"\x00wm"]
    assert [q for q, _ in ticks] == [0, 1, 2] and all(t["src"] == 0 and not t["idle"] for _, t in ticks)
    assert sender.to(TOPICS.cohort_feed).index(next(s for s in sender.sent if s[1] == b"\x00wm")) > 0


def test_learner_stage_reports_a_watermark_once_per_step_it_enters():
    """Fed live, every batch moves the partition's watermark; the cohort stage only uses the
    step it passed (an hour), so a move within the step sends nothing and a new step is sent
    at once, to every feed partition."""
    sender = FakeSender()
    stage = stage_with(FakeTable(), sender)
    hour = StreamsConfig().health.step_ms
    lag = StreamsConfig().health.watermark_lag_ms
    assert T0 % hour == 0
    run(stage.process_batch([envelope(0, 0, "aa01", statement(T0))]))  # watermark T0 - lag: the hour before T0
    first = len(watermarks(sender))
    run(stage.process_batch([envelope(0, 1, "aa02", statement(T0 + lag // 2))]))  # still the hour before T0
    within = len(watermarks(sender)) - first
    run(stage.process_batch([envelope(0, 2, "aa03", statement(T0 + 2 * lag))]))  # watermark T0 + lag: T0's hour
    sent = watermarks(sender)
    assert first == TOPICS.feed_partitions and within == 0
    assert [w["wm"] for w in sent[first:]] == [T0 + lag] * TOPICS.feed_partitions
    assert not any(w["idle"] for w in sent)


def test_learner_stage_redelivered_batch_re_emits_the_same_records_and_changes_no_state():
    table, first = FakeTable(), FakeSender()
    events = [envelope(1, 5, "aa01", statement(T0, success=True), statement(T0 + 2 * M, success=False))]
    run(stage_with(table, first).process_batch(events))
    saved = dict(table.data)
    again = FakeSender()  # a restarted worker: the same table, the same envelopes again
    run(stage_with(table, again).process_batch(events))
    assert table.data == saved
    for topic in (TOPICS.engagement, TOPICS.mastery):
        assert again.to(topic) == first.to(topic) and again.to(topic)
    assert [s for s in again.to(TOPICS.cohort_feed) if s[1] != b"\x00wm"] == \
           [s for s in first.to(TOPICS.cohort_feed) if s[1] != b"\x00wm"]


def test_learner_stage_replayed_partition_reports_no_watermark_until_read_up_to_its_state():
    table = FakeTable()
    events = [envelope(0, 0, "aa01", statement(T0)), envelope(0, 1, "aa02", statement(T0 + 3 * 3_600_000))]
    run(stage_with(table, FakeSender()).process_batch(events))
    # Restarted: the state says offset 1; the group committed nothing, so offset 0 comes again.
    sender = FakeSender()
    stage = stage_with(table, sender)
    run(stage.process_batch(events[:1]))
    assert watermarks(sender) == []
    run(stage.process_batch(events[1:]))
    assert watermarks(sender) and watermarks(sender)[0]["src"] == 0


def test_learner_stage_a_committed_offset_past_the_state_releases_the_watermark():
    table = FakeTable()
    run(stage_with(table, FakeSender()).process_batch([envelope(0, 3, "aa01", statement(T0))]))
    held, released = FakeSender(), FakeSender()
    run(stage_with(table, held, committed={}).report_idle_partitions({0: 4}))
    run(stage_with(table, released, committed={0: 4}).report_idle_partitions({0: 4}))
    assert watermarks(held) == []
    assert [w["idle"] for w in watermarks(released)] == [True] * TOPICS.feed_partitions


def test_learner_stage_a_bad_envelope_goes_to_the_dead_letters_and_its_offset_is_passed():
    table, sender = FakeTable(), FakeSender()
    bad = Event(Message(TOPICS.statements, 1, 9, b"aa01", b"{not json"))
    void_feed_junk = Event(Message(TOPICS.void_feed, 1, 0, b"\x00void", b'{"t": 3}'))
    run(stage_with(table, sender).process_batch([bad, void_feed_junk]))
    assert [(d[0], d[2].rule, d[3]) for d in sender.dead] == [
        ("deadletter", "envelope.json", "streams:learner"), ("deadletter", "void_feed.shape", "streams:learner")]
    assert table.state(part_key(1))["o"] == 9


def test_learner_stage_voids_another_learners_answer_held_by_another_partition():
    table = FakeTable()
    answer = statement(T0, success=True)
    stage = stage_with(table, FakeSender())
    run(stage.process_batch([envelope(0, 0, "aa01", answer, statement(T0 + M, success=True))]))
    # An instructor (partition 1) voids aa01's first answer: not found there, broadcast to partition 0.
    sender = FakeSender()
    stage.sender = sender
    run(stage.process_batch([envelope(1, 0, "bb02", statement(T0 + 2 * M, voids=answer["id"]))]))
    broadcast = sender.to(TOPICS.void_feed)
    assert [(p, orjson.loads(v)) for _t, _k, v, p in broadcast] == [(0, {"t": [statement_key(answer["id"])]})]
    assert mastery_records(sender) == []
    # The void feed brings it to partition 0, where aa01's observation is undone.
    undone = FakeSender()
    stage.sender = undone
    _topic, key, value, partition = broadcast[0]
    run(stage.process_batch([Event(Message(TOPICS.void_feed, partition, 0, key, value))]))
    (record,) = mastery_records(undone)
    assert record.learner == "aa01" and record.observations == 1
    assert table.state(b"aa01")["k"]["k"]["n"] == 1
