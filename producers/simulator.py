"""A seeded simulator of many virtual schools emitting xAPI 1.0.3 statements, with ground truth.

Model (everything drawn from the seed, so the same seed gives byte-identical statements):

- **Structure.** schools × courses × cohorts × learners. A course has skills (each with its
  own BKT parameters) and a sequence of cmi5 assignable units (AUs); an AU holds pages, at
  most one video and questions, each question exercising one of the AU's skills.
- **Engagement.** Each learner starts sessions as a non-homogeneous Poisson process: a
  personal base rate (sessions/day) shaped by the school's local time of day and the
  weekend, times a decay factor (a slow drift over each term, restarting with the next
  term, so the stream is endless). Some cohorts are made to disengage on purpose: from a
  planted onset most of their learners' rates decay with a half-life of
  :data:`DECAY_HALF_LIFE_MS`, so they go quiet within days. Every cohort also has a few
  individual drop-outs (background noise). A learner whose factor falls under
  :data:`GONE_FACTOR` sends nothing more.
- **Sessions.** One session = one launch of an AU: ``launched``, ``initialized``, the
  items (page ``experienced``; video ``played``/``paused``/``completed`` per the xAPI video
  profile; question ``answered`` with success, score, response and duration), then
  ``completed`` and ``passed``/``failed`` if the learner got through the AU, and
  ``terminated``. Items follow each other after the time spent on them (working time,
  all under 15 minutes); now and then a break of 16–28 minutes (idle, still the same
  session); sessions are at least 45 minutes apart.
- **Mastery.** Bayesian Knowledge Tracing as a generative model: a skill is known at the
  start with P(prior); an answer is correct with P(1 - slip) if known, P(guess) if not;
  after each answer an unknown skill becomes known with P(learn). A share of learners
  (``forgetting_share``, default none) also forget: after each of their answers a known
  skill becomes unknown again with the skill's P(forget) (BKT with forgetting); the truth
  names those learners and each skill's ``forget``.

The statements are emitted in event-time order across all learners. The truth
(:mod:`schemas.truth`) covers exactly the statements emitted.
"""

from __future__ import annotations

import gc
import heapq
import math
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from schemas.profile import COURSE_ACTIVITY_TYPE, DEFAULT_COHORT_EXTENSION, SKILL_EXTENSION
from schemas.truth import (
    TruthActiveDay,
    TruthCohort,
    TruthLearner,
    TruthMastery,
    TruthRecord,
    TruthRun,
    TruthSkill,
)

COURSE_BASE = "https://courses.learnpulse.dev/"
ADL = "http://adlnet.gov/expapi/verbs/"
VERB_LAUNCHED = ADL + "launched"
VERB_INITIALIZED = ADL + "initialized"
VERB_COMPLETED = ADL + "completed"
VERB_PASSED = ADL + "passed"
VERB_FAILED = ADL + "failed"
VERB_TERMINATED = ADL + "terminated"
VERB_EXPERIENCED = ADL + "experienced"
VERB_ANSWERED = ADL + "answered"
VIDEO_PLAYED = "https://w3id.org/xapi/video/verbs/played"
VIDEO_PAUSED = "https://w3id.org/xapi/video/verbs/paused"

CMI5_CATEGORY = "https://w3id.org/xapi/cmi5/context/categories/cmi5"
CMI5_MOVEON = "https://w3id.org/xapi/cmi5/context/categories/moveon"
CMI5_SESSION = "https://w3id.org/xapi/cmi5/context/extensions/sessionid"
CMI5_LAUNCHMODE = "https://w3id.org/xapi/cmi5/context/extensions/launchmode"
CMI5_LAUNCHURL = "https://w3id.org/xapi/cmi5/context/extensions/launchurl"
CMI5_MOVEON_EXT = "https://w3id.org/xapi/cmi5/context/extensions/moveon"
CMI5_MASTERYSCORE = "https://w3id.org/xapi/cmi5/context/extensions/masteryscore"
VIDEO_PROFILE = "https://w3id.org/xapi/video"
VIDEO_TYPE = "https://w3id.org/xapi/video/activity-type/video"
VIDEO_SESSION = "https://w3id.org/xapi/video/extensions/session-id"
VIDEO_LENGTH = "https://w3id.org/xapi/video/extensions/length"
VIDEO_TIME = "https://w3id.org/xapi/video/extensions/time"
VIDEO_PROGRESS = "https://w3id.org/xapi/video/extensions/progress"
VIDEO_SEGMENTS = "https://w3id.org/xapi/video/extensions/played-segments"
AU_TYPE = "http://adlnet.gov/expapi/activities/module"
QUESTION_TYPE = "http://adlnet.gov/expapi/activities/cmi.interaction"
PAGE_TYPE = "http://activitystrea.ms/schema/1.0/page"

