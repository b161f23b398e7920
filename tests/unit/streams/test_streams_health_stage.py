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


class RecordingTable(FakeTable):
    """Keeps every write in order; ``crash_after`` stops the save there, as a SIGKILL would."""

    def __init__(self, data: dict[bytes, bytes] | None = None, crash_after: int | None = None) -> None:
        super().__init__()
        self.data = dict(data or {})
        self.writes: list[tuple[bytes, bytes]] = []
        self.crash_after = crash_after

    def __setitem__(self, key: bytes, value: bytes) -> None:
        if self.crash_after is not None and len(self.writes) >= self.crash_after:
            raise Killed
        self.writes.append((key, value))
        super().__setitem__(key, value)


class Killed(Exception):
    pass


NAMES = [f"{i:064x}" for i in range(1, 201)]


def learner_bucket(name: str, hour: int, active: int, version: int) -> list:
    return [name, hour, active, hour + 60_000, version]


def cohort_feed(partition: int, rows: list[list]) -> Event:
    return feed(partition, {"k": "bs", "school": "s", "course": "c", "cohort": "k", "b": rows})


def test_cohort_stage_a_batch_rewrites_only_the_learners_it_touched():
    # One document per cohort was rewritten whole at every batch that touched it: ~165 bytes
    # per learner, so a cohort of 10,000 learners wrote 1.6 MB of state (and changelog) for
    # a single statement.
    table = RecordingTable()
    stage = CohortStage(table, FakeSender(), TOPICS, CONFIG)
    asyncio.run(stage.process_batch([cohort_feed(2, [learner_bucket(n, T0, 600_000, 1) for n in NAMES])]))
    table.writes.clear()
    asyncio.run(stage.process_batch([cohort_feed(2, [learner_bucket(NAMES[7], T0, 700_000, 2)])]))
    written = sum(len(k) + len(v) for k, v in table.writes)
    assert written < 2_000, [k for k, _ in table.writes]
    assert any(NAMES[7].encode() in k and b"700000" in v for k, v in table.writes)


class CountingReads(dict):
    """A table's local store that counts the learner records read from it."""

    learner_reads = 0

    def __getitem__(self, key: bytes) -> bytes:
        if b"\x00l" in key:
            self.learner_reads += 1
        return super().__getitem__(key)


def test_cohort_stage_a_batch_with_no_step_due_reads_only_the_learners_it_touched():
    # Live traffic feeds every cohort in nearly every batch while the watermark stays within
    # its step: a batch that evaluates no step must not read every member's record (a cohort
    # of 400 learners cost the worker 400 RocksDB reads and decodes per batch).
    table = FakeTable()
    stage = CohortStage(table, FakeSender(), TOPICS, CONFIG)
    first = [cohort_feed(2, [learner_bucket(n, T0, 600_000, 1) for n in NAMES]),
             watermark(2, 0, _hours(2)), watermark(2, 1, _hours(2))]
    asyncio.run(stage.process_batch(first))
    assert orjson.loads(table.data[sources_key(2)])["ge"] == _hours(2)
    table.data = CountingReads(table.data)
    sender = FakeSender()
    stage = CohortStage(table, sender, TOPICS, CONFIG)
    asyncio.run(stage.process_batch([cohort_feed(2, [learner_bucket(NAMES[7], _hours(2), 700_000, 2)]),
                                     watermark(2, 0, _hours(2) + 60_000)]))
    assert table.data.learner_reads <= 1
    assert [t for t, *_ in sender.sent] == []
    # The next step still evaluates every member.
    before = table.data.learner_reads
    asyncio.run(stage.process_batch([watermark(2, 0, _hours(3)), watermark(2, 1, _hours(3))]))
    assert table.data.learner_reads - before >= len(NAMES)
    health = [r for t, _p, r in records(sender) if t == TOPICS.cohort_health]
    assert [(h.at_ms, h.learners) for h in health] == [(_hours(3), len(NAMES))]


def _hours(n: int) -> int:
    return T0 + n * HOUR_MS


def crash_scenario() -> list[list[Event]]:
    """Learners join, steps pass, some stop: every batch after the first advances steps."""
    batches = [[cohort_feed(2, [learner_bucket(n, T0, 600_000, 1) for n in NAMES[:40]])]]
    batches.append([cohort_feed(2, [learner_bucket(n, _hours(1), 300_000, 2) for n in NAMES[:20]]),
                    watermark(2, 0, _hours(3)), watermark(2, 1, _hours(3) + 5)])
    batches.append([cohort_feed(2, [learner_bucket(n, _hours(2), 200_000, 3) for n in NAMES[10:50]]),
                    watermark(2, 0, _hours(4)), watermark(2, 1, _hours(4))])
    batches.append([cohort_feed(2, [learner_bucket(n, _hours(4), 100_000, 4) for n in NAMES[:5]]),
                    watermark(2, 0, _hours(30)), watermark(2, 1, _hours(30))])
    return batches


