"""Bayesian Knowledge Tracing per learner × skill. Pure: no I/O, no clock.

Model (Corbett & Anderson 1995), per skill: ``prior`` P(L0), ``learn`` P(T), ``guess``
P(G), ``slip`` P(S), optional ``forget`` P(F). After an observation (correct or not):

    P(L | correct) = P(L)(1-S) / (P(L)(1-S) + (1-P(L))G)
    P(L | wrong)   = P(L)S / (P(L)S + (1-P(L))(1-G))
    P(L next)      = P(L | obs)(1-F) + (1-P(L | obs))T

``p_mastery`` in a record is P(L next): the estimate before the learner's next attempt;
``predict_correct`` gives P(next answer correct) = P(L)(1-S) + (1-P(L))G.

**The state is the log-odds** ``log(P(L) / (1 - P(L)))``, not P(L). A double holding P(L)
rounds to exactly 1.0 after a few dozen right answers in a row (24 with the shipped
parameters), and from 1.0 the update above can never come down again: wrong answers
were ignored for good. In log-odds the conditioning is an addition (``log((1-S)/G)`` or
``log(S/(1-G))``) and the learning/forgetting step is computed from whichever side of 0.5
the estimate is on, so the state stays exact however long the streak (the record's
``p_mastery`` is the probability rounded to 9 digits: it shows 1.0 while the log-odds are
above ~21, and comes down as soon as the wrong answers have brought them back).
Alternatives weighed: the normalised pair (P(unknown), P(known)) needs no logarithm but
P(unknown) underflows to 0 after ~450 right answers (shipped parameters), saturating
again; a clamp of P(L) below 1 changes the model. State written by earlier versions
(``p``/``p0``) is converted when first touched: the kept history is replayed from the
baseline, so a state saturated within its last ``HISTORY`` observations becomes exact.

Skills of an attempt come from (union, in this order): the object's definition
extension ``SKILL_EXTENSION`` (a skill id or a list), ``contextActivities`` activities of
type ``objective``, and a per-course mapping file. The observation is ``result.success``
when present, else ``result.score.scaled >= threshold``.

Voiding (verb ``voided``, object ``StatementRef``): the learner × skill keeps its
observation history (statement key, outcome), so undoing one replays the rest from the
prior; a statement voided before it arrives is never counted (the learner stage keeps the
pending voids, see ``streams.learner``).

Versions are a function of the input, whatever the order a void and its target meet in:
``v`` = observations counted + observations undone + 2 × observations dropped because
their void came first (observed and undone, in effect). ``ts`` is always the newest event
time among the observations counted: the kept history and ``tf`` (newest folded into the
baseline).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from schemas.profile import SKILL_EXTENSION

from .state import (
    BASELINE, CORRECT, COURSE, KEPT_HISTORY, LEGACY_P, LEGACY_P0, LOG_ODDS, NEWEST, NEWEST_FOLDED, OBSERVED, SCHOOL,
    VERSION, SkillDoc, new_skill,
)

VOIDED_VERB = "http://adlnet.gov/expapi/verbs/voided"
OBJECTIVE_TYPE = "http://adlnet.gov/expapi/activities/objective"
# Observations kept per learner × skill for undo; older ones are folded into the baseline.
HISTORY = 200
# Voids whose target was not found, remembered per source partition (see streams.learner).
PENDING_VOIDS = 1000
# Parameters shipped with learnpulse (overridden by settings.streams.mastery_file).
DEFAULT_PARAMS_FILE = Path(__file__).with_name("skills.json")
# Log-odds given to a probability of exactly 1 (0) read from an older state: the largest
# a double below 1 can express, log(2**53).
SATURATED_LOG_ODDS = 53 * math.log(2)
# How far inside (0, 1) the update keeps its parameters (see ``_constants``).
_EDGE = 1e-12


@dataclass(frozen=True)
class BKTParams:
    prior: float = 0.2
    learn: float = 0.15
    guess: float = 0.2
    slip: float = 0.1
    forget: float = 0.0
    # A scaled score at or above this is a correct answer (when ``success`` is absent).
    threshold: float = 0.6

    def check(self) -> BKTParams:
        for f in fields(self):
            v = getattr(self, f.name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"BKT parameter {f.name}={v} is not a probability")
        if self.guess + self.slip >= 1.0:
            raise ValueError(f"guess + slip = {self.guess + self.slip} >= 1: the model is not identifiable")
        return self


def _constants(b: BKTParams) -> tuple[float, float, float, float, float, float]:
    """What :func:`update` needs of ``b``, computed once per parameter set.

    Probabilities are kept a hair inside (0, 1) here, so degenerate parameters (guess 0,
    learn 1, ...) give finite log-odds instead of a math error in the hot path.
    """
    k = b.__dict__.get("_k")
    if k is None:
        g, s, t, f = (min(max(x, 0.0), 1.0 - _EDGE) for x in (b.guess, b.slip, b.learn, b.forget))
        g, s = max(g, _EDGE), max(s, _EDGE)
        k = (math.log((1.0 - s) / g), math.log(s / (1.0 - g)), t, f, math.log(1.0 - t), math.log(1.0 - f))
        object.__setattr__(b, "_k", k)
    return k


def update(lo: float, correct: bool, b: BKTParams) -> float:
    """One BKT step on log-odds: condition on the observation, then learning/forgetting.

    With x the log-odds after conditioning, P(known next) : P(unknown next) is
    ``e^x (1-F) + T : e^x F + (1-T)``, divided by ``e^x`` when x ≥ 0 (so nothing overflows)
    and computed as is when x < 0 (so nothing underflows into a log of 0).
    """
    right, wrong, t, f, log1_t, log1_f = _constants(b)
    x = lo + (right if correct else wrong)
    if x >= 0.0:
        e = math.exp(-x)
        if f == 0.0:  # the unknown side is (1-T)e^-x exactly, even when e^-x underflows
            return x - log1_t + math.log1p(t * e)
        return math.log((1.0 - f) + t * e) - math.log(f + (1.0 - t) * e)
    e = math.exp(x)
    if t == 0.0:  # the known side is (1-F)e^x exactly, even when e^x underflows
        return x + log1_f - math.log1p(f * e)
    return math.log((1.0 - f) * e + t) - math.log(f * e + (1.0 - t))


def probability(lo: float) -> float:
    """P(L) from log-odds."""
    if lo >= 0.0:
        return 1.0 / (1.0 + math.exp(-lo))
    e = math.exp(lo)
    return e / (1.0 + e)


def log_odds(p: float) -> float:
    """Log-odds of P(L); exactly 0 or 1 (only an older, saturated state holds those) map to ±``SATURATED_LOG_ODDS``."""
    if p >= 1.0:
        return SATURATED_LOG_ODDS
    if p <= 0.0:
        return -SATURATED_LOG_ODDS
    return math.log(p) - math.log1p(-p)


def predict_correct(p: float, b: BKTParams) -> float:
    """P(next answer correct) from P(L) (see :func:`probability`)."""
    return p * (1.0 - b.slip) + (1.0 - p) * b.guess


def params_dict(b: BKTParams) -> dict[str, float]:
    """The parameters by name (the file format's fields)."""
    return {f.name: getattr(b, f.name) for f in fields(b)}


@dataclass(frozen=True)
class MasteryModel:
    """Per-skill parameters (with a default) and the per-course activity → skills mapping."""

    default: BKTParams = BKTParams()
    skills: dict[str, BKTParams] = field(default_factory=dict)
    # course id → activity id → skills
    course_map: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=dict)

    def params(self, skill: str) -> BKTParams:
        return self.skills.get(skill, self.default)

    def skills_of(self, course: str, stmt: dict[str, Any]) -> list[str]:
        obj = stmt.get("object") or {}
        out: list[str] = []
        ext = ((obj.get("definition") or {}).get("extensions") or {}).get(SKILL_EXTENSION)
        if isinstance(ext, str):
            out.append(ext)
        elif isinstance(ext, list):
            out.extend(x for x in ext if isinstance(x, str))
        acts = (stmt.get("context") or {}).get("contextActivities") or {}
        for kind in ("parent", "grouping", "category", "other"):
            items = acts.get(kind) or []
            if isinstance(items, dict):
                items = [items]
            for a in items:
                if isinstance(a, dict) and (a.get("definition") or {}).get("type") == OBJECTIVE_TYPE and a.get("id"):
                    out.append(a["id"])
        mapped = self.course_map.get(course)
        if mapped:
            out.extend(mapped.get(obj.get("id", ""), ()))
        seen: set[str] = set()
        return [s for s in out if not (s in seen or seen.add(s))]


