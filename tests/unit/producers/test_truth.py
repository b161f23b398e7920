"""Truth records: encode/decode round trip, the JSONL writer, strict decoding; the pacer."""

from __future__ import annotations

import gzip

import pytest

from producers.runner import Pacer
from producers.simulator import Simulation, SimulationConfig
from producers.truth import JsonlTruthWriter
from schemas.errors import InvalidStatement
from schemas.identity import pseudonym
from schemas.truth import (
    TRUTH_COLUMNS,
    LearnerKey,
    TruthMastery,
    decode_record,
    encode_record,
    read_truth,
    truth_row,
)


def _records(n: int = 2000):
    out = []
    sim = Simulation(SimulationConfig(seed=3, schools=1, courses_per_school=1, learners_per_course=6), out.append)
    for _ in zip(range(n), sim):
        pass
    out.extend(sim.finish())
    return out


@pytest.mark.parametrize("name", ["truth.jsonl", "truth.jsonl.gz"])
def test_producers_truth_jsonl_round_trip(tmp_path, name):
    records = _records()
    writer = JsonlTruthWriter(tmp_path / name)
    for r in records:
        writer.write(r)
    assert not (tmp_path / name).exists()  # only visible once closed
    writer.close()
    if name.endswith(".gz"):
        with gzip.open(tmp_path / name) as f:
            assert f.readline().startswith(b'{"v":1')
    truth = read_truth(tmp_path / name)
    assert truth.run in records and truth.run.statements == 2000
    assert len(truth.mastery) == 6 * 5
    assert len(truth.learners) == 6
    assert sorted(map(encode_record, records)) == sorted(
        map(encode_record, [truth.run, *truth.skills, *truth.cohorts, *truth.learners, *truth.mastery, *truth.active])
    )


def test_producers_truth_learner_key_gives_pipeline_pseudonym():
    records = _records(500)
    learner = next(r for r in records if r.kind == "learner")
    key = learner.key
    assert key == LearnerKey(learner.school, learner.home_page, learner.name)
    agent = {"objectType": "Agent", "account": {"homePage": learner.home_page, "name": learner.name}}
    assert pseudonym(b"k", key.agent()) == pseudonym(b"k", agent)


def test_producers_truth_decode_names_the_problem():
    with pytest.raises(InvalidStatement) as err:
        decode_record(b"{nope")
    assert err.value.rule == "truth.json"
    with pytest.raises(InvalidStatement) as err:
        decode_record(b'{"v": 1, "kind": "comet"}')
    assert err.value.rule == "truth.kind"
    with pytest.raises(InvalidStatement) as err:
        decode_record(b'{"v": 1, "kind": "mastery", "school": "s"}')
    assert err.value.rule == "truth.fields"
    with pytest.raises(InvalidStatement) as err:
        decode_record(b'{"v": 9, "kind": "run"}')
    assert err.value.rule == "truth.version"


def test_producers_truth_mastery_known_before():
    m = TruthMastery("s", "c", "h", "n", "k", False, 1_000, 3, 2)
    assert not m.known_before(1_000) and m.known_before(1_001) and m.final_known
    assert TruthMastery("s", "c", "h", "n", "k", True, None, 0, 0).known_before(0)
    assert not TruthMastery("s", "c", "h", "n", "k", False, None, 4, 1).final_known


def test_producers_truth_clickhouse_row_shape():
    records = _records(300)
    for r in records:
        row = truth_row("run-1", r)
        assert len(row) == len(TRUTH_COLUMNS)
        assert decode_record(row[-1]) == r


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


def test_producers_pacer_rate_and_speed():
    clock = _Clock()
    pacer = Pacer(rate=10, clock=clock, sleep=clock.sleep)
    assert pacer.due_in(0, 0) == 0
    assert pacer.due_in(5, 0) == pytest.approx(0.5)
    pacer.wait(20, 0, lambda: None, None)
    assert clock.now == pytest.approx(102.0)

    clock = _Clock()
    pacer = Pacer(speed=60, clock=clock, sleep=clock.sleep)  # a minute of event time per second
    pacer.due_in(0, 1_000_000)
    assert pacer.due_in(1, 1_000_000 + 120_000) == pytest.approx(2.0)
    both = Pacer(rate=1, speed=60, clock=clock, sleep=clock.sleep)
    both.due_in(0, 0)
    assert both.due_in(10, 60_000) == pytest.approx(10.0)  # the rate is the tighter limit here
    with pytest.raises(ValueError):
        Pacer(rate=0)


def test_producers_truth_mastery_with_forgetting():
    forgot = TruthMastery("s", "c", "h", "n", "k", True, None, 9, 5, forgotten=1, forgotten_ms=2_000)
    assert not forgot.final_known
    assert not forgot.known_before(2_001)
    with pytest.raises(ValueError):
        forgot.known_before(1_500)  # before the last forgetting: not in the truth
    relearned = TruthMastery("s", "c", "h", "n", "k", False, 3_000, 9, 5, forgotten=2, forgotten_ms=2_000)
    assert relearned.final_known and relearned.known_before(3_001)


def test_producers_truth_files_written_before_forgetting_still_load():
    old = (b'{"v": 1, "kind": "mastery", "school": "s", "course": "c", "home_page": "h", "name": "n", '
           b'"skill": "k", "initially_known": false, "learned_ms": 5, "opportunities": 3, "correct": 2}')
    m = decode_record(old)
    assert (m.forgotten, m.forgotten_ms, m.final_known) == (0, None, True)
    skill = decode_record(b'{"v": 1, "kind": "skill", "school": "s", "course": "c", "skill": "k", "prior": 0.1, '
                          b'"learn": 0.2, "guess": 0.2, "slip": 0.1}')
    assert skill.forget == 0.0
