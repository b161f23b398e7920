"""Accuracy against the simulator's ground truth, through the real pipeline.

simulator (with truth) → Kafka → worker → derived topics, and the sinks → ClickHouse
(chDB) for ``mastery fit``. Checked against what the simulator planted:

- active time per learner × day vs the true active time;
- mastery: AUC of next-answer prediction — BKT with the shipped parameters, with
  parameters fitted by ``mastery fit`` (EM) from the ClickHouse history, the simulator's
  true parameters (the ceiling), and a baseline fitted here (the learner's running
  accuracy on the skill), and pyBKT fitted on the same answers (pyBKT 1.4.3 fails with
  NumPy 2 / scikit-learn ≥ 1.6, so it runs in a virtualenv of its own, ``.venv-pybkt``);
- the pipeline's final P(mastery) vs the true final state (AUC);
- disengagement alerts: precision/recall over the cohorts the simulator made disengage.

The figures are printed (``pytest -s``) and bounded by what a working model must reach.
"""

from __future__ import annotations

import csv
import itertools
import json
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

from learnpulse.local_secrets import pseudonym_key
from learnpulse.pipeline import open_clickhouse, run_simulator, start_sinks
from learnpulse.settings import ClickHouseSettings
from producers.simulator import Simulation, SimulationConfig
from schemas.identity import pseudonym
from schemas.profile import SchoolProfile
from schemas.topics import Topic
from schemas.truth import Truth
from streams.config import DAY_MS
from streams.mastery.fit import fit_from_clickhouse
from streams.mastery.logic import (
    DEFAULT_PARAMS_FILE, BKTParams, load_model, log_odds, observation, predict_correct, probability, update,
)
from streams.timeparse import timestamp_ms
from tests.conftest import free_port, wait_for
from tests.integration.streams_support import DerivedReader, stream_settings

SIM = SimulationConfig(seed=5, schools=2, courses_per_school=2, learners_per_course=24, cohorts_per_course=2,
                       days=42, disengaging_share=0.5, sessions_per_day=1.2)
DAYS = 42
REPO = Path(__file__).resolve().parents[2]


def auc(scores: list[float], labels: list[int]) -> float:
    """Area under the ROC curve (Mann–Whitney, ties counted half)."""
    pairs = sorted(zip(scores, labels))
    pos = sum(labels)
    neg = len(labels) - pos
    rank_sum = 0.0
    i = 0
    while i < len(pairs):
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            j += 1
        avg_rank = (i + 1 + j) / 2
        rank_sum += avg_rank * sum(lab for _s, lab in pairs[i:j])
        i = j
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)


class _Truth:
    def __init__(self) -> None:
        self.records = []

    def write(self, record) -> None:
        self.records.append(record)

    def close(self) -> None:
        pass


def _pybkt_predictions(answers: Path, out: Path) -> list[float]:
    """pyBKT's next-answer predictions, from its own virtualenv (see deploy/pybkt)."""
    python = REPO / ".venv-pybkt" / "bin" / "python"
    assert python.exists(), f"{python} missing: `make setup` makes it (deploy/pybkt/requirements.txt)"
    subprocess.run([str(python), str(Path(__file__).with_name("pybkt_compare.py")), str(answers), str(out)],
                   check=True, timeout=600)
    return json.loads(out.read_text())["predictions"]


