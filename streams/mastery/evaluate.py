"""Out-of-sample evaluation of the mastery model (``learnpulse mastery evaluate``).

A researcher's question before trusting ``p_mastery``: on *our* learners' answers, does
the model predict the next answer better than simply counting? The answers (learner,
skill, correct, order) are split **by learner** (a seeded shuffle): every model is fitted
on the training learners only and scored on the test learners, each answer predicted from
that learner's earlier answers on the skill, exactly as the stream updates (log-odds, see
``streams.mastery.logic``). Models:

- ``BKT``: standard BKT, EM per skill (``fit_em``);
- ``BKT+forgetting``: BKT with a fitted per-skill ``forget`` (``fit_em(forgetting=True)``);
- ``BKT, chosen per skill``: what ``mastery fit`` writes (the better of the two on held-out
  training learners, see ``fit_skill``);
- ``running accuracy``: ``(right + 1) / (answers + 2)`` of the learner on the skill so far,
  no fitting (the trivial baseline a model must beat);
- ``pyBKT``: pyBKT 1.4.3 standard BKT fitted on the same training answers, when its own
  virtualenv exists (``.venv-pybkt``, as the test suite makes it; pyBKT fails with NumPy 2
  and scikit-learn >= 1.6, so it is never imported here but run as a separate process).

Skills with fewer than ``min_observations`` training answers keep the configured
parameters; test answers on skills no training learner answered are left out of every
model (pyBKT cannot predict them) and counted in the report. Scores: AUC (ties counted
half), RMSE and log-loss of P(correct) over the test answers; fit times are wall-clock
seconds.
"""

from __future__ import annotations

import csv
import gzip
import json
import math
import random
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson

from .fit import fit_em, fit_skill, predictions, sequences_by_learner
from .logic import BKTParams, MasteryModel

# learner → skill → answers (0/1) in order
History = dict[str, dict[str, list[int]]]
PYBKT_RUNNER = Path(__file__).with_name("pybkt_runner.py")
# Column names accepted for each field of an answers CSV (first match wins).
CSV_COLUMNS = {
    "learner": ("learner", "user_id", "student_id", "learner_id"),
    "skill": ("skill", "skill_name", "skill_id"),
    "correct": ("correct",),
    "order": ("order", "order_id", "timestamp", "ts"),
}


@dataclass(frozen=True)
class Score:
    """One model's out-of-sample figures."""

    model: str
    auc: float
    rmse: float
    log_loss: float
    answers: int
    fit_s: float | None
    note: str = ""


@dataclass
class Evaluation:
    scores: list[Score] = field(default_factory=list)
    train_learners: int = 0
    test_learners: int = 0
    train_answers: int = 0
    test_answers: int = 0
    unseen_skill_answers: int = 0
    skills: int = 0
    notes: list[str] = field(default_factory=list)

    def score(self, model: str) -> Score:
        return next(s for s in self.scores if s.model == model)

    def table(self) -> str:
        lines = [
            f"{self.train_learners} training learners ({self.train_answers} answers), {self.test_learners} test "
            f"learners ({self.test_answers} answers scored), {self.skills} skills"
            + (f"; {self.unseen_skill_answers} test answers on skills no training learner answered left out"
               if self.unseen_skill_answers else ""),
            "",
            f"{'model':<26} {'AUC':>7} {'RMSE':>7} {'log-loss':>9} {'fit s':>8}",
        ]
        for s in self.scores:
            fit_s = "-" if s.fit_s is None else f"{s.fit_s:.2f}"
            lines.append(f"{s.model:<26} {s.auc:>7.4f} {s.rmse:>7.4f} {s.log_loss:>9.4f} {fit_s:>8}"
                         + (f"  ({s.note})" if s.note else ""))
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


