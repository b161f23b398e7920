"""``mastery evaluate``: reading answers, the split by learner, the scores, the command."""

from __future__ import annotations

import csv
import math
import random

import pytest
from click.testing import CliRunner

from learnpulse.cli import main
from streams.mastery import evaluate as ev
from streams.mastery import logic as m
from tests.unit.streams.test_streams_mastery_fit import generate

MODEL = m.MasteryModel(m.BKTParams())


def test_streams_mastery_evaluate_metrics_by_hand():
    labels = [1, 0, 1, 1, 0]
    scores = [0.9, 0.2, 0.6, 0.6, 0.6]
    # positives 0.9, 0.6, 0.6 vs negatives 0.2, 0.6: 0.9 wins both, each 0.6 wins one and ties one
    assert ev.auc(scores, labels) == pytest.approx((2 + 1.5 + 1.5) / 6)
    assert ev.rmse(scores, labels) == pytest.approx(math.sqrt((0.01 + 0.04 + 0.16 + 0.16 + 0.36) / 5))
    expected = -(math.log(0.9) + math.log(0.8) + 2 * math.log(0.6) + math.log(0.4)) / 5
    assert ev.log_loss(scores, labels) == pytest.approx(expected)
    assert ev.running_accuracy([1, 1, 0]) == [1 / 2, 2 / 3, 3 / 4]


def _write_csv(path, history, header=("learner", "skill", "correct", "order"), shuffle=True):
    rows = [(lr, sk, ok, i) for lr, by in history.items() for sk, seq in by.items() for i, ok in enumerate(seq)]
    if shuffle:
        random.Random(3).shuffle(rows)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def test_streams_mastery_evaluate_reads_a_csv_in_any_row_order(tmp_path):
    history = {"a": {"s1": [0, 1, 1], "s2": [1]}, "b": {"s1": [1, 0]}}
    path = tmp_path / "answers.csv"
    _write_csv(path, history)
    assert ev.history_from_csv(path) == history
    _write_csv(path, history, header=("user_id", "skill_name", "correct", "order_id"))
    assert ev.history_from_csv(path) == history
    path.write_text("learner,skill,correct,order\na,s,yes,1\n")
    with pytest.raises(ValueError, match="line 2: correct must be 0 or 1"):
        ev.history_from_csv(path)
    path.write_text("learner,skill,correct\n")
    with pytest.raises(ValueError, match="no 'order' column"):
        ev.history_from_csv(path)


def _history(forget: float, learners: int, length: int, seed: int) -> ev.History:
    b = m.BKTParams(prior=0.2, learn=0.1, guess=0.2, slip=0.1, forget=forget)
    history: ev.History = {}
    for k, skill in enumerate(("s1", "s2")):
        for i, seq in enumerate(generate(b, learners, length, seed + k)):
            history.setdefault(f"learner-{i}", {})[skill] = seq
    return history


def test_streams_mastery_evaluate_split_is_by_learner_and_seeded():
    learners = [f"l{i}" for i in range(50)]
    train, test = ev.split_learners(learners, 0.2, seed=4)
    assert len(test) == 10 and not set(train) & set(test) and set(train) | set(test) == set(learners)
    assert ev.split_learners(reversed(learners), 0.2, seed=4) == (train, test)
    assert ev.split_learners(learners, 0.2, seed=5) != (train, test)


def test_streams_mastery_evaluate_scores_out_of_sample_and_beats_the_baseline_on_long_sequences():
    result = ev.evaluate(_history(0.03, 60, 150, 11), MODEL, seed=2)
    assert (result.train_learners, result.test_learners) == (48, 12)
    assert result.test_answers == 12 * 2 * 150
    names = [s.model for s in result.scores]
    assert names == ["BKT", "BKT+forgetting", "BKT, chosen per skill", "running accuracy"]
    base, forgetting = result.score("running accuracy"), result.score("BKT+forgetting")
    assert forgetting.auc > base.auc and forgetting.rmse < base.rmse and forgetting.log_loss < base.log_loss
    assert result.score("BKT+forgetting").log_loss <= result.score("BKT").log_loss
    table = result.table()
    assert "BKT+forgetting" in table and "running accuracy" in table


def test_streams_mastery_evaluate_command_on_a_csv(tmp_path):
    path = tmp_path / "answers.csv"
    _write_csv(path, _history(0.0, 30, 40, 21))
    out = CliRunner().invoke(main, ["mastery", "evaluate", "--csv", str(path), "--no-pybkt", "--seed", "3"])
    assert out.exit_code == 0, out.output
    lines = {line.split()[0]: line for line in out.output.splitlines() if line.startswith(("BKT", "running"))}
    assert {"BKT", "BKT+forgetting", "BKT,", "running"} <= set(lines)
    bad = CliRunner().invoke(main, ["mastery", "evaluate", "--no-pybkt"])
    assert bad.exit_code != 0 and "exactly one of --csv" in bad.output


def test_streams_mastery_evaluate_reads_statements_as_the_stream_does(tmp_path):
    import gzip
    import itertools

    import orjson

    from producers.simulator import Simulation, SimulationConfig

    records: list = []
    sim = Simulation(SimulationConfig(seed=3, schools=1, courses_per_school=1, learners_per_course=6, days=14),
                     on_truth=records.append)
    statements = [item.statement for item in itertools.islice(sim, 3000)]
    records.extend(sim.finish())
    path = tmp_path / "statements.jsonl.gz"
    with gzip.open(path, "wb") as f:
        f.writelines(orjson.dumps(s) + b"\n" for s in statements)
    history = ev.history_from_statements_file(path, m.load_model(m.DEFAULT_PARAMS_FILE, None))
    truth = {(f"{t.home_page}|{t.name}", t.skill): (t.opportunities, t.correct)
             for t in records if t.kind == "mastery" and t.opportunities}
    got = {(lr, sk): (len(seq), sum(seq)) for lr, by in history.items() for sk, seq in by.items()}
    assert got == truth
