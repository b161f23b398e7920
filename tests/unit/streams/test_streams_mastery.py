"""BKT update, undo of voided observations, skill mapping and observations."""

from __future__ import annotations

import json

import pytest

from schemas.profile import SKILL_EXTENSION
from streams.mastery import logic as m

B = m.BKTParams(prior=0.2, learn=0.15, guess=0.2, slip=0.1)


def step(p: float, correct: bool, b: m.BKTParams) -> float:
    """One update from a probability to a probability (the state itself is log-odds)."""
    return m.probability(m.update(m.log_odds(p), correct, b))


def test_streams_mastery_update_matches_hand_computation():
    # correct: 0.2*0.9 / (0.18 + 0.8*0.2) = 0.529412; + 0.470588*0.15 = 0.6
    assert step(0.2, True, B) == pytest.approx(0.6)
    # wrong: 0.2*0.1 / (0.02 + 0.8*0.8) = 0.030303; + 0.969697*0.15 = 0.175758
    assert step(0.2, False, B) == pytest.approx(0.0303030 + 0.9696970 * 0.15, abs=1e-6)
    assert m.predict_correct(0.6, B) == pytest.approx(0.6 * 0.9 + 0.4 * 0.2)


def _probability_update(p: float, correct: bool, b: m.BKTParams) -> float:
    """The textbook update on P(L), for comparison where a double still holds P(L) exactly."""
    num = p * ((1 - b.slip) if correct else b.slip)
    post = num / (num + (1 - p) * (b.guess if correct else 1 - b.guess))
    return post * (1 - b.forget) + (1 - post) * b.learn


@pytest.mark.parametrize("params", [
    B, m.BKTParams(prior=0.2, learn=0.15, guess=0.2, slip=0.1, forget=0.1),
    m.BKTParams(prior=0.5, learn=0.0, guess=0.3, slip=0.2, forget=0.05),
    m.BKTParams(prior=0.01, learn=0.0, guess=0.25, slip=0.25, forget=0.0),
])
@pytest.mark.parametrize("p", [1e-9, 0.01, 0.2, 0.5, 0.9, 0.999999])
def test_streams_mastery_log_odds_update_equals_the_probability_update(params, p):
    for correct in (True, False):
        expected = _probability_update(p, correct, params)
        assert step(p, correct, params) == pytest.approx(expected, rel=1e-9, abs=1e-15)


def test_streams_mastery_forgetting_lowers_the_estimate():
    f = m.BKTParams(prior=0.2, learn=0.15, guess=0.2, slip=0.1, forget=0.1)
    assert step(0.9, True, f) < step(0.9, True, B)


def _observe_all(seq, model=None):
    model = model or m.MasteryModel(B)
    skills: dict = {}
    for i, ok in enumerate(seq):
        m.observe(skills, "s", "c", f"id{i}", ok, 1000 + i, model.params("s"))
    return skills, model


def test_streams_mastery_undo_equals_never_observed():
    skills, model = _observe_all([True, False, True, True])
    assert m.undo(skills, "id1", model) == ["s"]
    expected, _ = _observe_all([True, True, True])
    assert skills["s"]["l"] == pytest.approx(expected["s"]["l"], abs=1e-12)
    assert (skills["s"]["n"], skills["s"]["c"], skills["s"]["v"]) == (3, 3, 5)
    # undoing twice (redelivery) changes nothing more
    assert m.undo(skills, "id1", model) == []


def test_streams_mastery_undo_after_history_folding():
    seq = [i % 3 != 0 for i in range(m.HISTORY + 50)]
    skills, model = _observe_all(seq)
    victim = m.HISTORY + 10  # still in the kept history
    m.undo(skills, f"id{victim}", model)
    lo = m.log_odds(B.prior)
    for i, ok in enumerate(seq):
        if i != victim:
            lo = m.update(lo, ok, B)
    assert skills["s"]["l"] == pytest.approx(lo, abs=1e-9)


def test_streams_mastery_skills_from_extension_objectives_and_mapping():
    model = m.MasteryModel(B, course_map={"C": {"https://a/1": ("map-skill",)}})
    stmt = {
        "object": {"id": "https://a/1", "definition": {"extensions": {SKILL_EXTENSION: ["ext-1", "ext-2"]}}},
        "context": {"contextActivities": {
            "parent": [{"id": "https://c"}],
            "other": [{"id": "https://obj/1", "definition": {"type": m.OBJECTIVE_TYPE}}],
        }},
    }
    assert model.skills_of("C", stmt) == ["ext-1", "ext-2", "https://obj/1", "map-skill"]
    assert model.skills_of("other-course", {"object": {"id": "https://a/1"}}) == []
    single = {"object": {"definition": {"extensions": {SKILL_EXTENSION: "one"}}}}
    assert model.skills_of("C", single) == ["one"]


def test_streams_mastery_observation_from_success_or_scaled_score():
    assert m.observation({"result": {"success": False, "score": {"scaled": 1.0}}}, B) is False
    assert m.observation({"result": {"score": {"scaled": 0.6}}}, B) is True
    assert m.observation({"result": {"score": {"scaled": 0.59}}}, B) is False
    assert m.observation({"result": {"completion": True}}, B) is None
    assert m.observation({}, B) is None


def test_streams_mastery_voided_target_needs_statement_ref():
    assert m.voided_target({"verb": {"id": m.VOIDED_VERB}, "object": {"objectType": "StatementRef", "id": "AB"}}) == "ab"
    assert m.voided_target({"verb": {"id": m.VOIDED_VERB}, "object": {"objectType": "Activity", "id": "x"}}) is None


