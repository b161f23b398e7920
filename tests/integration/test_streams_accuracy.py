"""Accuracy against the simulator's ground truth, through the real pipeline.

simulator (with truth) → Kafka → worker → derived topics, and the sinks → ClickHouse
(chDB) for ``mastery fit``. Checked against what the simulator planted:

- active time per learner × day vs the true active time;
- mastery, out of sample: the answers history is read back from ClickHouse (as ``mastery
  fit`` reads it) and split by learner (``streams.mastery.evaluate``); BKT, BKT with
  forgetting and the per-skill choice ``mastery fit`` makes are fitted on the training
  learners only, and scored (next-answer AUC) on the test learners next to the simulator's
  true parameters (the ceiling), the running-accuracy baseline and pyBKT fitted on the same
  training answers (pyBKT 1.4.3 fails with NumPy 2 / scikit-learn ≥ 1.6, so it runs in a
  virtualenv of its own, ``.venv-pybkt``). Long sequences and learners who forget are in
  ``test_mastery_accuracy_long.py`` (no pipeline needed for those);
- the pipeline's final P(mastery) vs the true final state (AUC);
- disengagement alerts: precision/recall over the cohorts the simulator made disengage.

The figures are printed (``pytest -s``) and bounded by what a working model must reach.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from learnpulse.local_secrets import pseudonym_key
from learnpulse.pipeline import open_clickhouse, run_simulator, start_sinks
from learnpulse.settings import ClickHouseSettings
from producers.simulator import SimulationConfig
from schemas.identity import pseudonym
from schemas.topics import Topic
from schemas.truth import Truth
from streams.config import DAY_MS
from streams.mastery.evaluate import auc, evaluate, history_from_clickhouse, split_learners
from streams.mastery.fit import fit_from_clickhouse, predictions
from streams.mastery.logic import DEFAULT_PARAMS_FILE, BKTParams, load_model
from streams.timeparse import timestamp_ms
from tests.conftest import free_port, wait_for
from tests.integration.streams_support import DerivedReader, stream_settings

SIM = SimulationConfig(seed=5, schools=2, courses_per_school=2, learners_per_course=24, cohorts_per_course=2,
                       days=42, disengaging_share=0.5, sessions_per_day=1.2)
DAYS = 42
REPO = Path(__file__).resolve().parents[2]
SPLIT_SEED = 1


class _Truth:
    def __init__(self) -> None:
        self.records = []

    def write(self, record) -> None:
        self.records.append(record)

    def close(self) -> None:
        pass


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.timeout(1800)  # the pipeline, then four fits and pyBKT's (minutes on a loaded 2-core machine)
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
        history = history_from_clickhouse(ch, load_model(DEFAULT_PARAMS_FILE, None))
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

    # -- mastery: next-answer AUC out of sample ------------------------------------------
    assert set(json.loads(fitted_file.read_text())["fit"]), "mastery fit records its per-skill choice"
    model = load_model(DEFAULT_PARAMS_FILE, None)
    pybkt = REPO / ".venv-pybkt" / "bin" / "python"
    assert pybkt.exists(), f"{pybkt} missing: `make test` makes it (deploy/pybkt/requirements.txt)"
    result = evaluate(history, model, seed=SPLIT_SEED, min_observations=100, pybkt_python=pybkt)
    print("\nmastery out of sample:\n" + result.table())
    assert not result.notes, result.notes
    # The ceiling: the simulator's true parameters, on the same test answers.
    true_params = {s.skill: BKTParams(s.prior, s.learn, s.guess, s.slip) for s in truth.skills}
    _train, test = split_learners(history, 0.2, SPLIT_SEED)
    labels, ceiling = [], []
    for learner in test:
        for skill, seq in sorted(history[learner].items()):
            labels += seq
            ceiling += predictions(seq, true_params[skill])
    assert len(labels) == result.test_answers
    aucs = {s.model: s.auc for s in result.scores}
    aucs["true parameters"] = auc(ceiling, labels)
    print("next-answer AUC: " + ", ".join(f"{k} {v:.3f}" for k, v in aucs.items()))
    shipped = aucs["BKT, chosen per skill"]
    assert shipped >= aucs["running accuracy"] - 0.01
    # Our EM fit (from ClickHouse, through the pipeline) against pyBKT's on the same answers.
    assert shipped >= aucs["pyBKT"] - 0.02
    assert shipped > 0.65
    assert aucs["true parameters"] >= shipped - 0.03

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