# -- metrics ---------------------------------------------------------------------------
def auc(scores: list[float], labels: list[int]) -> float:
    """Area under the ROC curve (Mann–Whitney U, ties counted half); 0.5 if one class is missing."""
    pos = sum(labels)
    neg = len(labels) - pos
    if not pos or not neg:
        return 0.5
    pairs = sorted(zip(scores, labels))
    rank_sum = 0.0
    i = 0
    while i < len(pairs):
        j = i
        positives = 0
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            positives += pairs[j][1]
            j += 1
        rank_sum += (i + 1 + j) / 2 * positives
        i = j
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)


def rmse(scores: list[float], labels: list[int]) -> float:
    return math.sqrt(sum((p - y) ** 2 for p, y in zip(scores, labels)) / len(labels))


def log_loss(scores: list[float], labels: list[int]) -> float:
    eps = 1e-15
    return -sum(math.log(min(max(p if y else 1.0 - p, eps), 1.0)) for p, y in zip(scores, labels)) / len(labels)


def running_accuracy(seq: list[int]) -> list[float]:
    """(right + 1) / (answers + 2) before each answer."""
    out, right = [], 0
    for i, ok in enumerate(seq):
        out.append((right + 1) / (i + 2))
        right += ok
    return out


# -- reading answers --------------------------------------------------------------------
def _column(header: list[str], name: str) -> int:
    lowered = [h.strip().lower() for h in header]
    for alias in CSV_COLUMNS[name]:
        if alias in lowered:
            return lowered.index(alias)
    raise ValueError(f"answers CSV: no {name!r} column (accepted: {', '.join(CSV_COLUMNS[name])})")


def _order_key(value: str) -> tuple[int, float | str]:
    try:
        return (0, float(value))
    except ValueError:
        return (1, value)


def history_from_csv(path: Path) -> History:
    """``learner, skill, correct, order`` rows (any column order, header required) → history.

    ``correct`` is 0/1 (or true/false); ``order`` sorts each learner's answers (numbers, else
    text such as ISO 8601 times); rows with an equal order keep the file's order.
    """
    rows: dict[tuple[str, str], list[tuple[tuple[int, float | str], int, int]]] = {}
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", newline="") as f:  # type: ignore[operator]
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise ValueError("answers CSV is empty")
        cols = {name: _column(header, name) for name in CSV_COLUMNS}
        for line_no, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                learner, skill = row[cols["learner"]], row[cols["skill"]]
                raw = row[cols["correct"]].strip().lower()
                order = row[cols["order"]]
            except IndexError:
                raise ValueError(f"answers CSV line {line_no}: too few columns") from None
            if raw in ("1", "true", "1.0"):
                ok = 1
            elif raw in ("0", "false", "0.0"):
                ok = 0
            else:
                raise ValueError(f"answers CSV line {line_no}: correct must be 0 or 1, got {raw!r}")
            rows.setdefault((learner, skill), []).append((_order_key(order), line_no, ok))
    history: History = {}
    for (learner, skill), answers in rows.items():
        history.setdefault(learner, {})[skill] = [ok for _o, _n, ok in sorted(answers)]
    return history


def learner_id(actor: dict[str, Any]) -> str:
    """A stable id of an xAPI agent (account, else mbox, mbox_sha1sum or openid)."""
    account = actor.get("account")
    if isinstance(account, dict):
        return f"{account.get('homePage', '')}|{account.get('name', '')}"
    for key in ("mbox", "mbox_sha1sum", "openid"):
        if actor.get(key):
            return str(actor[key])
    return orjson.dumps(actor, option=orjson.OPT_SORT_KEYS).decode()


def _statement_lines(path: Path) -> Iterator[dict[str, Any]]:
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:  # type: ignore[operator]
        for line_no, line in enumerate(f, start=1):
            if line.strip():
                try:
                    yield orjson.loads(line)
                except orjson.JSONDecodeError as err:
                    raise ValueError(f"statements file line {line_no}: not JSON ({err})") from None