def test_streams_mastery_parameters_file_per_skill(tmp_path):
    path = tmp_path / "skills.json"
    path.write_text(json.dumps({"default": {"learn": 0.3}, "skills": {"k": {"slip": 0.05}}}))
    model = m.load_model(path, None)
    assert model.params("other").learn == 0.3
    assert (model.params("k").learn, model.params("k").slip) == (0.3, 0.05)
    path.write_text(json.dumps({"default": {"guess": 0.6, "slip": 0.5}}))
    with pytest.raises(ValueError, match="identifiable"):
        m.load_model(path, None)


# -- saturation: the estimate must come down after any streak -----------------------------
SHIPPED = m.load_model(m.DEFAULT_PARAMS_FILE, None).default


@pytest.mark.parametrize("streak", [24, 300, 1000])
def test_streams_mastery_wrong_answers_lower_the_estimate_after_a_long_streak(streak):
    skills: dict = {}
    for i in range(streak):
        m.observe(skills, "s", "c", f"ok{i}", True, i, SHIPPED)
    before = m.p_mastery(skills["s"])
    wrong = 0
    seen = []
    while m.p_mastery(skills["s"]) >= 0.5:
        m.observe(skills, "s", "c", f"no{wrong}", False, streak + wrong, SHIPPED)
        wrong += 1
        seen.append(m.p_mastery(skills["s"]))
        assert wrong <= streak + 50, f"still mastered after {wrong} wrong answers following {streak} right ones"
    # Every wrong answer lowered the estimate (or, while the float still rounds to 1.0, left it).
    assert all(b <= a for a, b in zip([before, *seen], seen))
    assert seen[-1] < 0.5


@pytest.mark.parametrize("right,wrong", [(24, 20), (300, 260)])
def test_streams_mastery_matches_exact_arithmetic_after_long_streaks(right, wrong):
    # The figures with the shipped parameters: after 24 right answers in a row and
    # 20 wrong ones the saturating code still predicted P(correct) = 0.90. Reference: the
    # same update in exact rational arithmetic.
    from fractions import Fraction as F

    g, s_, t = F(SHIPPED.guess), F(SHIPPED.slip), F(SHIPPED.learn)
    exact = F(SHIPPED.prior)
    skills: dict = {}
    for i, ok in enumerate([True] * right + [False] * wrong):
        m.observe(skills, "s", "c", f"k{i}", ok, i, SHIPPED)
        num = exact * ((1 - s_) if ok else s_)
        post = num / (num + (1 - exact) * (g if ok else 1 - g))
        exact = post + (1 - post) * t
    assert m.p_mastery(skills["s"]) == pytest.approx(float(exact), rel=1e-9)
    assert m.predict_correct(m.p_mastery(skills["s"]), SHIPPED) < 0.75


def test_streams_mastery_state_round_trips_through_the_table_encoding():
    # The learner state goes to the table and its changelog as orjson: the log-odds must
    # come back bit for bit, or a restored worker would drift from one that never stopped.
    import orjson

    skills: dict = {}
    for i in range(400):
        m.observe(skills, "s", "c", f"k{i}", i % 7 != 3, i, SHIPPED)
        skills = orjson.loads(orjson.dumps(skills))
    straight: dict = {}
    for i in range(400):
        m.observe(straight, "s", "c", f"k{i}", i % 7 != 3, i, SHIPPED)
    assert skills == straight


def _old_state(seq, b=SHIPPED):
    """A learner × skill state as the previous version wrote it (P(L) as a float)."""
    p = b.prior
    for ok in seq:
        p = _probability_update(p, ok, b)
    h = [[f"k{i}", int(ok), 1000 + i] for i, ok in enumerate(seq)]
    return {"p0": b.prior, "p": p, "h": h, "n": len(seq), "c": sum(seq), "v": len(seq), "course": "c",
            "ts": 1000 + len(seq) - 1, "tf": 0, "sc": "S"}


def test_streams_mastery_state_of_the_previous_version_loads_and_recovers():
    old = _old_state([True] * 60)
    assert old["p"] == 1.0  # saturated, as the issue found
    assert m.p_mastery(old) == 1.0  # readable before it is touched (re-emitted records)
    skills = {"s": old}
    for i in range(60):
        m.observe(skills, "s", "c", f"no{i}", False, 2000 + i, SHIPPED)
    fresh: dict = {}
    for i in range(60):
        m.observe(fresh, "s", "c", f"k{i}", True, 1000 + i, SHIPPED)
    for i in range(60):
        m.observe(fresh, "s", "c", f"no{i}", False, 2000 + i, SHIPPED)
    # The history was replayed from the baseline: the converted state is the exact one.
    assert set(skills["s"]) == set(fresh["s"])
    assert skills["s"]["l"] == pytest.approx(fresh["s"]["l"], abs=1e-9)
    assert m.p_mastery(skills["s"]) < 0.5
    # An undo converts too.
    assert m.undo({"s": _old_state([True, False, True])}, "k1", m.MasteryModel(SHIPPED)) == ["s"]


@pytest.mark.parametrize("params", [
    m.BKTParams(prior=0.0, learn=1.0, guess=0.0, slip=0.0),
    m.BKTParams(prior=1.0, learn=0.0, guess=0.0, slip=0.0, forget=1.0),
    m.BKTParams(prior=0.5, learn=0.0, guess=0.49, slip=0.5, forget=0.0),
])
def test_streams_mastery_degenerate_parameters_keep_the_state_finite(params):
    import math

    skills: dict = {}
    for i in range(2000):
        m.observe(skills, "s", "c", f"k{i}", i % 5 != 0, i, params)
        assert math.isfinite(skills["s"]["l"])
        assert 0.0 <= m.p_mastery(skills["s"]) <= 1.0