def load_model(params_file: Path | None, map_file: Path | None) -> MasteryModel:
    """Read BKT parameters and the course mapping from JSON files.

    Parameters: ``{"default": {prior, learn, guess, slip, forget, threshold},
    "skills": {"<skill id>": {...}}}`` (a skill's entry overrides only what it names). A file
    written by ``mastery fit`` also has ``"fit": {"<skill id>": {"model": "standard" |
    "forgetting", "observations", "learners", "heldout_log_likelihood": {...}}}``: how each
    skill's variant was chosen, for people; the stream reads only the parameters (forgetting
    is ``forget`` > 0).
    Mapping: ``{"<course id>": {"<activity id>": ["<skill id>", ...]}}``.
    """
    default, skills, cmap = BKTParams(), {}, {}
    if params_file is not None:
        doc = json.loads(Path(params_file).read_text())
        default = BKTParams(**{**params_dict(default), **doc.get("default", {})}).check()
        skills = {k: BKTParams(**{**params_dict(default), **v}).check() for k, v in doc.get("skills", {}).items()}
    if map_file is not None:
        doc = json.loads(Path(map_file).read_text())
        cmap = {c: {a: tuple(s) for a, s in m.items()} for c, m in doc.items()}
    return MasteryModel(default, skills, cmap)