MASTERY_SCORE = 0.7
DAY_MS = 86_400_000
MINUTE_MS = 60_000
# Engagement decay once a learner starts to disengage: half the rate every 1.5 days, so
# within a week the rate is under 5% of what it was.
DECAY_HALF_LIFE_MS = int(1.5 * DAY_MS)
# Below this factor a learner never starts another session.
GONE_FACTOR = 0.01
# Share of a disengaging cohort's learners who actually decay (the rest carry on).
PLANTED_SHARE = 0.85
SESSION_MIN_GAP_MS = 45 * MINUTE_MS
# Relative session-start intensity by local hour (evening peak, quiet nights).
_HOURLY = (
    0.05, 0.03, 0.02, 0.02, 0.02, 0.05, 0.15, 0.4, 0.7, 0.8, 0.85, 0.9,
    0.9, 0.95, 1.0, 1.0, 1.0, 1.05, 1.15, 1.3, 1.3, 1.1, 0.7, 0.3,
)  # fmt: skip
# Normalized to a mean of 1, so ``sessions_per_day`` is the mean over a whole weekday.
_HOURLY = tuple(w * 24 / sum(_HOURLY) for w in _HOURLY)
_HOURLY_MAX = max(_HOURLY)
_WEEKEND = 0.6
# Baseline slow drift of everyone's engagement over a term (half-life in days).
_DRIFT_HALF_LIFE_DAYS = 240.0


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate. Sizes are per parent (``learners_per_course`` across its cohorts)."""

    seed: int = 42
    schools: int = 3
    courses_per_school: int = 3
    learners_per_course: int = 30
    start_ms: int = 1_767_225_600_000  # 2026-01-01T00:00:00Z
    # Kept for compatibility with the walking skeleton; event time now follows the model.
    step_ms: int = 1_000
    cohorts_per_course: int = 2
    skills_per_course: int = 5
    aus_per_course: int = 8
    # Length of the term in days: planted onsets fall in it (the stream itself is endless).
    days: int = 112
    # Share of all cohorts made to disengage (at least one when > 0 and there are ≥ 2).
    disengaging_share: float = 0.25
    # Share of learners of any cohort who drop out individually at a random time.
    dropout_share: float = 0.05
    # Mean sessions per learner per day before time-of-day shaping and decay.
    sessions_per_day: float = 0.6
    # Share of learners who forget (per answer, a known skill is lost with the skill's P(forget)).
    forgetting_share: float = 0.0

    def __post_init__(self) -> None:
        for name in ("schools", "courses_per_school", "learners_per_course", "cohorts_per_course", "aus_per_course"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.skills_per_course < 0 or self.days < 1 or self.sessions_per_day <= 0:
            raise ValueError("skills_per_course >= 0, days >= 1 and sessions_per_day > 0 are required")
        if not (0 <= self.disengaging_share <= 1 and 0 <= self.dropout_share <= 1 and 0 <= self.forgetting_share <= 1):
            raise ValueError("disengaging_share, dropout_share and forgetting_share are shares in [0, 1]")

    @property
    def learners(self) -> int:
        return self.schools * self.courses_per_school * self.learners_per_course


# Named sizes for ``learnpulse simulate --scale``; flags override single fields.
SCALES: dict[str, dict[str, int]] = {
    "demo": {"schools": 3, "courses_per_school": 3, "learners_per_course": 30},
    "medium": {"schools": 20, "courses_per_school": 4, "learners_per_course": 125},
    "large": {"schools": 100, "courses_per_school": 5, "learners_per_course": 200},
}


@dataclass(frozen=True)
class SimulatedStatement:
    school: str
    statement: dict[str, Any]


def school_id(i: int) -> str:
    return f"school-{i:03d}"


def school_home_page(school: str) -> str:
    """The ``account.homePage`` of the school's learner accounts."""
    return f"https://{school}.learnpulse.dev"


def course_iri(school: str, course: int) -> str:
    return f"{COURSE_BASE}{school}/course-{course:02d}"


def cohort_id(school: str, course: int, cohort: int) -> str:
    return f"{school}/course-{course:02d}/cohort-{cohort}"


# -- time formatting (hot path: avoid datetime per statement) -------------------------
_day_prefix: dict[int, str] = {}


def format_ts(ms: int) -> str:
    """Epoch ms → ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (same output as ``schemas.xapi.timefmt.format_ms``)."""
    day, rem = divmod(ms, DAY_MS)
    prefix = _day_prefix.get(day)
    if prefix is None:
        prefix = _day_prefix[day] = day_name(day) + "T"
    s, milli = divmod(rem, 1000)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return f"{prefix}{h:02d}:{m:02d}:{s:02d}.{milli:03d}Z"


