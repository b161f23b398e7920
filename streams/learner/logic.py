"""One learner's envelope → state changes and derived records. Pure: no I/O, no clock.

The learner stage keeps, per learner (table key = learner pseudonym, co-partitioned with
``xapi.statements``), one state document (stored with these compact keys, read and written
through the named views of :mod:`streams.learner.state`)::

    {"o": last applied source offset, "p": its partition,
     "c": {course: engagement state (see engagement.logic) + "sc" school, "co" cohort,
                   "cb" cohort-feed buckets {hour: [active_ms, last_ms, version]},
                   "i" statements applied {statement key: timestamp ms}},
     "k": {skill: BKT state (see mastery.logic)},
     "vx": [keys of the voiding statements this learner sent, newest last]}

and per source partition ``{"mx": newest statement time seen, "o": last offset,
"vd": {statement key: 1} voids whose target was not found (oldest first)}``, whose
watermark (``mx`` minus a lag) clamps the cohort feed: a contribution to an hour before
the watermark is booked in the watermark's hour instead, so every bucket before the
watermark is final and the cohort stage can evaluate it deterministically.

**Each statement id is applied once** (a statement reaches ``xapi.statements`` again at
a new offset when a producer re-sends it: a bridge page after a crash, a replayed chunk, a
restarted simulator, an export replayed by an operator). A statement is identified by its
*key*, a 64-bit digest of its id (:func:`statement_key`). Per learner × course the state
remembers the key and timestamp of every statement it applied at or after the course's
horizon ``hz`` (the engagement late rule: ``hour(newest − lateness)``). What that gives,
exactly:

- engagement figures and the cohort feed: a statement older than ``hz`` changes nothing
  (late), and a later copy of it has the same timestamp, so it is late too; a statement at
  or after ``hz`` is applied only if its key is not remembered. Hence every statement id
  counts at most once, with no time limit, for copies that carry the timestamp of the
  first (every re-send of a stored statement does). A copy with another timestamp (an
  LRS that re-accepted a statement without ``timestamp`` and set it to its new ``stored``)
  counts once as long as the first copy's timestamp is not older than ``hz``;
- mastery: an observation at or after ``hz`` is deduplicated the same way; a late one
  (mastery keeps counting late attempts: an offline app syncing yesterday's answers) is
  recognised while the original is still in the skill's undo history (the last
  ``mastery.HISTORY`` observations of that learner × skill);
- keys are forgotten when ``hz`` passes their timestamp, so the memory is bounded by the
  statements of the last one to two hours of each learner × course's event time.

The first copy wins: a copy never changes a figure, whatever it carries.

**Voiding** (verb ``voided``, object ``StatementRef``) undoes the target's mastery
observations (engagement keeps counting a voided statement: the learner did act). A void
is applied where its own actor lives; when the target is one of this learner's
observations it is undone at once, when it is one of this learner's other statements
there is nothing to undo. Otherwise the target belongs to someone else (an instructor or
the LMS voided a learner's answer) or has not arrived yet: the agent resolves it (see
``streams.learner.stage``), so :meth:`LearnerLogic.apply` only lists it in
``Outputs.voids``. Voids are idempotent: a second void of the same target changes nothing.

Redelivery (at-least-once after a crash): an envelope at or below ``o`` is not applied
again; its records are re-emitted from the current state instead, so records lost in the
crash (sent but not acknowledged) still reach the topic. Re-emitted records carry their
stored versions, so they change nothing downstream.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from schemas.envelope import StatementEntry, StatementEnvelope
from schemas.errors import InvalidStatement
from schemas.records import EngagementRecord, MasteryRecord
from schemas.xapi.duration import duration_ms

from ..config import HOUR_MS, StreamsConfig
from ..engagement import logic as engagement
from ..mastery import logic as mastery
from ..mastery import state as skill_state
from ..mastery.state import SkillDoc
from ..timeparse import timestamp_ms
from .state import (
    ACTIVE,
    COURSE_APPLIED,
    COURSE_COHORT,
    COURSE_FEED_BUCKETS,
    COURSE_HORIZON,
    COURSE_HOURS,
    COURSE_SCHOOL,
    COURSE_SEQUENCE,
    LAST,
    PARTITION_PENDING_VOIDS,
    VERSION,
    CourseState,
    LearnerState,
    PartitionState,
)

# Keys of a learner's own voiding statements remembered (a re-sent void is skipped early;
# applying one again would change nothing anyway).
OWN_VOIDS = 200


def parse_timestamps(env: StatementEnvelope) -> list[int]:
    """Every statement's timestamp (ms); raises InvalidStatement before any state changes."""
    out = []
    for i, e in enumerate(env.entries):
        ts = e.statement.get("timestamp")
        if not isinstance(ts, str):
            raise InvalidStatement("statement.timestamp", "canonical statement lacks a timestamp", f"$.statements[{i}]")
        out.append(timestamp_ms(ts, f"$.statements[{i}].statement.timestamp"))
    return out