@pytest.mark.kafka
@pytest.mark.slow
def test_streams_accuracy_against_simulator_truth(tmp_path, kafka, chdb_url, spawn):
    settings = stream_settings(tmp_path, kafka).model_copy(
        update={"clickhouse": ClickHouseSettings(url=chdb_url)}
    )
    sink = _Truth()
    until = SIM.start_ms + DAYS * DAY_MS
    sent = run_simulator(settings, SIM, count=None, rate=None, until_ms=until, truth=sink)
    truth = Truth.of(sink.records)
    assert truth.run is not None and truth.run.statements == sent

    worker = spawn(["worker", "--web-port", str(free_port())], settings, "worker",
                   extra_env={"LEARNPULSE_METRICS_PORT": str(free_port())})
    ch = open_clickhouse(settings)
    sinks = start_sinks(settings, ch)
    reader = DerivedReader(kafka)
    try:
        wait_for(lambda: int(ch.query("SELECT count() FROM {db}.statements FINAL")[0][0]) == sent, 300,
                 f"{sent} statements in ClickHouse")
        reader.settle(lambda r: r.latest[Topic.COHORT_HEALTH] and r.latest[Topic.MASTERY], 300, quiet_s=10,
                      diagnose=lambda: worker.tail(30))
        fitted_file = tmp_path / "fitted.json"
        summary = fit_from_clickhouse(ch, None, fitted_file, min_observations=100)
    finally:
        reader.close()
        sinks.join()
        ch.close()
    print(f"\n{sent} statements over {DAYS} days; mastery fit: {summary}")
    secret = pseudonym_key(settings)

    # -- active time per learner × day ------------------------------------------------
    true_active: dict[tuple[str, int], int] = defaultdict(int)
    for a in truth.active:
        day = timestamp_ms(f"{a.day}T00:00:00.000Z")
        true_active[(pseudonym(secret, a.key.agent()), day)] += a.active_ms
    ours: dict[tuple[str, int], int] = defaultdict(int)
    for r in reader.latest[Topic.ENGAGEMENT].values():
        if r.grain == "day":
            ours[(r.learner, r.period_start_ms)] += r.active_ms
    keys = set(true_active) | set(ours)
    abs_err = sum(abs(ours.get(k, 0) - true_active.get(k, 0)) for k in keys)
    total_true = sum(true_active.values())
    rel_err = abs_err / total_true
    ratio = sum(ours.values()) / total_true
    print(f"active time: {total_true / 3.6e6:.1f} true hours; ours/true {ratio:.3f}; "
          f"mean absolute error per learner-day {abs_err / len(keys) / 60_000:.1f} min ({rel_err:.1%} of true time)")
    assert 0.9 <= ratio <= 1.1
    assert rel_err < 0.1

    # -- mastery: next-answer AUC -------------------------------------------------------
    model = load_model(DEFAULT_PARAMS_FILE, None)
    fitted = load_model(fitted_file, None)
    true_params = {s.skill: BKTParams(s.prior, s.learn, s.guess, s.slip) for s in truth.skills}
    profile = SchoolProfile()
    seqs: dict[tuple[str, str], list[int]] = defaultdict(list)
    for item in itertools.islice(iter(Simulation(SIM)), sent):
        stmt = item.statement
        course, _cohort = profile.course_and_cohort(stmt)
        for skill in model.skills_of(course, stmt):
            ok = observation(stmt, model.params(skill))
            if ok is not None:
                seqs[(pseudonym(secret, stmt["actor"]), skill)].append(int(ok))
    labels: list[int] = []
    preds: dict[str, list[float]] = defaultdict(list)
    answers = tmp_path / "answers.csv"
    with answers.open("w", newline="") as f:
        rows = csv.writer(f)
        rows.writerow(["order_id", "user_id", "skill_name", "correct"])
        order = itertools.count()
        for (learner, skill), seq in seqs.items():
            rows.writerows([next(order), learner, skill, ok] for ok in seq)
    for (_learner, skill), seq in seqs.items():
        states = {"shipped": model.params(skill), "fitted": fitted.params(skill),
                  "true parameters": true_params.get(skill, model.params(skill))}
        p = {name: log_odds(b.prior) for name, b in states.items()}
        right = 0
        for i, ok in enumerate(seq):
            labels.append(ok)
            for name, b in states.items():
                preds[name].append(predict_correct(probability(p[name]), b))
                p[name] = update(p[name], bool(ok), b)
            preds["baseline: running accuracy"].append((right + 1) / (i + 2))
            right += ok
    preds["pyBKT fitted on the same answers"] = _pybkt_predictions(answers, tmp_path / "pybkt.json")
    assert len(preds["pyBKT fitted on the same answers"]) == len(labels)
    aucs = {name: auc(v, labels) for name, v in preds.items()}
    print(f"next-answer AUC over {len(labels)} answers: " + ", ".join(f"{k} {v:.3f}" for k, v in aucs.items()))
    assert aucs["fitted"] >= aucs["baseline: running accuracy"] - 0.01
    # Our EM fit (from ClickHouse, through the pipeline) against pyBKT's on the same answers.
    assert aucs["fitted"] >= aucs["pyBKT fitted on the same answers"] - 0.02
    assert aucs["fitted"] > 0.65
    assert aucs["true parameters"] >= aucs["fitted"] - 0.03

    # -- final mastery from the pipeline vs the true final state ------------------------
    known = {(pseudonym(secret, m.key.agent()), m.skill): int(m.final_known) for m in truth.mastery if m.opportunities}
    final = [(r.p_mastery, known[(r.learner, r.skill)]) for r in reader.latest[Topic.MASTERY].values()
             if (r.learner, r.skill) in known]
    final_auc = auc([p for p, _k in final], [k for _p, k in final])
    print(f"pipeline P(mastery) vs true final state: AUC {final_auc:.3f} over {len(final)} learner-skills")
    assert len(final) >= 0.9 * len(known)
    assert final_auc > 0.75

    # -- alerts -------------------------------------------------------------------------
    end = truth.run.ended_ms
    planted = {(c.school, c.course, c.cohort) for c in truth.cohorts
               if c.disengaging and c.onset_ms is not None and c.onset_ms + 10 * DAY_MS < end}
    undetectable = truth.disengaging_cohorts() - planted
    fired = {(a.school, a.course, a.cohort) for a in reader.all[Topic.ALERTS] if a.state == "fired"} - undetectable
    tp = len(fired & planted)
    precision = tp / len(fired) if fired else 0.0
    recall = tp / len(planted) if planted else 1.0
    print(f"alerts: {len(planted)} cohorts made to disengage (onset ≥ 10 days before the end), "
          f"{len(fired)} alerted; precision {precision:.2f}, recall {recall:.2f}")
    assert planted, "the simulation planted disengagement"
    assert recall >= 0.75
    assert precision >= 0.75