def day_name(day: int) -> str:
    """Days since the epoch → ``YYYY-MM-DD`` (proleptic Gregorian, UTC)."""
    z = day + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    y = yoe + era * 400 + (m <= 2)
    return f"{y:04d}-{m:02d}-{d:02d}"


def iso_duration(ms: int) -> str:
    """Milliseconds → ISO 8601 duration (``PT1H2M3.45S``; ``PT0S`` for zero)."""
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, milli = divmod(rem, 1000)
    out = "PT"
    if h:
        out += f"{h}H"
    if m:
        out += f"{m}M"
    if s or milli or out == "PT":
        out += f"{s}.{milli:03d}".rstrip("0").rstrip(".") + "S"
    return out


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


# -- static structure ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Item:
    kind: str  # "page" | "video" | "question"
    id: str
    name: str
    skill: int = -1  # question: index of its skill in the course
    length_s: int = 0  # video: length in seconds
    correct: str = ""  # question: id of the correct choice


@dataclass(frozen=True, slots=True)
class _AU:
    id: str
    name: str
    items: tuple[_Item, ...]
    questions: int


@dataclass(frozen=True, slots=True)
class _Skill:
    id: str
    prior: float
    learn: float
    guess: float
    slip: float
    forget: float


@dataclass(frozen=True, slots=True)
class _Course:
    school: str
    index: int
    id: str
    name: str
    skills: tuple[_Skill, ...]
    aus: tuple[_AU, ...]
    utc_offset_h: int


_CHOICES = ("a", "b", "c", "d")


def _build_course(seed: int, school: str, index: int, cfg: SimulationConfig, utc_offset_h: int) -> _Course:
    rng = random.Random(f"{seed}|course|{school}|{index}")
    cid = course_iri(school, index)
    skills = tuple(
        _Skill(
            id=f"{cid}/skills/skill-{k}",
            prior=round(rng.uniform(0.05, 0.35), 3),
            learn=round(rng.uniform(0.08, 0.3), 3),
            guess=round(rng.uniform(0.1, 0.3), 3),
            slip=round(rng.uniform(0.05, 0.15), 3),
            # its own stream, so runs without forgetting draw exactly what they drew before
            forget=round(random.Random(f"{seed}|forget|{school}|{index}|{k}").uniform(0.01, 0.06), 3),
        )
        for k in range(cfg.skills_per_course)
    )
    aus = []
    n_skills = len(skills)
    for a in range(cfg.aus_per_course):
        au_id = f"{cid}/au-{a:02d}"
        items: list[_Item] = []
        for p in range(rng.randint(2, 4)):
            items.append(_Item("page", f"{au_id}/pages/page-{p}", f"Unit {a + 1}, page {p + 1}"))
        if rng.random() < 0.6:
            items.insert(1, _Item("video", f"{au_id}/video", f"Unit {a + 1} lecture", length_s=rng.randint(120, 540)))
        n_q = rng.randint(4, 6) if n_skills else 0
        au_skills = [a % n_skills, (a + 1) % n_skills] if n_skills else []
        for q in range(n_q):
            items.append(
                _Item(
                    "question",
                    f"{au_id}/questions/q-{q}",
                    f"Unit {a + 1}, question {q + 1}",
                    skill=au_skills[q % len(au_skills)],
                    correct=rng.choice(_CHOICES),
                )
            )
        aus.append(_AU(au_id, f"Unit {a + 1}", tuple(items), n_q))
    return _Course(school, index, cid, f"Course {index + 1} of {school}", skills, tuple(aus), utc_offset_h)


