"""Fitting BKT parameters per skill from history (``learnpulse mastery fit``).

Baum–Welch (EM) for the two-state hidden Markov model of BKT, on each skill's answer
sequences (one per learner, in event-time order), in two variants: standard BKT (a known
skill stays known) and BKT with forgetting (a per-skill ``forget``: known → unknown per
opportunity, fitted by EM like ``learn``). Per skill, the one that predicts held-out
learners better is kept (5-fold cross-validation over its learners, seeded by the skill id;
forgetting must win by ``CHOICE_MARGIN`` nats), then fitted on all of them. The
parameters file records the choice under ``"fit"`` (see :func:`write_params`).

pyBKT is not a dependency: pyBKT 1.4.3 fails at import with scikit-learn >= 1.6 (its
metrics probe passes lists) and in its EM with NumPy 2. ``mastery evaluate`` and the test
suite run it in a virtualenv of its own (``deploy/pybkt``) on the same training answers and
compare out of sample (``streams.mastery.evaluate``).

History comes from ClickHouse: scored statements (``result_success`` or
``result_score_scaled``) of the ``statements`` table, their skills read from the raw
statement (``statements_raw``) exactly as the stream does, voided statements left out.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson

from .logic import (
    BKTParams, MasteryModel, load_model, log_odds, observation, params_dict, predict_correct, probability, update,
)

Sequences = list[list[int]]
_EPS = 1e-6
# EM cannot move a transition probability away from 0: forgetting starts from here.
FORGET_START = 0.05
# Choosing between BKT and BKT with forgetting per skill: held-out likelihood by
# cross-validation over the skill's learners in CV_FOLDS folds; a skill with
# CV_ALL_FOLDS_BELOW learners or more is judged on one fold of HELDOUT_SHARE (enough
# learners held out, a fifth of the cost).
CV_FOLDS = 5
CV_ALL_FOLDS_BELOW = 250
HELDOUT_SHARE = 0.2
# Fewer learners than this: the held-out part is too small to judge, standard BKT is kept.
MIN_LEARNERS_TO_CHOOSE = 10
STANDARD, FORGETTING = "standard", "forgetting"
# Forgetting must predict the held-out learners better by this many nats (log-likelihood) to
# be kept: it has one parameter more, and on data without forgetting it still fits a
# forget near 0 that wins or loses by a hair (measured: within ±0.3 nats).
CHOICE_MARGIN = 1.0


def _clip(x: float, lo: float = _EPS, hi: float = 1 - _EPS) -> float:
    return min(max(x, lo), hi)


def fit_em(
    seqs: Sequences, init: BKTParams, iterations: int = 40, tol: float = 1e-5, forgetting: bool = False,
) -> BKTParams:
    """Baum–Welch for BKT (states: 0 unknown, 1 known; learn 0→1; forget 1→0 if ``forgetting``).

    Without forgetting the known state is absorbing (``forget`` stays 0). Each sequence is one
    learner's answers to the skill, oldest first. Forward–backward is scaled per step, so
    sequences of any length are safe.
    """
    prior, learn, guess, slip = init.prior, init.learn, init.guess, init.slip
    forget = (init.forget or FORGET_START) if forgetting else 0.0
    seqs = [s for s in seqs if s]
    if not seqs:
        return init
    last_ll = None
    log = math.log
    for _ in range(iterations):
        n_prior = n_learn = n_forget = in_unknown = in_known = 0.0
        n_guess = n_slip = n_0 = n_1 = 0.0
        ll = 0.0
        stay0, stay1 = 1.0 - learn, 1.0 - forget
        # emission of (unknown, known) for a wrong and a right answer
        emit = ((1.0 - guess, slip), (guess, 1.0 - slip))
        for obs in seqs:
            n = len(obs)
            # forward, scaled: alpha[t] = P(state_t | obs_0..t)
            a0_list = [0.0] * n
            a1_list = [0.0] * n
            scales = [0.0] * n
            e0, e1 = emit[obs[0]]
            u, k = (1.0 - prior) * e0, prior * e1
            c = u + k
            a0, a1 = u / c, k / c
            a0_list[0], a1_list[0], scales[0] = a0, a1, c
            for t in range(1, n):
                e0, e1 = emit[obs[t]]
                u = (a0 * stay0 + a1 * forget) * e0
                k = (a0 * learn + a1 * stay1) * e1
                c = u + k
                a0, a1 = u / c, k / c
                a0_list[t], a1_list[t], scales[t] = a0, a1, c
                ll += log(c)
            ll += log(scales[0])
            # backward, scaled the same way; statistics accumulated on the way
            b0 = b1 = 1.0
            for t in range(n - 1, -1, -1):
                g0, g1 = a0_list[t] * b0, a1_list[t] * b1
                z = g0 + g1
                g0, g1 = g0 / z, g1 / z
                if obs[t]:
                    n_guess += g0
                else:
                    n_slip += g1
                n_0 += g0
                n_1 += g1
                if t == 0:
                    n_prior += g1
                if t + 1 < n:
                    in_unknown += g0
                    in_known += g1
                e0, e1 = emit[obs[t]]
                c = scales[t]
                if t > 0:
                    # xi over (t-1 → t) uses alpha[t-1], the emission at t, beta[t], scale c_t
                    p0, p1 = a0_list[t - 1], a1_list[t - 1]
                    n_learn += p0 * learn * e1 * b1 / c
                    n_forget += p1 * forget * e0 * b0 / c
                    b0, b1 = (stay0 * e0 * b0 + learn * e1 * b1) / c, (forget * e0 * b0 + stay1 * e1 * b1) / c
        prior = _clip(n_prior / len(seqs))
        learn = _clip(n_learn / in_unknown) if in_unknown else learn
        if forgetting:
            forget = _clip(n_forget / in_known, hi=0.5) if in_known else forget
        guess = _clip(n_guess / n_0, hi=0.5) if n_0 else guess
        slip = _clip(n_slip / n_1, hi=0.5) if n_1 else slip
        if last_ll is not None and abs(ll - last_ll) < tol * max(1.0, abs(ll)):
            break
        last_ll = ll
    return BKTParams(round(prior, 6), round(learn, 6), round(guess, 6), round(slip, 6), round(forget, 6),
                     init.threshold)


def predictions(seq: Sequence[int], b: BKTParams) -> list[float]:
    """P(each answer correct) from the answers before it: the live update (log-odds), as the stream does."""
    out = []
    lo = log_odds(b.prior)
    for ok in seq:
        out.append(predict_correct(probability(lo), b))
        lo = update(lo, bool(ok), b)
    return out


def log_likelihood(seqs: Sequences, b: BKTParams) -> float:
    """Sum of log P(answer) over every answer, each predicted from the ones before it."""
    total = 0.0
    for seq in seqs:
        for ok, p in zip(seq, predictions(seq, b)):
            total += math.log(max(p if ok else 1.0 - p, 1e-15))
    return total


@dataclass(frozen=True)
class SkillFit:
    """A skill's fitted parameters and how the variant was chosen (``None``: too few learners to choose)."""

    params: BKTParams
    model: str
    observations: int
    learners: int
    heldout: dict[str, float] | None = None

    def report(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"model": self.model, "observations": self.observations, "learners": self.learners}
        if self.heldout is not None:
            doc["heldout_log_likelihood"] = {k: round(v, 3) for k, v in self.heldout.items()}
        return doc