def observation(stmt: dict[str, Any], b: BKTParams) -> bool | None:
    """Correct/incorrect from the statement's result, or None if it is not a scored attempt."""
    result = stmt.get("result")
    if not isinstance(result, dict):
        return None
    success = result.get("success")
    if isinstance(success, bool):
        return success
    scaled = (result.get("score") or {}).get("scaled")
    if isinstance(scaled, (int, float)) and not isinstance(scaled, bool):
        return scaled >= b.threshold
    return None


def voided_target(stmt: dict[str, Any]) -> str | None:
    """The statement id a voiding statement voids, else None."""
    if (stmt.get("verb") or {}).get("id") != VOIDED_VERB:
        return None
    obj = stmt.get("object") or {}
    if obj.get("objectType") == "StatementRef" and isinstance(obj.get("id"), str):
        return obj["id"].lower()
    return None


def _replay(sk: SkillDoc, b: BKTParams) -> None:
    lo = sk[BASELINE]
    for _sid, ok, _ts in sk[KEPT_HISTORY]:
        lo = update(lo, bool(ok), b)
    sk[LOG_ODDS] = lo


def _current(sk: SkillDoc, b: BKTParams) -> SkillDoc:
    """``sk`` in log-odds: a state written by an earlier version (``p``, ``p0``) is converted."""
    if LOG_ODDS not in sk:
        sk[BASELINE] = log_odds(sk.pop(LEGACY_P0))
        sk.pop(LEGACY_P, None)
        _replay(sk, b)
    return sk


def p_mastery(sk: SkillDoc) -> float:
    """P(L) of a learner × skill state (of this version's or an earlier one's)."""
    lo = sk.get(LOG_ODDS)
    return sk[LEGACY_P] if lo is None else probability(lo)


def _new_skill(skills: dict[str, SkillDoc], skill: str, course: str, school: str, b: BKTParams) -> SkillDoc:
    sk = skills[skill] = new_skill(log_odds(b.prior), course, school)
    return sk


def observe(
    skills: dict[str, SkillDoc], skill: str, course: str, sid: str, correct: bool, ts: int, b: BKTParams,
    school: str = "", folded: list[str] | None = None,
) -> SkillDoc:
    """Count one observation into ``skills[skill]``; returns that skill's state.

    State (``streams.mastery.state``): the current log-odds of P(L), the baseline before the
    kept history (``[statement key, 0/1, ts]``), observations/correct counted, the version
    (see the module docstring), course, school, the newest event time counted and the newest
    folded into the baseline. The key of an observation folded out of the history (it can no
    longer be undone) is appended to ``folded``.
    """
    sk = skills.get(skill)
    if sk is None:
        sk = _new_skill(skills, skill, course, school, b)
    elif LOG_ODDS not in sk:
        _current(sk, b)
    sk[LOG_ODDS] = update(sk[LOG_ODDS], correct, b)
    kept = sk[KEPT_HISTORY]
    kept.append([sid, 1 if correct else 0, ts])
    sk[OBSERVED] += 1
    sk[CORRECT] += int(correct)
    sk[VERSION] += 1
    sk[COURSE] = course
    if school:
        sk[SCHOOL] = school
    sk[NEWEST] = max(sk[NEWEST], ts)
    if len(kept) > HISTORY:
        old_sid, ok, old_ts = kept.pop(0)
        sk[BASELINE] = update(sk[BASELINE], bool(ok), b)
        sk[NEWEST_FOLDED] = max(sk.get(NEWEST_FOLDED, 0), old_ts)
        if folded is not None:
            folded.append(old_sid)
    return sk


def voided_first(
    skills: dict[str, SkillDoc], skill: str, course: str, b: BKTParams, school: str = ""
) -> SkillDoc:
    """An observation whose void came first: not counted, but versioned as observed then undone."""
    sk = skills.get(skill)
    if sk is None:
        sk = _new_skill(skills, skill, course, school, b)
    sk[VERSION] += 2
    return sk


def undo(skills: dict[str, SkillDoc], sid: str, model: MasteryModel) -> list[str]:
    """Remove statement ``sid``'s observations; returns the skills that changed."""
    changed = []
    for skill, sk in skills.items():
        kept = sk[KEPT_HISTORY]
        for i, (hid, ok, _ts) in enumerate(kept):
            if hid == sid:
                del kept[i]
                _current(sk, model.params(skill))
                sk[OBSERVED] -= 1
                sk[CORRECT] -= ok
                sk[VERSION] += 1
                sk[NEWEST] = max([sk.get(NEWEST_FOLDED, 0), *(x[2] for x in kept)])
                _replay(sk, model.params(skill))
                changed.append(skill)
                break
    return changed