# -- learners --------------------------------------------------------------------------
# A planned statement: (event time, builder, its arguments, active ms it concludes,
# (skill, correct, learned, forgot) for an answer). Statements are built only when emitted, so
# the thousands of planned-but-pending sessions hold small tuples, not statement trees.
_Event = tuple[int, Callable[..., dict[str, Any]], tuple[Any, ...], int, "tuple[int, bool, bool, bool] | None"]
class _Learner:
    """Hidden state of one learner plus the truth accumulated over emitted statements."""

    __slots__ = (
        "answered",
        "au_next",
        "cohort",
        "cohort_key",
        "correct",
        "course",
        "day",
        "day_active",
        "day_statements",
        "decay_from",
        "first_ms",
        "forgets",
        "forgotten",
        "forgotten_ms",
        "gone",
        "home",
        "initially_known",
        "known",
        "last_ms",
        "learned_ms",
        "name",
        "opp",
        "pending",
        "planted",
        "pos",
        "rate_per_ms",
        "registration",
        "session_no",
        "sessions",
        "statements",
    )  # fmt: skip

    def __init__(self, course: _Course, cohort: int, name: str, home: str) -> None:
        self.course = course
        self.cohort = cohort
        self.cohort_key = cohort_id(course.school, course.index, cohort)
        self.name = name
        self.home = home
        self.rate_per_ms = 0.0
        self.decay_from: int | None = None
        self.planted = False
        self.registration = ""
        self.known = 0  # bitmask over the course's skills: the plan-time BKT state
        self.initially_known = 0
        self.au_next = 0
        self.session_no = 0
        self.pending: list[_Event] = []
        self.pos = 0
        self.gone = False
        n = len(course.skills)
        self.statements = self.answered = self.sessions = 0
        self.first_ms: int | None = None
        self.last_ms: int | None = None
        self.opp = [0] * n
        self.correct = [0] * n
        self.learned_ms: list[int | None] = [None] * n
        self.forgets = False
        self.forgotten = [0] * n
        self.forgotten_ms: list[int | None] = [None] * n
        self.day = -1
        self.day_active = 0
        self.day_statements = 0