def heldout_folds(n: int, seed: int) -> list[list[int]]:
    """Learner indices ``0..n-1`` in held-out folds: a seeded shuffle cut in ``CV_FOLDS`` parts
    (one part of ``HELDOUT_SHARE`` when there are ``CV_ALL_FOLDS_BELOW`` learners or more)."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    if n >= CV_ALL_FOLDS_BELOW:
        return [sorted(order[: round(n * HELDOUT_SHARE)])]
    return [sorted(order[k::CV_FOLDS]) for k in range(CV_FOLDS)]


def fit_skill(seqs: Sequences, init: BKTParams, choose: bool = True, seed: int = 0) -> SkillFit:
    """Fit standard BKT and, when ``choose``, BKT with forgetting; keep the variant that predicts
    held-out learners better (log-likelihood summed over the folds of :func:`heldout_folds`, each
    predicted by parameters fitted on the other learners; forgetting must win by
    ``CHOICE_MARGIN``). The kept variant is then fitted on every learner.
    """
    seqs = [s for s in seqs if s]
    n_obs = sum(len(s) for s in seqs)
    standard_init = replace(init, forget=0.0)
    if not choose or len(seqs) < MIN_LEARNERS_TO_CHOOSE:
        return SkillFit(fit_em(seqs, standard_init), STANDARD, n_obs, len(seqs))
    heldout = {STANDARD: 0.0, FORGETTING: 0.0}
    for fold in heldout_folds(len(seqs), seed):
        out = set(fold)
        train = [s for i, s in enumerate(seqs) if i not in out]
        test = [seqs[i] for i in fold]
        heldout[STANDARD] += log_likelihood(test, fit_em(train, standard_init))
        heldout[FORGETTING] += log_likelihood(test, fit_em(train, init, forgetting=True))
    model = FORGETTING if heldout[FORGETTING] > heldout[STANDARD] + CHOICE_MARGIN else STANDARD
    params = fit_em(seqs, standard_init if model == STANDARD else init, forgetting=model == FORGETTING)
    return SkillFit(params, model, n_obs, len(seqs), heldout)


def sequences_by_learner(
    rows: Iterable[tuple[str, str, int, dict[str, Any]]], model: MasteryModel
) -> dict[str, dict[str, list[int]]]:
    """``(learner, course, timestamp_ms, statement)`` rows → per skill, per learner, the answers in time order."""
    per: dict[str, dict[str, list[tuple[int, int]]]] = {}
    for learner, course, ts, stmt in rows:
        for skill in model.skills_of(course, stmt):
            ok = observation(stmt, model.params(skill))
            if ok is not None:
                per.setdefault(skill, {}).setdefault(learner, []).append((ts, int(ok)))
    return {skill: {lr: [o for _t, o in sorted(seq, key=lambda x: x[0])] for lr, seq in by.items()}
            for skill, by in per.items()}


def sequences_from_statements(
    rows: Iterable[tuple[str, str, int, dict[str, Any]]], model: MasteryModel
) -> dict[str, Sequences]:
    """``(learner, course, timestamp_ms, statement)`` rows → per skill, per learner answer sequences."""
    return {skill: list(by.values()) for skill, by in sequences_by_learner(rows, model).items()}


def fit_all(
    seqs: dict[str, Sequences], model: MasteryModel, min_observations: int,
    progress: Callable[[str], Any] | None = None, choose: bool = True,
) -> dict[str, SkillFit]:
    """Fit every skill with at least ``min_observations`` answers (see :func:`fit_skill`)."""
    out = {}
    for skill in sorted(seqs):
        n = sum(len(s) for s in seqs[skill])
        if n < min_observations:
            continue
        out[skill] = fit_skill(seqs[skill], model.params(skill), choose=choose, seed=_seed(skill))
        if progress:
            progress(f"{skill}: {n} observations, {out[skill].model} → {out[skill].params}")
    return out


def _seed(skill: str) -> int:
    """A held-out split that depends on the skill only (the same file from the same history)."""
    return int.from_bytes(hashlib.sha256(skill.encode()).digest()[:8], "big")


def write_params(
    path: Path, default: BKTParams, skills: dict[str, BKTParams], fits: dict[str, SkillFit] | None = None,
) -> None:
    """The parameters file (see ``streams.mastery.logic.load_model``); ``fit`` records how each
    fitted skill's variant was chosen (read by people, ignored by the stream)."""
    doc: dict[str, Any] = {"default": params_dict(default), "skills": {k: params_dict(v) for k, v in skills.items()}}
    if fits:
        doc["fit"] = {k: f.report() for k, f in fits.items()}
    Path(path).write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")