# cmi5 (§9.5.4.1, §9.7): the duration of completed/passed/failed/terminated is the time since
# "initialized" — the whole session, breaks included — not the duration of an activity.
CMI5_CATEGORY = "https://w3id.org/xapi/cmi5/context/categories/cmi5"
CMI5_SESSION_VERBS = frozenset(
    f"http://adlnet.gov/expapi/verbs/{v}" for v in ("completed", "passed", "failed", "terminated")
)


def _is_cmi5_session_total(stmt: dict[str, Any]) -> bool:
    if (stmt.get("verb") or {}).get("id") not in CMI5_SESSION_VERBS:
        return False
    category = ((stmt.get("context") or {}).get("contextActivities") or {}).get("category") or ()
    if isinstance(category, dict):
        category = [category]
    return any(isinstance(a, dict) and a.get("id") == CMI5_CATEGORY for a in category)


def _duration(result: dict[str, Any], stmt: dict[str, Any]) -> int:
    """``result.duration`` as an activity interval, in ms (0: none, or a cmi5 session total)."""
    d = result.get("duration") if isinstance(result, dict) else None
    if not isinstance(d, str) or _is_cmi5_session_total(stmt):
        return 0
    try:
        return duration_ms(d)
    except InvalidStatement:
        return 0  # validated upstream; a bad duration only loses its own time


def statement_key(statement_id: str) -> str:
    """What the state remembers of a statement id: 64 bits of BLAKE2b, hex.

    A digest rather than a prefix: time-based UUIDs (v1, v7) share their leading digits,
    and version-1 UUIDs from one host their trailing ones. Two distinct ids of one learner
    collide with probability about n²/2⁶⁵ for n remembered keys.
    """
    return hashlib.blake2b(statement_id.lower().encode(), digest_size=8).hexdigest()


@dataclass
class Outputs:
    """Records of one processing batch, coalesced per key: the last version wins.

    ``cohort`` maps ``(cohort key, learner, hour)`` to the bucket message fields.
    ``voids``: keys of void targets the learner stage did not find in the voiding learner's
    own state (resolved by the agent). ``observed``: ``(statement key, learner, +1)`` for an
    observation entering a skill's undo history, ``(…, -1)`` for one leaving it (folded or
    undone), in order: the agent's index of observation owners follows them.

    ``coalesce``: the engagement and cohort-feed records of a learner × course are made once,
    by :meth:`LearnerLogic.flush` (the learner stage calls it once per batch), from the
    state as it is then, instead of after every envelope (each making the records the next
    envelope of that learner supersedes). ``pending`` holds what changed until then. The
    records are those of the last envelope that changed each key: a record's figures change
    only with its hour's (or day's) kept figures, which only an envelope that lists the hour
    as changed can change; what the state is about to forget (days before the horizon's
    day, cohort-feed buckets behind the watermark) is made before it goes.
    """

    engagement: dict[tuple, EngagementRecord] = field(default_factory=dict)
    mastery: dict[tuple, MasteryRecord] = field(default_factory=dict)
    cohort: dict[tuple, dict[str, Any]] = field(default_factory=dict)
    voids: list[str] = field(default_factory=list)
    observed: list[tuple[str, str, int]] = field(default_factory=list)
    statements: int = 0
    late: int = 0
    duplicates: int = 0
    coalesce: bool = False
    pending: dict[tuple[str, str], Pending] = field(default_factory=dict)  # (learner, course) → records to make


