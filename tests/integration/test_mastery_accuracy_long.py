"""Mastery out of sample on long sequences, with learners who forget.

No real data can be downloaded here, so the answers come from the simulator (statements
read exactly as the stream reads them): 80 learners on 4 skills over 60 days, 3 sessions a
day, so hundreds of answers per learner × skill, half of the learners forgetting (BKT with
forgetting, per-skill P(forget) 0.01–0.06, the truth says who). Learners are split into
train and test (``streams.mastery.evaluate``): every model is fitted on the training
learners and scored on the test learners' long sequences, each answer predicted from the
earlier ones by the live update.

Checked:

- what ``mastery fit`` writes (BKT or BKT with forgetting, chosen per skill) beats the
  running-accuracy baseline ``(right+1)/(answers+2)`` on AUC, RMSE and log-loss; BKT with
  forgetting beats standard BKT where half the learners forget;
- no state on these sequences is saturated: from every state the live update reached, the
  estimate falls below 0.5 after at most twice as many wrong answers as answers so far. The
  update on P(L) as a float that learnpulse used before fails this (from 1.0 it never comes
  down), and so does any representation that rounds the state.
"""

from __future__ import annotations

import itertools

import pytest

from producers.simulator import DAY_MS, Simulation, SimulationConfig
from schemas.profile import SchoolProfile
from streams.mastery import evaluate as ev
from streams.mastery import fit
from streams.mastery.logic import DEFAULT_PARAMS_FILE, load_model, log_odds, probability, update
from streams.timeparse import timestamp_ms

DAYS = 60
SIM = SimulationConfig(seed=19, schools=1, courses_per_school=2, learners_per_course=40, skills_per_course=2,
                       days=DAYS, sessions_per_day=3.0, disengaging_share=0.0, dropout_share=0.0,
                       forgetting_share=0.5)
LONG = 200


@pytest.fixture(scope="module")
def history():
    sim = Simulation(SIM)
    until = SIM.start_ms + DAYS * DAY_MS
    statements = [item.statement for item in itertools.takewhile(lambda _i: sim.event_ms <= until, sim)]
    model = load_model(DEFAULT_PARAMS_FILE, None)
    profile = SchoolProfile()
    return ev.history_from_statements(statements, model, lambda s: profile.course_and_cohort(s)[0], timestamp_ms)


def test_mastery_accuracy_out_of_sample_on_long_sequences(history):
    lengths = sorted(len(seq) for by in history.values() for seq in by.values())
    assert lengths[len(lengths) // 2] >= LONG, "hundreds of answers per learner x skill"
    model = load_model(DEFAULT_PARAMS_FILE, None)
    result = ev.evaluate(history, model, seed=1, min_length=LONG)
    print("\n" + result.table())
    assert result.test_learners >= 10 and result.test_answers >= 10 * LONG
    shipped, base = result.score("BKT, chosen per skill"), result.score("running accuracy")
    assert shipped.auc > base.auc + 0.03
    assert shipped.rmse < base.rmse
    assert shipped.log_loss < base.log_loss
    assert result.score("BKT+forgetting").log_loss < result.score("BKT").log_loss
    assert "forgetting kept for 0 of" not in shipped.note


def test_mastery_accuracy_no_state_saturates_on_long_sequences(history):
    model = load_model(DEFAULT_PARAMS_FILE, None)
    train_l, test_l = ev.split_learners(history, 0.2, seed=1)
    stuck = checked = 0
    for skill in sorted({s for lr in train_l for s in history[lr]}):
        b = fit.fit_em([history[lr][skill] for lr in train_l if skill in history[lr]], model.params(skill))
        for lr in test_l:
            lo = log_odds(b.prior)
            for i, ok in enumerate(history[lr].get(skill, [])):
                lo = update(lo, bool(ok), b)
                if i % 10:
                    continue
                checked += 1
                down = lo
                for _ in range(2 * (i + 1)):
                    down = update(down, False, b)
                    if probability(down) < 0.5:
                        break
                else:
                    stuck += 1
    print(f"\n{checked} states checked, {stuck} could not be brought below 0.5 by wrong answers")
    assert checked > 500
    assert stuck == 0