VOIDED = "http://adlnet.gov/expapi/verbs/voided"


def statements_from_clickhouse(ch: Any, school: str | None = None) -> Iterable[tuple[str, str, int, dict[str, Any]]]:
    """``(learner, course, timestamp_ms, statement)`` of every scored, not voided statement in ClickHouse."""
    where = "AND s.school = {school:String}" if school else ""
    params = {"school": school} if school else None
    voided = {str(r[0]).lower() for r in ch.query(
        "SELECT object_id FROM {db}.statements FINAL WHERE verb_id = {v:String}", {"v": VOIDED})}
    rows = ch.query(
        "SELECT s.learner, s.course, toUnixTimestamp64Milli(s.timestamp), r.raw, toString(s.statement_id) "
        "FROM {db}.statements AS s FINAL INNER JOIN {db}.statements_raw AS r FINAL "
        "ON r.statement_id = s.statement_id "
        "WHERE (s.result_success IS NOT NULL OR s.result_score_scaled IS NOT NULL) " + where,
        params,
    )
    return ((lr, c, int(ts), orjson.loads(raw)) for lr, c, ts, raw, sid in rows if sid.lower() not in voided)


def fit_from_clickhouse(
    ch: Any, map_file: Path | None, out: Path, *, school: str | None = None, min_observations: int = 200,
    progress: Callable[[str], Any] | None = None, params_file: Path | None = None,
) -> str:
    """Read scored statements from ClickHouse, fit each skill, write ``out``; returns a summary line."""
    from .logic import DEFAULT_PARAMS_FILE

    model = load_model(params_file or DEFAULT_PARAMS_FILE, map_file)
    seqs = sequences_from_statements(statements_from_clickhouse(ch, school), model)
    fitted = fit_all(seqs, model, min_observations, progress)
    write_params(out, model.default, {**model.skills, **{k: f.params for k, f in fitted.items()}}, fitted)
    total = sum(len(s) for v in seqs.values() for s in v)
    forgetting = sum(f.model == FORGETTING for f in fitted.values())
    return (f"{len(fitted)} of {len(seqs)} skills fitted from {total} observations "
            f"({forgetting} with forgetting); written to {out}")


__all__: Sequence[str] = [
    "FORGETTING", "STANDARD", "SkillFit", "fit_em", "fit_from_clickhouse", "fit_skill", "log_likelihood", "predictions",
    "sequences_by_learner", "sequences_from_statements", "statements_from_clickhouse", "write_params",
]
