"""BKT update, undo of voided observations, skill mapping and observations."""

from __future__ import annotations

import json

import pytest

from schemas.profile import SKILL_EXTENSION
from streams.mastery import logic as m

B = m.BKTParams(prior=0.2, learn=0.15, guess=0.2, slip=0.1)


def test_streams_mastery_update_matches_hand_computation():
    # correct: 0.2*0.9 / (0.18 + 0.8*0.2) = 0.529412; + 0.470588*0.15 = 0.6
    assert m.update(0.2, True, B) == pytest.approx(0.6)
    # wrong: 0.2*0.1 / (0.02 + 0.8*0.8) = 0.030303; + 0.969697*0.15 = 0.175758
    assert m.update(0.2, False, B) == pytest.approx(0.0303030 + 0.9696970 * 0.15, abs=1e-6)
    assert m.predict_correct(0.6, B) == pytest.approx(0.6 * 0.9 + 0.4 * 0.2)


def test_streams_mastery_forgetting_lowers_the_estimate():
    f = m.BKTParams(prior=0.2, learn=0.15, guess=0.2, slip=0.1, forget=0.1)
    assert m.update(0.9, True, f) < m.update(0.9, True, B)


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
    assert skills["s"]["p"] == pytest.approx(expected["s"]["p"], abs=1e-12)
    assert (skills["s"]["n"], skills["s"]["c"], skills["s"]["v"]) == (3, 3, 5)
    # undoing twice (redelivery) changes nothing more
    assert m.undo(skills, "id1", model) == []


def test_streams_mastery_undo_after_history_folding():
    seq = [i % 3 != 0 for i in range(m.HISTORY + 50)]
    skills, model = _observe_all(seq)
    victim = m.HISTORY + 10  # still in the kept history
    m.undo(skills, f"id{victim}", model)
    p = B.prior
    for i, ok in enumerate(seq):
        if i != victim:
            p = m.update(p, ok, B)
    assert skills["s"]["p"] == pytest.approx(p, abs=1e-12)


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
