"""Fitting BKT parameters per skill from history (``learnpulse mastery fit``).

Baum–Welch (EM) for the two-state hidden Markov model of BKT (no forgetting), on each
skill's answer sequences (one per learner, in event-time order).

pyBKT is not a dependency: pyBKT 1.4.3 fails at import with scikit-learn >= 1.6 (its
metrics probe passes lists) and in its EM with NumPy 2. The test suite runs it in a
virtualenv of its own (``deploy/pybkt``) on the same answers and compares next-answer AUC
(measured: 0.788 both).

History comes from ClickHouse: scored statements (``result_success`` or
``result_score_scaled``) of the ``statements`` table, their skills read from the raw
statement (``statements_raw``) exactly as the stream does, voided statements left out.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson

from .logic import BKTParams, MasteryModel, load_model, observation

Sequences = list[list[int]]
_EPS = 1e-6


def _clip(x: float, lo: float = _EPS, hi: float = 1 - _EPS) -> float:
    return min(max(x, lo), hi)


def fit_em(seqs: Sequences, init: BKTParams, iterations: int = 40, tol: float = 1e-5) -> BKTParams:
    """Baum–Welch for BKT (states: 0 unknown, 1 known; learn 0→1; no forgetting)."""
    prior, learn, guess, slip = init.prior, init.learn, init.guess, init.slip
    seqs = [s for s in seqs if s]
    if not seqs:
        return init
    last_ll = None
    for _ in range(iterations):
        n_prior = n_learn_num = n_learn_den = 0.0
        n_guess_num = n_guess_den = n_slip_num = n_slip_den = 0.0
        ll = 0.0
        trans = ((1 - learn, learn), (0.0, 1.0))
        for obs in seqs:
            emit = [((1 - guess) if o == 0 else guess, slip if o == 0 else (1 - slip)) for o in obs]
            # forward (scaled)
            alpha = []
            a0 = ((1 - prior) * emit[0][0], prior * emit[0][1])
            c = a0[0] + a0[1]
            alpha.append((a0[0] / c, a0[1] / c))
            scales = [c]
            for t in range(1, len(obs)):
                p0, p1 = alpha[-1]
                u = p0 * trans[0][0] * emit[t][0]
                k = (p0 * trans[0][1] + p1) * emit[t][1]
                c = u + k
                alpha.append((u / c, k / c))
                scales.append(c)
            # backward (scaled)
            beta = [(1.0, 1.0)] * len(obs)
            for t in range(len(obs) - 2, -1, -1):
                b0, b1 = beta[t + 1]
                e0, e1 = emit[t + 1]
                c = scales[t + 1]
                beta[t] = ((trans[0][0] * e0 * b0 + trans[0][1] * e1 * b1) / c, (e1 * b1) / c)
            for t, o in enumerate(obs):
                g0 = alpha[t][0] * beta[t][0]
                g1 = alpha[t][1] * beta[t][1]
                z = g0 + g1
                g0, g1 = g0 / z, g1 / z
                if t == 0:
                    n_prior += g1
                if o == 1:
                    n_guess_num += g0
                else:
                    n_slip_num += g1
                n_guess_den += g0
                n_slip_den += g1
                if t + 1 < len(obs):
                    # expected 0→1 transitions / expected time in 0
                    e1 = emit[t + 1][1]
                    xi01 = alpha[t][0] * learn * e1 * beta[t + 1][1] / scales[t + 1]
                    n_learn_num += xi01
                    n_learn_den += g0
            for c in scales:
                ll += _log(c)
        prior = _clip(n_prior / len(seqs))
        learn = _clip(n_learn_num / n_learn_den) if n_learn_den else learn
        guess = _clip(n_guess_num / n_guess_den, hi=0.5) if n_guess_den else guess
        slip = _clip(n_slip_num / n_slip_den, hi=0.5) if n_slip_den else slip
        if last_ll is not None and abs(ll - last_ll) < tol * max(1.0, abs(ll)):
            break
        last_ll = ll
    return BKTParams(round(prior, 6), round(learn, 6), round(guess, 6), round(slip, 6), 0.0, init.threshold)


def _log(x: float) -> float:
    import math

    return math.log(x) if x > 0 else -1e9


def sequences_from_statements(
    rows: Iterable[tuple[str, str, int, dict[str, Any]]], model: MasteryModel
) -> dict[str, Sequences]:
    """``(learner, course, timestamp_ms, statement)`` rows → per skill, per learner answer sequences."""
    per: dict[str, dict[str, list[tuple[int, int]]]] = {}
    for learner, course, ts, stmt in rows:
        for skill in model.skills_of(course, stmt):
            ok = observation(stmt, model.params(skill))
            if ok is not None:
                per.setdefault(skill, {}).setdefault(learner, []).append((ts, int(ok)))
    return {skill: [[o for _t, o in sorted(seq)] for seq in by.values()] for skill, by in per.items()}


def fit_all(
    seqs: dict[str, Sequences], model: MasteryModel, min_observations: int,
    progress: Callable[[str], Any] | None = None,
) -> dict[str, BKTParams]:
    out = {}
    for skill in sorted(seqs):
        n = sum(len(s) for s in seqs[skill])
        if n < min_observations:
            continue
        init = model.params(skill)
        out[skill] = fit_em(seqs[skill], init)
        if progress:
            progress(f"{skill}: {n} observations → {out[skill]}")
    return out


def write_params(path: Path, default: BKTParams, skills: dict[str, BKTParams]) -> None:
    def d(b: BKTParams) -> dict[str, float]:
        return {"prior": b.prior, "learn": b.learn, "guess": b.guess, "slip": b.slip, "forget": b.forget,
                "threshold": b.threshold}

    Path(path).write_text(json.dumps({"default": d(default), "skills": {k: d(v) for k, v in skills.items()}},
                                     indent=1, sort_keys=True) + "\n")


VOIDED = "http://adlnet.gov/expapi/verbs/voided"


def fit_from_clickhouse(
    ch: Any, map_file: Path | None, out: Path, *, school: str | None = None, min_observations: int = 200,
    progress: Callable[[str], Any] | None = None, params_file: Path | None = None,
) -> str:
    """Read scored statements from ClickHouse, fit each skill, write ``out``; returns a summary line."""
    from .logic import DEFAULT_PARAMS_FILE

    model = load_model(params_file or DEFAULT_PARAMS_FILE, map_file)
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
    data = ((lr, c, int(ts), orjson.loads(raw)) for lr, c, ts, raw, sid in rows if sid.lower() not in voided)
    seqs = sequences_from_statements(data, model)
    fitted = fit_all(seqs, model, min_observations, progress)
    write_params(out, model.default, {**model.skills, **fitted})
    total = sum(len(s) for v in seqs.values() for s in v)
    return f"{len(fitted)} of {len(seqs)} skills fitted from {total} observations; written to {out}"


__all__: Sequence[str] = ["fit_em", "fit_from_clickhouse", "sequences_from_statements", "write_params"]