@dataclass(slots=True)
class Pending:
    """A learner × course's records not made yet: its course state, the engagement hours and
    cohort-feed hours that changed."""

    course_state: dict[str, Any]
    hours: set[int] = field(default_factory=set)
    feed_hours: set[int] = field(default_factory=set)


def cohort_key(school: str, course: str, cohort: str) -> str:
    return f"{school}|{course}|{cohort}"


@dataclass(slots=True)
class EnvelopeRun:
    """What applying one envelope gathers before its records are made."""

    learner: LearnerState
    partition: PartitionState
    learner_id: str
    school: str
    courses: dict[str, dict[str, Any]]
    skills: dict[str, dict[str, Any]]
    lag: int
    newest: int | None = None  # the partition's newest statement time, this envelope's included
    watermark_hour: int | None = None  # hour of ``newest - lag``: no cohort-feed bucket goes before it
    engagement_hours: dict[str, set[int]] = field(default_factory=dict)  # course → hours whose figures changed
    feed_hours: dict[str, set[int]] = field(default_factory=dict)  # course → cohort-feed buckets changed
    horizon_moved: set[str] = field(default_factory=set)  # courses whose horizon advanced

    def see(self, t: int) -> None:
        """A statement time: the partition's newest time and watermark hour follow it."""
        if self.newest is None or t > self.newest:
            self.newest = t
            self.watermark_hour = (t - self.lag) - (t - self.lag) % HOUR_MS


