"""Ground truth of a simulation: what the simulator planted, for tests and benchmarks to check against.

The simulator (``producers/simulator.py``) writes one record per line (JSON Lines) and/or
rows of the ClickHouse table :data:`TRUTH_TABLE_DDL`. Every record has a ``kind``:

- ``run``: the configuration and totals of one run (event-time span, statements emitted).
- ``skill``: the BKT parameters (prior, learn, guess, slip) of one skill of one course.
- ``cohort``: whether the cohort was made to disengage on purpose, and from when.
- ``learner``: one learner's placement, counts, and when (if ever) their engagement
  started to decay, planted with their cohort or as an individual drop-out.
- ``mastery``: one learner × skill: known from the start, or the event time of the
  practice opportunity after which the skill became known (BKT has no forgetting here).
- ``active``: one learner's true active time on one UTC day (event time).

Truth covers exactly the statements the simulator emitted: a run stopped after N
statements has ``run.statements == N``, and the ``answered`` counts, opportunities and
active time add up over those N statements only.

Learners are identified the way the statements identify them, by ``account``
(``home_page`` per school, ``name``): :meth:`LearnerKey.agent` gives the xAPI agent, from
which ``schemas.identity.pseudonym(secret, agent)`` yields the pseudonym the pipeline uses.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Iterator
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import orjson

from .errors import InvalidStatement

TRUTH_VERSION = 1


@dataclass(frozen=True, slots=True)
class LearnerKey:
    """A learner as the statements name them: ``account`` with the school's home page."""

    school: str
    home_page: str
    name: str

    def agent(self) -> dict[str, Any]:
        """The xAPI Agent of this learner (what the statements carry as ``actor``)."""
        return {"objectType": "Agent", "account": {"homePage": self.home_page, "name": self.name}}


@dataclass(frozen=True, slots=True)
class TruthRun:
    """One simulation run. ``started_ms``/``ended_ms``: event time of the first/last statement emitted."""

    kind: ClassVar[str] = "run"
    seed: int
    config: dict[str, Any]
    started_ms: int
    ended_ms: int
    statements: int
    answered: int
    schools: int
    courses: int
    cohorts: int
    learners: int


@dataclass(frozen=True, slots=True)
class TruthSkill:
    """BKT parameters of one skill: P(known at start), P(learn per opportunity), P(guess), P(slip),
    and P(forget per opportunity) for the learners who forget (:attr:`TruthLearner.forgets`)."""

    kind: ClassVar[str] = "skill"
    school: str
    course: str
    skill: str
    prior: float
    learn: float
    guess: float
    slip: float
    forget: float = 0.0


@dataclass(frozen=True, slots=True)
class TruthCohort:
    """A cohort; ``disengaging`` cohorts had ``affected`` of their learners decay from ``onset_ms``."""

    kind: ClassVar[str] = "cohort"
    school: str
    course: str
    cohort: str
    learners: int
    disengaging: bool
    onset_ms: int | None
    affected: int


@dataclass(frozen=True, slots=True)
class TruthLearner:
    """One learner. ``disengaged_from_ms``: when their session rate began to decay (None: never).

    ``planted`` is True when that decay comes from the cohort's planted disengagement, False
    for an individual drop-out (background noise every cohort has). Counts cover the
    emitted statements; ``first_ms``/``last_ms`` are None for a learner who emitted nothing.
    """

    kind: ClassVar[str] = "learner"
    school: str
    course: str
    cohort: str
    home_page: str
    name: str
    disengaged_from_ms: int | None
    planted: bool
    statements: int
    answered: int
    sessions: int
    first_ms: int | None
    last_ms: int | None
    # True: known skills of this learner are forgotten with the skill's ``forget``.
    forgets: bool = False

    @property
    def key(self) -> LearnerKey:
        return LearnerKey(self.school, self.home_page, self.name)


@dataclass(frozen=True, slots=True)
class TruthMastery:
    """One learner × skill. The skill is known from ``learned_ms`` on (or from the start).

    ``opportunities``/``correct`` count the emitted answered statements on this skill.
    ``learned_ms`` is the timestamp of the answered statement after which the skill
    became known (the BKT transition follows the observation); for a learner who forgets,
    the last such time, ``forgotten`` counts the times the skill was lost again and
    ``forgotten_ms`` is the last (the state after it is unknown until learned again).
    """

    kind: ClassVar[str] = "mastery"
    school: str
    course: str
    home_page: str
    name: str
    skill: str
    initially_known: bool
    learned_ms: int | None
    opportunities: int
    correct: int
    forgotten: int = 0
    forgotten_ms: int | None = None

    @property
    def key(self) -> LearnerKey:
        return LearnerKey(self.school, self.home_page, self.name)

    @property
    def final_known(self) -> bool:
        if self.forgotten_ms is not None:
            return self.learned_ms is not None and self.learned_ms > self.forgotten_ms
        return self.initially_known or self.learned_ms is not None

    def known_before(self, ts_ms: int) -> bool:
        """True mastery state when answering at ``ts_ms`` (before that answer's own transition).

        Exact for a learner × skill never forgotten; with forgetting only the last learning and
        forgetting are kept, so earlier times are not answered (ValueError)."""
        if self.forgotten_ms is not None and ts_ms <= max(self.forgotten_ms, self.learned_ms or 0):
            raise ValueError("the state before the last forgetting or learning is not in the truth")
        if self.forgotten_ms is not None:
            return self.final_known
        return self.initially_known or (self.learned_ms is not None and self.learned_ms < ts_ms)