def history_from_statements(
    statements: Iterable[dict[str, Any]], model: MasteryModel, course_of: Callable[[dict[str, Any]], str],
    timestamp_of: Callable[[str], int],
) -> History:
    """xAPI statements (e.g. ``simulate --out`` or an LRS export) → history: skills and
    correctness read exactly as the stream reads them; voided statements left out."""
    from .logic import voided_target

    rows: list[tuple[str, str, int, dict[str, Any]]] = []
    voided: set[str] = set()
    for stmt in statements:
        target = voided_target(stmt)
        if target is not None:
            voided.add(target)
            continue
        actor = stmt.get("actor")
        ts = stmt.get("timestamp")
        if not isinstance(actor, dict) or not isinstance(ts, str):
            continue
        rows.append((learner_id(actor), course_of(stmt), timestamp_of(ts), stmt))
    kept = (r for r in rows if str(r[3].get("id", "")).lower() not in voided)
    return _by_learner(sequences_by_learner(kept, model))


def history_from_statements_file(path: Path, model: MasteryModel) -> History:
    from schemas.profile import SchoolProfile

    from ..timeparse import timestamp_ms

    profile = SchoolProfile()
    return history_from_statements(_statement_lines(path), model, lambda s: profile.course_and_cohort(s)[0],
                                   timestamp_ms)


def history_from_clickhouse(ch: Any, model: MasteryModel, school: str | None = None) -> History:
    """The scored, not voided statements in ClickHouse (as ``mastery fit`` reads them) → history."""
    from .fit import statements_from_clickhouse

    return _by_learner(sequences_by_learner(statements_from_clickhouse(ch, school), model))


def _by_learner(per_skill: dict[str, dict[str, list[int]]]) -> History:
    history: History = {}
    for skill, by in per_skill.items():
        for learner, seq in by.items():
            history.setdefault(learner, {})[skill] = seq
    return history


# -- the evaluation ---------------------------------------------------------------------
def split_learners(learners: Iterable[str], test_share: float, seed: int) -> tuple[list[str], list[str]]:
    """(train, test) learners: a seeded shuffle of the sorted ids, ``test_share`` of them tested."""
    order = sorted(learners)
    random.Random(seed).shuffle(order)
    cut = max(1, round(len(order) * test_share)) if len(order) > 1 else 0
    return sorted(order[cut:]), sorted(order[:cut])