class LearnerLogic:
    """Applies envelopes to learner and partition state; collects records into :class:`Outputs`.

    ``state`` and ``part`` arguments are the stored documents (see :mod:`.state`).
    """

    def __init__(self, config: StreamsConfig, model: mastery.MasteryModel) -> None:
        self.config = config
        self.model = model
        self.eng = config.engagement
        self.lag = config.health.watermark_lag_ms

    # -- records from state ---------------------------------------------------------
    def _engagement(self, out: Outputs, learner: str, course: str, cst: dict[str, Any], hours: set[int]) -> None:
        # Per record: the document indexed by its named keys (a view costs a call per field).
        days = set()
        h = cst[COURSE_HOURS]
        school, cohort = cst[COURSE_SCHOOL], cst[COURSE_COHORT]
        records = out.engagement
        for hr in hours:
            f = h.get(str(hr))
            if f is None:
                continue
            records[(learner, course, "hour", hr)] = EngagementRecord(
                school, course, cohort, learner, "hour", hr, f[0], f[1], f[2], f[3], f[4]
            )
            days.add(hr - hr % engagement.DAY_MS)
        for day in days:
            f = engagement.day_figures(cst, day)
            records[(learner, course, "day", day)] = EngagementRecord(
                school, course, cohort, learner, "day", day, f[0], f[1], f[2], f[3], f[4]
            )

    def _cohort(self, out: Outputs, learner: str, course: str, cst: dict[str, Any], hour: int) -> None:
        b = cst[COURSE_FEED_BUCKETS][str(hour)]
        school, cohort = cst[COURSE_SCHOOL], cst[COURSE_COHORT]
        out.cohort[(cohort_key(school, course, cohort), learner, hour)] = {
            "school": school, "course": course, "cohort": cohort, "learner": learner,
            "hour": hour, "a": b[ACTIVE], "l": b[LAST], "v": b[VERSION],
        }

    def _mastery(self, out: Outputs, school: str, learner: str, skill: str, sk: SkillDoc) -> None:
        out.mastery[(learner, skill)] = MasteryRecord(
            sk.get(skill_state.SCHOOL) or school, sk[skill_state.COURSE], learner, skill,
            round(mastery.p_mastery(sk), 9), sk[skill_state.OBSERVED], sk[skill_state.CORRECT],
            sk[skill_state.NEWEST], sk[skill_state.VERSION],
        )

    def reemit(self, state: dict[str, Any], env: StatementEnvelope, out: Outputs) -> None:
        """Records of everything ``env`` may have touched, from the current state (redelivery)."""
        learner = LearnerState(state)
        for course in {e.course for e in env.entries}:
            cst = learner.known_courses.get(course)
            if cst is None or not CourseState(cst).placed:
                continue
            c = CourseState(cst)
            self._engagement(out, env.learner, course, cst, {int(h) for h in c.hours})
            for hour in c.feed_buckets:
                self._cohort(out, env.learner, course, cst, int(hour))
        for skill, sk in learner.known_skills.items():
            self._mastery(out, env.school, env.learner, skill, sk)

    # -- applying -------------------------------------------------------------------
    def apply(
        self,
        state: dict[str, Any],
        part: dict[str, Any],
        env: StatementEnvelope,
        offset: int,
        out: Outputs,
    ) -> bool:
        """Apply one envelope (``offset`` in its partition). Returns False if already applied.

        Raises InvalidStatement (before changing anything) if a timestamp is unreadable.
        """
        timestamps = parse_timestamps(env)
        learner, partition = LearnerState(state), PartitionState(part)
        if offset <= learner.offset:
            self.redeliver(learner, partition, env, timestamps, out)
            return False
        run = EnvelopeRun(learner, partition, env.learner, env.school, learner.courses(), learner.skills(), self.lag)
        if partition.newest is not None:
            run.see(partition.newest)
        for entry, t in zip(env.entries, timestamps):
            self.apply_statement(run, entry, t, out)
        partition.newest = run.newest
        learner.offset = offset
        self.emit_engagement(run, out)
        self.forget_keys_behind_horizons(run)
        self.emit_feed_buckets(run, out)
        if not out.coalesce:
            self.flush(out)
        return True

    def flush(self, out: Outputs) -> None:
        """Make the records of every learner × course changed since the last flush (see ``Outputs.coalesce``)."""
        for (learner, course), p in out.pending.items():
            if p.hours:
                self._engagement(out, learner, course, p.course_state, p.hours)
            for hour in p.feed_hours:
                self._cohort(out, learner, course, p.course_state, hour)
        out.pending.clear()

    @staticmethod
    def _pending(out: Outputs, learner: str, course: str, cst: dict[str, Any]) -> Pending:
        p = out.pending.get((learner, course))
        if p is None:
            p = out.pending[(learner, course)] = Pending(cst)
        return p

    def redeliver(
        self, learner: LearnerState, partition: PartitionState, env: StatementEnvelope, timestamps: list[int],
        out: Outputs,
    ) -> None:
        """An envelope at or below the learner's offset: its records again, from the state."""
        self.reemit(learner.doc, env, out)
        # The partition saw these statements too: its newest time is a maximum, so taking
        # them again is exact, and a partition state saved behind its learners' (a crash
        # between the two writes) catches up as in an uninterrupted run.
        newest = max(timestamps, default=None)
        if newest is not None and (partition.newest is None or newest > partition.newest):
            partition.newest = newest

    def apply_statement(self, run: EnvelopeRun, entry: StatementEntry, t: int, out: Outputs) -> None:
        # The per-statement path: the course document is indexed with the named keys of
        # .state directly (no view: see COURSE_SCHOOL there).
        stmt = entry.statement
        out.statements += 1
        if run.newest is None or t > run.newest:
            run.see(t)
        raw_id = stmt.get("id")
        sid = statement_key(raw_id) if isinstance(raw_id, str) else None
        verb = stmt.get("verb")
        if verb is not None and verb.get("id") == mastery.VOIDED_VERB:
            target = mastery.voided_target(stmt)
            if target is not None:
                self._void(run, sid, statement_key(target), out)
                return  # a voiding statement is bookkeeping, not learning activity
        course = entry.course
        cst = run.courses.get(course)
        if cst is None:
            cst = run.courses[course] = {}
        hz = cst.get(COURSE_HORIZON)
        late = hz is not None and t < hz
        applied = cst.get(COURSE_APPLIED)
        if applied is None:
            applied = cst[COURSE_APPLIED] = {}
        if sid is not None and not late:
            if sid in applied:
                out.duplicates += 1
                return
            applied[sid] = t
        cst[COURSE_SCHOOL] = run.school
        cst[COURSE_COHORT] = entry.cohort
        result = stmt.get("result")
        change = engagement.apply_statement(cst, t, _duration(result, stmt) if result else 0, self.eng)
        if cst.get(COURSE_HORIZON) != hz:
            run.horizon_moved.add(course)
        if not change.hours:
            out.late += 1
        else:
            self.book_activity(run, course, cst, change, t)
        if result and sid is not None:
            self._observe(run, course, stmt, result, sid, t, late, out)

    def book_activity(
        self, run: EnvelopeRun, course: str, cst: dict[str, Any], change: engagement.Change, t: int,
    ) -> None:
        """Mark the changed engagement hours; add the activity to the cohort-feed buckets.

        A contribution to an hour before the partition's watermark is booked in the
        watermark's hour: every bucket before the watermark is final.
        """
        hours = run.engagement_hours.get(course)
        if hours is None:
            hours = run.engagement_hours[course] = set()
        hours.update(change.hours)
        buckets = cst.get(COURSE_FEED_BUCKETS)
        if buckets is None:
            buckets = cst[COURSE_FEED_BUCKETS] = {}
        touched = run.feed_hours.get(course)
        if touched is None:
            touched = run.feed_hours[course] = set()
        n = cst[COURSE_SEQUENCE]
        wm_hour = run.watermark_hour
        assert wm_hour is not None  # run.see(t) came first
        for hr, d in change.active_delta.items():
            eff = max(wm_hour, hr)
            key = str(eff)
            b = buckets.get(key)
            if b is None:
                b = buckets[key] = [0, 0, 0]
            b[ACTIVE] += d
            b[VERSION] = n
            touched.add(eff)
        eff = max(wm_hour, t - t % HOUR_MS)
        key = str(eff)
        b = buckets.get(key)
        if b is None:
            b = buckets[key] = [0, 0, 0]
        b[LAST] = max(b[LAST], t)
        b[VERSION] = n
        touched.add(eff)

    def emit_engagement(self, run: EnvelopeRun, out: Outputs) -> None:
        """Note the changed hours; make now the records of those the prune is about to forget.

        Only a horizon that moved prunes anything: no statement makes an hour before the
        horizon (a late one changes nothing, an activity interval starts at the horizon).
        """
        for course, hours in run.engagement_hours.items():
            cst = run.courses[course]
            pending = self._pending(out, run.learner_id, course, cst).hours
            pending.update(hours)
            if course not in run.horizon_moved:
                continue
            hz = cst[COURSE_HORIZON]
            keep_from = hz - hz % engagement.DAY_MS  # what engagement.prune keeps
            gone = {hr for hr in pending if hr < keep_from}
            if gone:
                self._engagement(out, run.learner_id, course, cst, gone)
                pending -= gone
            engagement.prune(cst)

    def forget_keys_behind_horizons(self, run: EnvelopeRun) -> None:
        # Keys older than the horizon can go: a copy of theirs would be late anyway.
        for course in run.horizon_moved:
            CourseState(run.courses[course]).forget_applied_behind_horizon()

    def emit_feed_buckets(self, run: EnvelopeRun, out: Outputs) -> None:
        if not run.feed_hours:
            return
        assert run.newest is not None  # buckets come from statements, which move it
        cutoff = engagement.hour_of(run.newest - self.lag)
        for course, hours in run.feed_hours.items():
            cst = run.courses[course]
            pending = self._pending(out, run.learner_id, course, cst).feed_hours
            pending.update(hours)
            gone = [hour for hour in pending if hour < cutoff]
            for hour in gone:
                self._cohort(out, run.learner_id, course, cst, hour)
                pending.discard(hour)
            # Buckets behind the watermark were sent and can no longer change.
            CourseState(cst).forget_feed_buckets_before(cutoff)

    def _void(self, run: EnvelopeRun, sid: str | None, target: str, out: Outputs) -> None:
        own = run.learner.own_voids()
        if sid is not None:
            if sid in own:
                out.duplicates += 1
                return
            own.append(sid)
            del own[:-OWN_VOIDS]
        if self.undo(run.learner.doc, run.school, run.learner_id, target, out):
            return
        if any(target in CourseState(cst).applied_keys for cst in run.courses.values()):
            return  # one of this learner's statements, but not an observation: nothing to undo
        out.voids.append(target)

    def undo(self, state: dict[str, Any], school: str, learner: str, target: str, out: Outputs) -> bool:
        """Undo observation ``target`` in this learner's state; False if it holds none."""
        skills = LearnerState(state).known_skills
        if not skills:
            return False
        changed = mastery.undo(skills, target, self.model)
        for skill in changed:
            self._mastery(out, school, learner, skill, skills[skill])
            out.observed.append((target, learner, -1))
        return bool(changed)

    def _observe(
        self, run: EnvelopeRun, course: str, stmt: dict[str, Any], result: dict[str, Any], sid: str, t: int,
        late: bool, out: Outputs,
    ) -> None:
        if not isinstance(result, dict):
            return
        success = result.get("success")
        if success is None:
            score = result.get("score")
            if not score or score.get("scaled") is None:
                return  # not a scored attempt
        names = self.model.skills_of(course, stmt)
        if not names:
            return
        skills, school, learner = run.skills, run.school, run.learner_id
        if late and any(
            h[skill_state.KEY] == sid for name in names if name in skills for h in skills[name][skill_state.KEPT_HISTORY]
        ):
            out.duplicates += 1
            return  # a late copy of an observation still in the history
        pending = run.partition.doc.get(PARTITION_PENDING_VOIDS)
        voided = False
        if pending is not None and sid in pending:
            del pending[sid]
            voided = True
        folded: list[str] = []
        for skill in names:
            b = self.model.params(skill)
            ok = mastery.observation(stmt, b)
            if ok is None:
                continue
            if voided:
                sk = mastery.voided_first(skills, skill, course, b, school)
            else:
                sk = mastery.observe(skills, skill, course, sid, ok, t, b, school, folded)
                out.observed.append((sid, learner, 1))
            self._mastery(out, school, learner, skill, sk)
        for old in folded:
            out.observed.append((old, learner, -1))