@dataclass(frozen=True, slots=True)
class TruthActiveDay:
    """True active time of one learner on one UTC day (``YYYY-MM-DD``), from event timestamps.

    Active time is the time the learner spent working between consecutive statements of a
    session (reading, watching, answering); breaks inside a session and gaps between
    sessions are not active. An interval crossing midnight is split between the days.
    ``statements`` counts the statements timestamped on that day.
    """

    kind: ClassVar[str] = "active"
    school: str
    course: str
    cohort: str
    home_page: str
    name: str
    day: str
    active_ms: int
    statements: int

    @property
    def key(self) -> LearnerKey:
        return LearnerKey(self.school, self.home_page, self.name)


TruthRecord = TruthRun | TruthSkill | TruthCohort | TruthLearner | TruthMastery | TruthActiveDay
RECORD_TYPES: dict[str, type] = {
    t.kind: t for t in (TruthRun, TruthSkill, TruthCohort, TruthLearner, TruthMastery, TruthActiveDay)
}
_FIELDS = {kind: tuple(f.name for f in fields(t)) for kind, t in RECORD_TYPES.items()}
# Fields added later have defaults: truth files written before them still load.
_REQUIRED = {
    kind: tuple(f.name for f in fields(t) if f.default is MISSING and f.default_factory is MISSING)
    for kind, t in RECORD_TYPES.items()
}


def encode_record(record: TruthRecord) -> bytes:
    """One JSON object (no newline): ``{"v": 1, "kind": ..., <fields>}``."""
    return orjson.dumps({"v": TRUTH_VERSION, "kind": record.kind, **asdict(record)})


def decode_record(raw: bytes | str) -> TruthRecord:
    """Parse one truth line; raises :class:`InvalidStatement` (rule ``truth.*``) if it is not one."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise InvalidStatement("truth.json", f"not JSON: {err}") from err
    if not isinstance(doc, dict):
        raise InvalidStatement("truth.shape", "a truth record is a JSON object")
    if doc.get("v") != TRUTH_VERSION:
        raise InvalidStatement("truth.version", f"unknown truth version {doc.get('v')!r}", "$.v")
    kind = doc.get("kind")
    cls = RECORD_TYPES.get(kind)  # type: ignore[arg-type]
    if cls is None:
        raise InvalidStatement("truth.kind", f"unknown truth record kind {kind!r}", "$.kind")
    missing = [n for n in _REQUIRED[kind] if n not in doc]
    if missing:
        raise InvalidStatement("truth.fields", f"{kind} record lacks {', '.join(missing)}", "$")
    return cls(**{n: doc[n] for n in _FIELDS[kind] if n in doc})


def iter_truth(path: str | Path) -> Iterator[TruthRecord]:
    """Records of a truth file (JSON Lines, optionally ``.gz``), in file order."""
    p = Path(path)
    opener = gzip.open if p.suffix == ".gz" else open
    with opener(p, "rb") as f:  # type: ignore[operator]
        for line in f:
            if line.strip():
                yield decode_record(line)


@dataclass
class Truth:
    """All truth of one run, indexed for checks. Build with :func:`read_truth` or :meth:`of`."""

    run: TruthRun | None = None
    skills: list[TruthSkill] = field(default_factory=list)
    cohorts: list[TruthCohort] = field(default_factory=list)
    learners: list[TruthLearner] = field(default_factory=list)
    mastery: list[TruthMastery] = field(default_factory=list)
    active: list[TruthActiveDay] = field(default_factory=list)

    @classmethod
    def of(cls, records: Iterable[TruthRecord]) -> Truth:
        t = cls()
        lists = {
            "skill": t.skills,
            "cohort": t.cohorts,
            "learner": t.learners,
            "mastery": t.mastery,
            "active": t.active,
        }
        for r in records:
            if r.kind == "run":
                t.run = r  # type: ignore[assignment]
            else:
                lists[r.kind].append(r)  # type: ignore[arg-type]
        return t

    def disengaging_cohorts(self) -> set[tuple[str, str, str]]:
        """``(school, course, cohort)`` of every cohort made to disengage."""
        return {(c.school, c.course, c.cohort) for c in self.cohorts if c.disengaging}


def read_truth(path: str | Path) -> Truth:
    """Load a whole truth file."""
    return Truth.of(iter_truth(path))


# The ClickHouse form: one row per record, the record itself as JSON in ``record`` (read
# it with JSONExtract*, or visitParamExtract* which servers as old as 18.16 have too); the
# identifying columns are copied out for filtering.
TRUTH_TABLE = "sim_truth"
TRUTH_COLUMNS = ("run_id", "kind", "school", "course", "cohort", "learner", "skill", "day", "record")
TRUTH_TABLE_DDL = """
CREATE TABLE IF NOT EXISTS {db}.sim_truth (
    run_id String,
    kind LowCardinality(String),
    school LowCardinality(String),
    course LowCardinality(String),
    cohort LowCardinality(String),
    learner String,
    skill LowCardinality(String),
    day String,
    record String
) ENGINE = MergeTree
ORDER BY (run_id, kind, school, course, cohort, learner, skill, day)
"""


def truth_row(run_id: str, record: TruthRecord) -> tuple[Any, ...]:
    """The :data:`TRUTH_COLUMNS` row of one record (``learner`` = ``home_page|name``)."""
    get = record.__getattribute__
    learner = f"{get('home_page')}|{get('name')}" if hasattr(record, "home_page") else ""
    return (
        run_id,
        record.kind,
        getattr(record, "school", ""),
        getattr(record, "course", ""),
        getattr(record, "cohort", ""),
        learner,
        getattr(record, "skill", ""),
        getattr(record, "day", ""),
        encode_record(record).decode(),
    )
