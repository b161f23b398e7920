"""Envelopes: pre-encoded bytes equal the schema's own encoding; bounds on count and bytes."""

from __future__ import annotations

import itertools

from producers.batching import LearnerBatcher
from producers.simulator import Simulation, SimulationConfig
from schemas.envelope import StatementEntry, StatementEnvelope


def test_producers_batching_encoded_bytes_equal_schema_encoding():
    stmts = [i.statement for i in itertools.islice(Simulation(SimulationConfig(seed=2)), 400)]
    plain: list[StatementEnvelope] = []
    encoded: list[tuple[StatementEnvelope, bytes]] = []
    a = LearnerBatcher(plain.append, max_count=7, linger_s=1e9)
    b = LearnerBatcher(lambda e: None, max_count=7, linger_s=1e9, emit_encoded=lambda e, v: encoded.append((e, v)))
    for s in stmts:
        learner = s["actor"]["account"]["name"]
        for batcher in (a, b):
            batcher.add("school-1", learner, 123, StatementEntry("course", "cohort", s))
    a.flush()
    b.flush()
    assert [e for e, _ in encoded] == plain
    assert [v for _, v in encoded] == [e.encode() for e in plain]
    assert all(StatementEnvelope.decode(v) == e for e, v in encoded)
    assert max(len(e.entries) for e in plain) == 7 and sum(len(e.entries) for e in plain) == 400


def test_producers_batching_closes_on_bytes_and_linger():
    now = [0.0]
    out: list[StatementEnvelope] = []
    big = {"id": "x", "pad": "y" * 1000}
    batcher = LearnerBatcher(out.append, max_count=100, max_bytes=2500, linger_s=1.0, clock=lambda: now[0])
    for _ in range(5):
        batcher.add("s", "l", 0, StatementEntry("c", "k", big))
    assert [len(e.entries) for e in out] == [2, 2]  # a third would pass 2500 bytes
    now[0] = 2.0
    batcher.poll()
    assert [len(e.entries) for e in out] == [2, 2, 1]


def test_producers_batching_poll_closes_only_expired_in_opening_order():
    now = [0.0]
    out: list[StatementEnvelope] = []
    batcher = LearnerBatcher(out.append, max_count=100, linger_s=1.0, clock=lambda: now[0])
    batcher.add("s", "a", 0, StatementEntry("c", "k", {"n": 1}))
    now[0] = 0.6
    batcher.add("s", "b", 0, StatementEntry("c", "k", {"n": 2}))
    batcher.add("s", "a", 0, StatementEntry("c", "k", {"n": 3}))  # joins a's open envelope
    now[0] = 1.2
    batcher.poll()
    assert [(e.learner, len(e.entries)) for e in out] == [("a", 2)]
    now[0] = 1.7
    batcher.poll()
    assert [(e.learner, len(e.entries)) for e in out] == [("a", 2), ("b", 1)]


class _ReferenceBatcher:
    """The batcher's rules written plainly (scan every open envelope on poll)."""

    def __init__(self, out, max_count, linger_s, clock):
        self.out, self.max_count, self.linger_s, self.clock = out, max_count, linger_s, clock
        self.open: dict[tuple[str, str], tuple[float, list]] = {}

    def add(self, school, learner, entry):
        key = (school, learner)
        if key not in self.open:
            self.open[key] = (self.clock(), [])
        self.open[key][1].append(entry)
        if len(self.open[key][1]) >= self.max_count:
            self.out.append((learner, len(self.open.pop(key)[1])))

    def poll(self):
        now = self.clock()
        for key in [k for k, (opened, _) in self.open.items() if now - opened >= self.linger_s]:
            self.out.append((key[1], len(self.open.pop(key)[1])))


def test_producers_batching_poll_matches_the_plain_rules_over_a_long_random_run():
    import random

    rng = random.Random(7)
    now = [0.0]
    got: list[tuple[str, int]] = []
    expected: list[tuple[str, int]] = []
    batcher = LearnerBatcher(lambda e: got.append((e.learner, len(e.entries))), max_count=5, linger_s=1.0,
                             clock=lambda: now[0])  # fmt: skip
    reference = _ReferenceBatcher(expected, 5, 1.0, lambda: now[0])
    for step in range(20_000):
        learner = f"l{int(rng.paretovariate(1.2)) % 300}"  # a few busy learners, many quiet ones
        batcher.add("s", learner, 0, StatementEntry("c", "k", {"n": step}))
        reference.add("s", learner, step)
        now[0] += rng.random() * 0.01
        if step % 50 == 0:
            batcher.poll()
            reference.poll()
            assert got == expected
    assert len(batcher._order) <= 2 * len(batcher._open) + 64
    assert sum(n for _, n in got) > 15_000


def test_producers_batching_closes_on_event_time_span():
    def at(minute: int, sid: str) -> StatementEntry:
        hh, mm = divmod(minute, 60)
        return StatementEntry("c", "k", {"id": sid, "timestamp": f"2026-01-01T{hh:02d}:{mm:02d}:30.000Z"})

    out: list[StatementEnvelope] = []
    batcher = LearnerBatcher(out.append, max_count=100, linger_s=1e9, clock=lambda: 0.0, max_span_ms=10 * 60_000)
    # A sparse learner: its statements are far apart in event time, each one closes the last envelope.
    for sid, minute in (("a1", 0), ("a2", 5), ("a3", 10), ("a4", 11), ("a5", 40)):
        batcher.add("s", "sparse", 0, at(minute, sid))
    assert [[e.statement["id"] for e in env.entries] for env in out] == [["a1", "a2", "a3"], ["a4"]]
    # Another learner moves event time on: the open envelope (oldest 00:40) closes at the
    # next poll once the newest statement seen is more than 10 minutes past it; the busy
    # learner's own envelope (00:45-00:51) stays open.
    for sid, minute in (("b1", 45), ("b2", 51)):
        batcher.add("s", "busy", 0, at(minute, sid))
    batcher.poll()
    assert [[e.statement["id"] for e in env.entries] for env in out][2:] == [["a5"]]
    batcher.flush()
    assert [e.statement["id"] for e in out[-1].entries] == ["b1", "b2"]
    # Without the bound nothing closes on event time.
    plain: list[StatementEnvelope] = []
    unbounded = LearnerBatcher(plain.append, max_count=100, linger_s=1e9, clock=lambda: 0.0)
    for sid, minute in (("a1", 0), ("a2", 300)):
        unbounded.add("s", "sparse", 0, at(minute, sid))
    unbounded.poll()
    assert plain == []