def add_pending_void(part: dict[str, Any], target: str) -> None:
    """Remember a void whose target this partition has not seen (bounded, oldest dropped)."""
    pending = PartitionState(part).pending_voids_created()
    pending.pop(target, None)
    pending[target] = 1
    while len(pending) > mastery.PENDING_VOIDS:
        del pending[next(iter(pending))]


class OwnerIndex:
    """Statement key → ``[learner, partition, histories holding it]`` for the observations
    of the learners in this worker's active partitions. Derived from the table, never stored.
    """

    def __init__(self) -> None:
        self.owners: dict[str, list[Any]] | None = None

    @property
    def ready(self) -> bool:
        return self.owners is not None

    def reset(self) -> None:
        self.owners = None

    def build(self, items: Iterable[tuple[bytes, bytes]], held: Mapping[bytes, dict[str, Any]]) -> None:
        """From every learner state of the active partitions (``held``: this batch's states, newer)."""
        owners: dict[str, list[Any]] = {}

        def add(key: bytes, state: dict[str, Any]) -> None:
            view = LearnerState(state)
            learner, partition = key.decode(), view.partition
            for sk in view.known_skills.values():
                for h in sk[skill_state.KEPT_HISTORY]:
                    o = owners.get(h[skill_state.KEY])
                    if o is None:
                        owners[h[skill_state.KEY]] = [learner, partition, 1]
                    else:
                        o[2] += 1

        for key, raw in items:
            if key[:1] == b"\x00" or key in held:
                continue
            add(key, orjson.loads(raw))
        for key, state in held.items():
            if key[:1] != b"\x00":
                add(key, state)
        self.owners = owners

    def apply(self, ops: Iterable[tuple[str, str, int]], partition_of: dict[str, int]) -> None:
        owners = self.owners
        if owners is None:
            return
        for sid, learner, delta in ops:
            o = owners.get(sid)
            if delta > 0:
                if o is None or o[0] != learner:
                    owners[sid] = [learner, partition_of[learner], 1]
                else:
                    o[2] += 1
            elif o is not None and o[0] == learner:
                o[2] -= 1
                if o[2] <= 0:
                    del owners[sid]

    def owner(self, sid: str, partition: int) -> str | None:
        o = (self.owners or {}).get(sid)
        return o[0] if o is not None and o[1] == partition else None


def partition_watermark(part: dict[str, Any], lag_ms: int) -> int | None:
    mx = PartitionState(part).newest
    return None if mx is None else mx - lag_ms


__all__ = [
    "HOUR_MS", "LearnerLogic", "Outputs", "OwnerIndex", "add_pending_void", "cohort_key", "parse_timestamps", "partition_watermark",
    "statement_key",
]
