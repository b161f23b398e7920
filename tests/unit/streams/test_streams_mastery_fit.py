"""EM for BKT with and without forgetting, and the per-skill choice between them."""

from __future__ import annotations

import json
import random

import pytest

from streams.mastery import fit
from streams.mastery import logic as m

INIT = m.BKTParams()  # the shipped defaults, where a real fit starts


def generate(b: m.BKTParams, learners: int, length: int, seed: int) -> list[list[int]]:
    """Answer sequences drawn from BKT with forgetting (the generative model itself)."""
    rng = random.Random(seed)
    seqs = []
    for _ in range(learners):
        known = rng.random() < b.prior
        seq = []
        for _ in range(length):
            seq.append(int(rng.random() < ((1 - b.slip) if known else b.guess)))
            known = (rng.random() >= b.forget) if known else (rng.random() < b.learn)
        seqs.append(seq)
    return seqs


def test_streams_mastery_fit_recovers_standard_parameters():
    true = m.BKTParams(prior=0.3, learn=0.2, guess=0.15, slip=0.1)
    got = fit.fit_em(generate(true, 300, 30, 1), INIT)
    assert got.forget == 0.0
    for name in ("prior", "learn", "guess", "slip"):
        assert getattr(got, name) == pytest.approx(getattr(true, name), abs=0.05), name


def test_streams_mastery_fit_recovers_forgetting_on_long_sequences():
    true = m.BKTParams(prior=0.2, learn=0.15, guess=0.2, slip=0.1, forget=0.05)
    got = fit.fit_em(generate(true, 60, 300, 2), INIT, iterations=100, forgetting=True)
    assert got.forget == pytest.approx(true.forget, abs=0.02)
    for name in ("learn", "guess", "slip"):
        assert getattr(got, name) == pytest.approx(getattr(true, name), abs=0.05), name


def test_streams_mastery_fit_chooses_forgetting_only_where_it_predicts_better():
    forgetting = fit.fit_skill(generate(m.BKTParams(0.2, 0.15, 0.2, 0.1, 0.08), 60, 200, 3), INIT)
    assert forgetting.model == fit.FORGETTING
    assert forgetting.params.forget > 0.03
    assert forgetting.heldout[fit.FORGETTING] > forgetting.heldout[fit.STANDARD]
    standard = fit.fit_skill(generate(m.BKTParams(0.2, 0.15, 0.2, 0.1, 0.0), 60, 200, 4), INIT)
    assert standard.model == fit.STANDARD
    assert standard.params.forget == 0.0
    few = fit.fit_skill(generate(m.BKTParams(0.2, 0.15, 0.2, 0.1, 0.08), 5, 200, 5), INIT)
    assert few.model == fit.STANDARD and few.heldout is None


def test_streams_mastery_fit_writes_the_choice_and_the_stream_reads_the_parameters(tmp_path):
    fits = {"k": fit.fit_skill(generate(m.BKTParams(0.2, 0.15, 0.2, 0.1, 0.08), 40, 150, 6), INIT)}
    path = tmp_path / "skills.json"
    fit.write_params(path, INIT, {k: f.params for k, f in fits.items()}, fits)
    doc = json.loads(path.read_text())
    assert doc["fit"]["k"]["model"] == fits["k"].model
    assert set(doc["fit"]["k"]["heldout_log_likelihood"]) == {fit.STANDARD, fit.FORGETTING}
    assert m.load_model(path, None).params("k") == fits["k"].params


def test_streams_mastery_fit_log_likelihood_is_the_live_updates():
    b = m.BKTParams(0.3, 0.2, 0.2, 0.1, 0.05)
    seq = [1, 0, 1, 1, 1, 0, 0, 1]
    preds = fit.predictions(seq, b)
    assert preds[0] == pytest.approx(m.predict_correct(0.3, b))
    lo = m.log_odds(0.3)
    for ok, p in zip(seq, preds):
        assert p == pytest.approx(m.predict_correct(m.probability(lo), b))
        lo = m.update(lo, bool(ok), b)