class Simulation:
    """Iterate to get :class:`SimulatedStatement` in event-time order; endless.

    ``on_truth`` receives each :class:`~schemas.truth.TruthActiveDay` as soon as that
    learner-day can no longer change; :meth:`finish` returns every other truth record
    (and flushes the open days to ``on_truth``).
    """

    def __init__(self, config: SimulationConfig, on_truth: Callable[[TruthRecord], Any] | None = None) -> None:
        self.config = config
        self.on_truth = on_truth
        self.statements = 0
        self.answered = 0
        self.first_ms: int | None = None
        self.event_ms = config.start_ms
        self.courses: list[_Course] = []
        self.learners: list[_Learner] = []
        self.cohorts: list[TruthCohort] = []
        self._heap: list[tuple[int, int, int]] = []
        self._seq = 0
        self._build()

    # -- set-up ------------------------------------------------------------------------
    def _build(self) -> None:
        cfg = self.config
        seed = cfg.seed
        world = random.Random(f"{seed}|world")
        n_cohorts = cfg.schools * cfg.courses_per_school * cfg.cohorts_per_course
        n_planted = round(n_cohorts * cfg.disengaging_share)
        if cfg.disengaging_share > 0 and n_cohorts >= 2:
            n_planted = max(1, n_planted)
        n_planted = min(n_planted, n_cohorts)
        planted = set(world.sample(range(n_cohorts), n_planted))
        term_ms = cfg.days * DAY_MS
        cohort_no = 0
        by_cohort: dict[str, list[_Learner]] = {}
        onsets: dict[str, int | None] = {}
        for s in range(cfg.schools):
            school = school_id(s)
            home = school_home_page(school)
            offset = world.randint(-8, 9)
            for c in range(cfg.courses_per_school):
                course = _build_course(seed, school, c, cfg, offset)
                self.courses.append(course)
                cohort_onsets = []
                for k in range(cfg.cohorts_per_course):
                    onset = None
                    if cohort_no in planted:
                        onset = cfg.start_ms + int(world.uniform(0.2, 0.5) * term_ms)
                    cohort_onsets.append(onset)
                    onsets[cohort_id(school, c, k)] = onset
                    cohort_no += 1
                for n in range(cfg.learners_per_course):
                    k = n % cfg.cohorts_per_course
                    learner = _Learner(course, k, f"learner-{c:02d}-{n:05d}", home)
                    self._init_learner(learner, cohort_onsets[k], term_ms)
                    by_cohort.setdefault(learner.cohort_key, []).append(learner)
                    self.learners.append(learner)
        for key, members in by_cohort.items():
            school, course_part, _ = key.split("/")
            course_index = int(course_part.split("-")[1])
            self.cohorts.append(
                TruthCohort(
                    school=school,
                    course=course_iri(school, course_index),
                    cohort=key,
                    learners=len(members),
                    disengaging=onsets[key] is not None,
                    onset_ms=onsets[key],
                    affected=sum(1 for m in members if m.planted),
                )
            )
        for i, learner in enumerate(self.learners):
            first = self._next_session_start(learner, self.config.start_ms, first=True)
            if first is not None:
                self._push(first, i)
        # The world is long-lived and acyclic: keep the cyclic GC from rescanning it on
        # every collection (at 100,000 learners that halves the statement rate).
        # Reference counting still frees it.
        gc.freeze()

    def _init_learner(self, learner: _Learner, onset: int | None, term_ms: int) -> None:
        cfg = self.config
        rng = random.Random(f"{cfg.seed}|learner|{learner.home}|{learner.name}")
        per_day = cfg.sessions_per_day * math.exp(rng.gauss(0.0, 0.5) - 0.125)  # mean-preserving lognormal
        learner.rate_per_ms = min(max(per_day, 0.05), 4.0) / DAY_MS
        if onset is not None and rng.random() < PLANTED_SHARE:
            learner.decay_from = onset + int(rng.uniform(0, 2 * DAY_MS))
            learner.planted = True
        elif rng.random() < cfg.dropout_share:
            learner.decay_from = cfg.start_ms + int(rng.uniform(0.1, 0.9) * term_ms)
        learner.registration = _uuid(rng)
        known = 0
        for j, skill in enumerate(learner.course.skills):
            if rng.random() < skill.prior:
                known |= 1 << j
        learner.known = learner.initially_known = known
        if cfg.forgetting_share > 0:  # its own stream: the draws above stay as they were
            learner.forgets = random.Random(f"{cfg.seed}|forgets|{learner.home}|{learner.name}").random() < (
                cfg.forgetting_share
            )

    def _push(self, ts: int, index: int) -> None:
        heapq.heappush(self._heap, (ts, self._seq, index))
        self._seq += 1

    # -- engagement ----------------------------------------------------------------------
    def _factor(self, learner: _Learner, ts: int) -> float:
        """Decay of this learner's session rate at ``ts`` (1 = undiminished).

        The slow drift restarts with every term, so an endless run (a live demo feed)
        keeps going; a learner's own decay (planted or drop-out) is for good.
        """
        into_term = (ts - self.config.start_ms) % (self.config.days * DAY_MS)
        f = 0.5 ** (into_term / (_DRIFT_HALF_LIFE_DAYS * DAY_MS))
        if learner.decay_from is not None and ts > learner.decay_from:
            f *= 0.5 ** ((ts - learner.decay_from) / DECAY_HALF_LIFE_MS)
        return f

    def _next_session_start(self, learner: _Learner, after: int, first: bool = False) -> int | None:
        """Thinning of the learner's session process from ``after``; None once the learner is gone."""
        rng = random.Random(f"{self.config.seed}|gap|{learner.home}|{learner.name}|{learner.session_no}")
        t = after if first else after + SESSION_MIN_GAP_MS
        offset_ms = learner.course.utc_offset_h * 3_600_000
        peak = learner.rate_per_ms * _HOURLY_MAX
        for _ in range(10_000):
            t += int(rng.expovariate(peak)) + 1
            factor = self._factor(learner, t)
            if factor < GONE_FACTOR:
                learner.gone = True
                return None
            local = t + offset_ms
            weight = _HOURLY[(local // 3_600_000) % 24]
            if ((local // DAY_MS) + 3) % 7 >= 5:  # 1970-01-01 was a Thursday: (days+3)%7 is Mon=0
                weight *= _WEEKEND
            if rng.random() * _HOURLY_MAX < weight * factor:
                return t
        learner.gone = True
        return None

    # -- sessions ------------------------------------------------------------------------
    def _plan_session(self, learner: _Learner, t0: int) -> None:
        cfg = self.config
        rng = random.Random(f"{cfg.seed}|session|{learner.home}|{learner.name}|{learner.session_no}")
        course = learner.course
        if not course.aus:
            learner.pending, learner.pos = [], 0
            return
        if learner.au_next < len(course.aus):
            au = course.aus[learner.au_next]
        else:  # course done: review a unit
            au = course.aus[rng.randrange(len(course.aus))]
        session = _uuid(rng)
        factor = self._factor(learner, t0)
        # Chance of stopping after each item: higher as engagement fades.
        stop_p = 0.03 + 0.25 * (1.0 - factor)
        b = _StatementBuilder(rng, learner, au, session)
        events: list[_Event] = []
        t = t0
        events.append((t, b.cmi5, (VERB_LAUNCHED, t, True), 0, None))
        step = rng.randint(1_000, 6_000)
        t += step
        t_init = t
        events.append((t, b.cmi5, (VERB_INITIALIZED, t), step, None))
        correct_count = 0
        finished = True
        for i, item in enumerate(au.items):
            if i > 0 and rng.random() < stop_p:
                finished = False
                break
            if rng.random() < 0.03:  # a break: idle, not active, still the same session
                t += rng.randint(16 * MINUTE_MS, 28 * MINUTE_MS)
            if item.kind == "page":
                work = min(int(rng.lognormvariate(math.log(75_000), 0.6)), 12 * MINUTE_MS)
                t += work
                events.append((t, b.page, (item, t), work, None))
            elif item.kind == "video":
                t, video_events = b.video(item, t)
                events.extend(video_events)
            else:
                known_before = bool(learner.known >> item.skill & 1)
                skill = course.skills[item.skill]
                ok = rng.random() < ((1.0 - skill.slip) if known_before else skill.guess)
                learned_now = forgot_now = False
                if not known_before and rng.random() < skill.learn:
                    learner.known |= 1 << item.skill
                    learned_now = True
                elif known_before and learner.forgets and rng.random() < skill.forget:
                    learner.known &= ~(1 << item.skill)
                    forgot_now = True
                work = min(int(rng.lognormvariate(math.log(40_000), 0.7)) + 3_000, 10 * MINUTE_MS)
                t += work
                correct_count += ok
                events.append((t, b.answer, (item, t, ok, work), work, (item.skill, ok, learned_now, forgot_now)))
        if finished:
            step = rng.randint(500, 3_000)
            t += step
            events.append((t, b.completed, (t, t - t_init), step, None))
            moves_on = True
            if au.questions:
                score = correct_count / au.questions
                step = rng.randint(100, 1_000)
                t += step
                events.append((t, b.judged, (t, t - t_init, score), step, None))
                moves_on = score >= MASTERY_SCORE
            if moves_on and learner.au_next < len(course.aus) and au is course.aus[learner.au_next]:
                learner.au_next += 1
        step = rng.randint(500, 4_000)
        t += step
        events.append((t, b.cmi5, (VERB_TERMINATED, t, False, t - t_init), step, None))
        learner.pending, learner.pos = events, 0
        learner.session_no += 1

    # -- emission and truth ----------------------------------------------------------------
    @property
    def next_ms(self) -> int | None:
        """Event time of the next statement (None: every learner is gone)."""
        return self._heap[0][0] if self._heap else None

    def __iter__(self) -> Iterator[SimulatedStatement]:
        heap = self._heap
        learners = self.learners
        while heap:
            ts, _, index = heapq.heappop(heap)
            learner = learners[index]
            if learner.pos >= len(learner.pending):
                self._plan_session(learner, ts)
                if not learner.pending:
                    continue
                learner.sessions += 1
            ts, build, args, active, answer = learner.pending[learner.pos]
            learner.pos += 1
            stmt = build(*args)
            self._account(learner, ts, active, answer, stmt)
            if learner.pos < len(learner.pending):
                self._push(learner.pending[learner.pos][0], index)
            else:
                learner.pending = []
                learner.pos = 0
                nxt = self._next_session_start(learner, ts)
                if nxt is not None:
                    self._push(nxt, index)
            yield SimulatedStatement(learner.course.school, stmt)

    def _account(
        self, learner: _Learner, ts: int, active: int, answer: tuple[int, bool, bool, bool] | None,
        stmt: dict[str, Any],
    ) -> None:
        self.statements += 1
        self.event_ms = ts
        if self.first_ms is None:
            self.first_ms = ts
        learner.statements += 1
        if learner.first_ms is None:
            learner.first_ms = ts
        learner.last_ms = ts
        if answer is not None:
            skill, ok, learned_now, forgot_now = answer
            self.answered += 1
            learner.answered += 1
            learner.opp[skill] += 1
            learner.correct[skill] += ok
            if learned_now:
                learner.learned_ms[skill] = ts
            if forgot_now:
                learner.forgotten[skill] += 1
                learner.forgotten_ms[skill] = ts
        day = ts // DAY_MS
        if day != learner.day:
            if learner.day >= 0:
                # The part of this interval before midnight belongs to the day that ends.
                before = max(0, active - (ts - day * DAY_MS))
                learner.day_active += before
                active -= before
                self._flush_day(learner)
            learner.day = day
            learner.day_active = 0
            learner.day_statements = 0
        learner.day_active += active
        learner.day_statements += 1

    def _flush_day(self, learner: _Learner) -> None:
        if self.on_truth is not None and (learner.day_active or learner.day_statements):
            self.on_truth(
                TruthActiveDay(
                    school=learner.course.school,
                    course=learner.course.id,
                    cohort=learner.cohort_key,
                    home_page=learner.home,
                    name=learner.name,
                    day=day_name(learner.day),
                    active_ms=learner.day_active,
                    statements=learner.day_statements,
                )
            )

    def finish(self) -> list[TruthRecord]:
        """Flush open learner-days to ``on_truth``; return run, skill, cohort, learner and mastery truth."""
        cfg = self.config
        for learner in self.learners:
            if learner.day >= 0:
                self._flush_day(learner)
                learner.day = -1
                learner.day_active = learner.day_statements = 0
        out: list[TruthRecord] = [
            TruthRun(
                seed=cfg.seed,
                config=asdict(cfg),
                started_ms=self.first_ms if self.first_ms is not None else cfg.start_ms,
                ended_ms=self.event_ms,
                statements=self.statements,
                answered=self.answered,
                schools=cfg.schools,
                courses=len(self.courses),
                cohorts=len(self.cohorts),
                learners=len(self.learners),
            )
        ]
        for course in self.courses:
            for skill in course.skills:
                out.append(
                    TruthSkill(course.school, course.id, skill.id, skill.prior, skill.learn, skill.guess, skill.slip,
                               skill.forget)
                )
        out.extend(self.cohorts)
        for ln in self.learners:
            out.append(
                TruthLearner(
                    school=ln.course.school,
                    course=ln.course.id,
                    cohort=ln.cohort_key,
                    home_page=ln.home,
                    name=ln.name,
                    disengaged_from_ms=ln.decay_from,
                    planted=ln.planted,
                    statements=ln.statements,
                    answered=ln.answered,
                    sessions=ln.sessions,
                    first_ms=ln.first_ms,
                    last_ms=ln.last_ms,
                    forgets=ln.forgets,
                )
            )
            for j, skill in enumerate(ln.course.skills):
                out.append(
                    TruthMastery(
                        school=ln.course.school,
                        course=ln.course.id,
                        home_page=ln.home,
                        name=ln.name,
                        skill=skill.id,
                        initially_known=bool(ln.initially_known >> j & 1),
                        learned_ms=ln.learned_ms[j],
                        opportunities=ln.opp[j],
                        correct=ln.correct[j],
                        forgotten=ln.forgotten[j],
                        forgotten_ms=ln.forgotten_ms[j],
                    )
                )
        return out


class _StatementBuilder:
    """Builds the statements of one session (one learner, one AU, one cmi5 session id)."""

    __slots__ = ("au", "course", "learner", "rng", "session", "video_session")

    def __init__(self, rng: random.Random, learner: _Learner, au: _AU, session: str) -> None:
        self.rng = rng
        self.learner = learner
        self.au = au
        self.session = session
        self.course = learner.course
        self.video_session = ""

    def _base(self, verb: str, obj: dict[str, Any], ts: int, context: dict[str, Any]) -> dict[str, Any]:
        ln = self.learner
        return {
            "id": _uuid(self.rng),
            "actor": {"objectType": "Agent", "account": {"homePage": ln.home, "name": ln.name}},
            "verb": {"id": verb, "display": {"en-US": verb.rsplit("/", 1)[1]}},
            "object": obj,
            "context": context,
            "timestamp": format_ts(ts),
        }

    def _context(self, category: list[str] | None, extra: dict[str, Any] | None, parent: bool) -> dict[str, Any]:
        ln = self.learner
        activities: dict[str, Any] = {}
        if parent:
            activities["parent"] = [{"objectType": "Activity", "id": self.au.id, "definition": {"type": AU_TYPE}}]
        activities["grouping"] = [
            {
                "objectType": "Activity",
                "id": self.course.id,
                "definition": {"name": {"en-US": self.course.name}, "type": COURSE_ACTIVITY_TYPE},
            }
        ]
        if category:
            activities["category"] = [{"objectType": "Activity", "id": c} for c in category]
        extensions = {CMI5_SESSION: self.session, DEFAULT_COHORT_EXTENSION: ln.cohort_key}
        if extra:
            extensions.update(extra)
        return {"registration": ln.registration, "contextActivities": activities, "extensions": extensions}

    def _au_object(self) -> dict[str, Any]:
        return {
            "objectType": "Activity",
            "id": self.au.id,
            "definition": {"name": {"en-US": self.au.name}, "type": AU_TYPE},
        }

    def cmi5(self, verb: str, ts: int, launched: bool = False, duration_ms: int | None = None) -> dict[str, Any]:
        extra = None
        if launched:
            extra = {
                CMI5_LAUNCHMODE: "Normal",
                CMI5_LAUNCHURL: self.au.id + "/index.html",
                CMI5_MOVEON_EXT: "CompletedAndPassed" if self.au.questions else "Completed",
            }
        stmt = self._base(verb, self._au_object(), ts, self._context([CMI5_CATEGORY], extra, parent=False))
        if duration_ms is not None:
            stmt["result"] = {"duration": iso_duration(duration_ms)}
        return stmt

    def completed(self, ts: int, duration_ms: int) -> dict[str, Any]:
        stmt = self._base(
            VERB_COMPLETED, self._au_object(), ts, self._context([CMI5_CATEGORY, CMI5_MOVEON], None, parent=False)
        )
        stmt["result"] = {"completion": True, "duration": iso_duration(duration_ms)}
        return stmt

    def judged(self, ts: int, duration_ms: int, score: float) -> dict[str, Any]:
        passed = score >= MASTERY_SCORE
        stmt = self._base(
            VERB_PASSED if passed else VERB_FAILED,
            self._au_object(),
            ts,
            self._context([CMI5_CATEGORY, CMI5_MOVEON], {CMI5_MASTERYSCORE: MASTERY_SCORE}, parent=False),
        )
        stmt["result"] = {
            "score": {"scaled": round(score, 4)},
            "success": passed,
            "duration": iso_duration(duration_ms),
        }
        return stmt

    def page(self, item: _Item, ts: int) -> dict[str, Any]:
        obj = {"objectType": "Activity", "id": item.id, "definition": {"name": {"en-US": item.name}, "type": PAGE_TYPE}}
        return self._base(VERB_EXPERIENCED, obj, ts, self._context(None, None, parent=True))

    def answer(self, item: _Item, ts: int, ok: bool, work_ms: int) -> dict[str, Any]:
        skill = self.course.skills[item.skill]
        obj = {
            "objectType": "Activity",
            "id": item.id,
            "definition": {
                "name": {"en-US": item.name},
                "type": QUESTION_TYPE,
                "interactionType": "choice",
                "correctResponsesPattern": [item.correct],
                "choices": [{"id": c, "description": {"en-US": f"Option {c.upper()}"}} for c in _CHOICES],
                "extensions": {SKILL_EXTENSION: [skill.id]},
            },
        }
        stmt = self._base(VERB_ANSWERED, obj, ts, self._context(None, None, parent=True))
        response = item.correct if ok else self.rng.choice([c for c in _CHOICES if c != item.correct])
        stmt["result"] = {
            "score": {"scaled": 1.0 if ok else 0.0, "raw": 1 if ok else 0, "min": 0, "max": 1},
            "success": ok,
            "response": response,
            "duration": iso_duration(work_ms),
        }
        return stmt

    def video(self, item: _Item, t: int) -> tuple[int, list[_Event]]:
        """``played``, then ``completed`` at the end, or ``paused`` part-way and maybe resumed to the end."""
        rng = self.rng
        self.video_session = _uuid(rng)
        length = item.length_s
        events: list[_Event] = []
        step = rng.randint(2_000, 8_000)
        t += step
        events.append((t, self._video, (VIDEO_PLAYED, item, t, {VIDEO_TIME: 0.0}), step, None))
        watched = length if rng.random() < 0.4 else rng.randint(max(10, length // 5), length)
        t += watched * 1000
        segments = f"0[.]{watched}"
        if watched < length:
            ext = {VIDEO_TIME: float(watched), VIDEO_PROGRESS: round(watched / length, 3), VIDEO_SEGMENTS: segments}
            events.append((t, self._video, (VIDEO_PAUSED, item, t, ext), watched * 1000, None))
            if rng.random() < 0.4:  # leaves the video unfinished
                return t, events
            step = rng.randint(1_000, 5_000)
            t += step
            events.append((t, self._video, (VIDEO_PLAYED, item, t, {VIDEO_TIME: float(watched)}), step, None))
            segments += f"[,]{watched}[.]{length}"
            rest = length - watched
        else:
            rest = length
        t += 0 if watched == length else rest * 1000
        ext = {VIDEO_TIME: float(length), VIDEO_PROGRESS: 1.0, VIDEO_SEGMENTS: segments}
        events.append((t, self._video, (VERB_COMPLETED, item, t, ext), rest * 1000, None))
        return t, events

    def _video(self, verb: str, item: _Item, ts: int, result_ext: dict[str, Any]) -> dict[str, Any]:
        obj = {
            "objectType": "Activity",
            "id": item.id,
            "definition": {"name": {"en-US": item.name}, "type": VIDEO_TYPE},
        }
        ctx = self._context(
            [VIDEO_PROFILE], {VIDEO_SESSION: self.video_session, VIDEO_LENGTH: float(item.length_s)}, parent=True
        )
        stmt = self._base(verb, obj, ts, ctx)
        stmt["result"] = {"extensions": result_ext}
        if verb == VERB_COMPLETED:
            stmt["result"]["completion"] = True
            stmt["result"]["duration"] = iso_duration(item.length_s * 1000)
        return stmt


def simulate(
    config: SimulationConfig, on_truth: Callable[[TruthRecord], Any] | None = None
) -> Iterator[SimulatedStatement]:
    """Endless, deterministic stream of statements in event-time order (see :class:`Simulation`)."""
    return iter(Simulation(config, on_truth))