def kept(sender: FakeSender) -> dict[tuple, object]:
    """What the sinks keep: the record per key; two different records under one key fail."""
    out: dict[tuple, object] = {}
    for topic, _partition, rec in records(sender):
        key = (topic, rec.at_ms, getattr(rec, "state", None))
        assert out.get(key, rec) == rec, f"two different records for {key}"
        out[key] = rec
    return out


def test_cohort_stage_killed_at_any_write_of_a_save_gives_the_same_figures_after_replay():
    # A save writes several keys (the cohort, its learners, the partition's own document);
    # a kill can land between any two. The batch is then delivered again (its offsets were
    # not committed) and every figure must come out as without the kill.
    def run(crash_batch: int | None, crash_after: int | None) -> tuple[dict, dict]:
        table, sender = RecordingTable(), FakeSender()
        for i, events in enumerate(crash_scenario()):
            if i == crash_batch:
                dying = RecordingTable(table.data, crash_after=crash_after)
                try:
                    asyncio.run(CohortStage(dying, sender, TOPICS, CONFIG).process_batch(events))
                except Killed:
                    pass
                table = RecordingTable(dying.data)
            asyncio.run(CohortStage(table, sender, TOPICS, CONFIG).process_batch(events))
        return kept(sender), table.data

    whole, _ = run(None, None)
    assert len(whole) > 5
    for batch_no in range(4):
        table, sender = RecordingTable(), FakeSender()
        for events in crash_scenario()[:batch_no]:
            asyncio.run(CohortStage(table, sender, TOPICS, CONFIG).process_batch(events))
        probe = RecordingTable(table.data)
        asyncio.run(CohortStage(probe, FakeSender(), TOPICS, CONFIG).process_batch(crash_scenario()[batch_no]))
        for crash_after in range(len(probe.writes)):
            figures, _ = run(batch_no, crash_after)
            assert figures == whole, (batch_no, crash_after)


def as_stored_by_an_older_worker(data: dict[bytes, bytes]) -> dict[bytes, bytes]:
    """The same state as workers before 2026-12-06 stored it: one document per cohort, every
    learner inside it without a step of its own (they were advanced with the cohort)."""
    from streams.health.stored import LEARNER_INFIX, MEMBERS_SUFFIX

    old = {k: v for k, v in data.items() if k.startswith(b"\x00")}
    for key, value in data.items():
        if key.startswith(b"\x00") or LEARNER_INFIX in key or key.endswith(MEMBERS_SUFFIX):
            continue
        doc = orjson.loads(value)
        learners = {}
        for name in orjson.loads(data.get(key + MEMBERS_SUFFIX, b"[]")):
            lr = orjson.loads(data[key + LEARNER_INFIX + name.encode()])
            assert lr.pop("e") == doc["eh"], "a whole save leaves every learner at its cohort's step"
            learners[name] = lr
        old[key] = orjson.dumps({"school": doc["school"], "course": doc["course"], "cohort": doc["cohort"],
                                 "L": learners, "eh": doc["eh"], "rec": doc["rec"], "al": doc["al"]})
    return old


def test_cohort_stage_goes_on_from_an_older_workers_documents_even_when_killed_mid_save():
    scenario = crash_scenario()

    def run_from_batch_2(table_data: dict[bytes, bytes], crash_after: int | None) -> tuple[dict, RecordingTable]:
        table, sender = RecordingTable(table_data), FakeSender()
        if crash_after is not None:
            dying = RecordingTable(table.data, crash_after=crash_after)
            try:
                asyncio.run(CohortStage(dying, sender, TOPICS, CONFIG).process_batch(scenario[2]))
            except Killed:
                pass
            table = RecordingTable(dying.data)
        for events in scenario[2:]:
            asyncio.run(CohortStage(table, sender, TOPICS, CONFIG).process_batch(events))
        return kept(sender), table

    table = RecordingTable()
    for events in scenario[:2]:
        asyncio.run(CohortStage(table, FakeSender(), TOPICS, CONFIG).process_batch(events))
    whole, new_form = run_from_batch_2(table.data, None)
    old = as_stored_by_an_older_worker(table.data)
    assert b"s|c|k" in old and len(old) == 2
    from_old, migrated = run_from_batch_2(old, None)
    assert from_old == whole
    assert migrated.data == new_form.data, "the older document is stored in the new form"
    probe = RecordingTable(old)
    asyncio.run(CohortStage(probe, FakeSender(), TOPICS, CONFIG).process_batch(scenario[2]))
    assert len(probe.writes) > 40  # members, 50 learners, the cohort, the partition
    for crash_after in range(len(probe.writes)):
        figures, _ = run_from_batch_2(old, crash_after)
        assert figures == whole, crash_after