def _pybkt(python: Path, train: list[tuple[str, str, int]], test: list[tuple[str, str, int]],
           timeout_s: float) -> tuple[list[float], float]:
    """pyBKT's predictions for ``test`` rows (learner, skill, correct) after fitting on ``train``."""
    with tempfile.TemporaryDirectory(prefix="learnpulse-pybkt-") as tmp:
        paths = [Path(tmp) / "train.csv", Path(tmp) / "test.csv"]
        for p, rows in zip(paths, (train, test)):
            with p.open("w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["order_id", "user_id", "skill_name", "correct"])
                w.writerows([i, learner, skill, ok] for i, (learner, skill, ok) in enumerate(rows))
        out = Path(tmp) / "out.json"
        subprocess.run([str(python), str(PYBKT_RUNNER), str(paths[0]), str(paths[1]), str(out)], check=True,
                       timeout=timeout_s, capture_output=True)
        doc = json.loads(out.read_text())
    return doc["predictions"], doc["fit_s"]


def evaluate(
    history: History, model: MasteryModel, *, test_share: float = 0.2, seed: int = 1, min_observations: int = 50,
    min_length: int = 0, pybkt_python: Path | None = None, pybkt_timeout_s: float = 3600.0,
    progress: Callable[[str], Any] | None = None,
) -> Evaluation:
    """Fit every model on the training learners, score each on the test learners (see module doc).

    ``min_length`` scores only test learner × skill sequences at least that long (all
    training answers are still used).
    """
    say = progress or (lambda _msg: None)
    train_l, test_l = split_learners(history, test_share, seed)
    train: dict[str, list[list[int]]] = {}
    for learner in train_l:
        for skill, seq in history[learner].items():
            train.setdefault(skill, []).append(seq)
    ev = Evaluation(train_learners=len(train_l), test_learners=len(test_l), skills=len(train),
                    train_answers=sum(len(s) for seqs in train.values() for s in seqs))
    test: list[tuple[str, str, list[int]]] = []
    for learner in test_l:
        for skill, seq in sorted(history[learner].items()):
            if skill not in train:
                ev.unseen_skill_answers += len(seq)
            elif len(seq) >= min_length:
                test.append((learner, skill, seq))
    labels = [ok for _l, _s, seq in test for ok in seq]
    ev.test_answers = len(labels)
    if not labels:
        raise ValueError("no test answers to score (too few learners, or --min-length too high)")
    fitted = {skill: sum(len(s) for s in seqs) >= min_observations for skill, seqs in train.items()}

    def fit_each(name: str, fit_one: Callable[[list[list[int]], BKTParams, str], BKTParams]) -> None:
        say(f"fitting {name} on {sum(fitted.values())} skills")
        t0 = time.perf_counter()
        params = {skill: fit_one(train[skill], model.params(skill), skill) if fitted[skill] else model.params(skill)
                  for skill in train}
        fit_s = time.perf_counter() - t0
        preds = [p for _l, skill, seq in test for p in predictions(seq, params[skill])]
        ev.scores.append(Score(name, auc(preds, labels), rmse(preds, labels), log_loss(preds, labels), len(labels),
                               fit_s))

    fit_each("BKT", lambda seqs, init, _s: fit_em(seqs, replace(init, forget=0.0)))
    fit_each("BKT+forgetting", lambda seqs, init, _s: fit_em(seqs, init, forgetting=True))
    chosen: dict[str, str] = {}

    def choose(seqs: list[list[int]], init: BKTParams, skill: str) -> BKTParams:
        f = fit_skill(seqs, init, seed=seed)
        chosen[skill] = f.model
        return f.params

    fit_each("BKT, chosen per skill", choose)
    if chosen:
        n_forget = sum(m == "forgetting" for m in chosen.values())
        ev.scores[-1] = replace(ev.scores[-1], note=f"forgetting kept for {n_forget} of {len(chosen)} skills")
    base = [p for _l, _s, seq in test for p in running_accuracy(seq)]
    ev.scores.append(Score("running accuracy", auc(base, labels), rmse(base, labels), log_loss(base, labels),
                           len(labels), None, "(right+1)/(answers+2)"))
    if pybkt_python is not None:
        if not pybkt_python.exists():
            ev.notes.append(f"pyBKT skipped: {pybkt_python} not found (make .venv-pybkt/.setup-done)")
        else:
            say("fitting pyBKT (its own virtualenv)")
            train_rows = [(lr, skill, ok) for lr in train_l for skill, seq in sorted(history[lr].items())
                          for ok in seq]
            test_rows = [(lr, skill, ok) for lr, skill, seq in test for ok in seq]
            try:
                preds, fit_s = _pybkt(pybkt_python, train_rows, test_rows, pybkt_timeout_s)
            except (subprocess.SubprocessError, OSError, ValueError, KeyError) as err:
                detail = getattr(err, "stderr", b"") or b""
                tail = detail.decode(errors="replace").strip().splitlines()[-1:] if detail else []
                ev.notes.append(f"pyBKT failed: {err} {' '.join(tail)}".strip())
            else:
                ev.scores.append(Score("pyBKT", auc(preds, labels), rmse(preds, labels), log_loss(preds, labels),
                                       len(labels), fit_s, "standard BKT, pyBKT 1.4.3"))
    return ev


__all__ = [
    "Evaluation", "History", "Score", "auc", "evaluate", "history_from_clickhouse", "history_from_csv",
    "history_from_statements",
    "history_from_statements_file", "log_loss", "rmse", "running_accuracy", "split_learners",
]
