"""One learner's envelope → state changes and derived records. Pure: no I/O, no clock.

The learner stage keeps, per learner (table key = learner pseudonym, co-partitioned with
``xapi.statements``), one state document::

    {"o": last applied source offset,
     "c": {course: engagement state (see engagement.logic) + "sc" school, "co" cohort,
                   "cb" cohort-feed buckets {hour: [active_ms, last_ms, version]}},
     "k": {skill: BKT state (see mastery.logic)},
     "vd": [statement ids voided before they arrived],
     "a": activity counts (see activity.logic)}

and per source partition ``{"mx": newest statement time seen, "o": last offset}``, whose
watermark (``mx`` minus a lag) clamps the cohort feed: a contribution to an hour before
the watermark is booked in the watermark's hour instead, so every bucket before the
watermark is final and the cohort stage can evaluate it deterministically.

Redelivery (at-least-once after a crash): an envelope at or below ``o`` is not applied
again; its records are re-emitted from the current state instead, so records lost in the
crash (sent but not acknowledged) still reach the topic. Re-emitted records carry their
stored versions, so they change nothing downstream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from schemas.envelope import StatementEnvelope
from schemas.errors import InvalidStatement
from schemas.records import ActivityRecord, EngagementRecord, MasteryRecord
from schemas.xapi.duration import duration_ms

from ..activity import logic as activity
from ..config import HOUR_MS, StreamsConfig
from ..engagement import logic as engagement
from ..mastery import logic as mastery
from ..timeparse import timestamp_ms


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


def short_id(statement_id: str) -> str:
    return statement_id.replace("-", "").lower()[:16]


@dataclass
class Outputs:
    """Records of one processing batch, coalesced per key: the last version wins.

    ``cohort`` maps ``(cohort key, learner, hour)`` to the bucket message fields.
    """

    engagement: dict[tuple, EngagementRecord] = field(default_factory=dict)
    mastery: dict[tuple, MasteryRecord] = field(default_factory=dict)
    activity: dict[tuple, ActivityRecord] = field(default_factory=dict)
    cohort: dict[tuple, dict[str, Any]] = field(default_factory=dict)
    statements: int = 0
    late: int = 0


def cohort_key(school: str, course: str, cohort: str) -> str:
    return f"{school}|{course}|{cohort}"


class LearnerLogic:
    """Applies envelopes to learner and partition state; collects records into :class:`Outputs`."""

    def __init__(self, config: StreamsConfig, model: mastery.MasteryModel) -> None:
        self.config = config
        self.model = model
        self.eng = config.engagement
        self.lag = config.health.watermark_lag_ms

    # -- records from state ---------------------------------------------------------
    def _engagement(self, out: Outputs, learner: str, course: str, cst: dict[str, Any], hours: set[int]) -> None:
        days = set()
        for hr in hours:
            f = cst["h"].get(str(hr))
            if f is None:
                continue
            out.engagement[(learner, course, "hour", hr)] = EngagementRecord(
                cst["sc"], course, cst["co"], learner, "hour", hr, f[0], f[1], f[2], f[3], f[4]
            )
            days.add(engagement.day_of(hr))
        for day in days:
            f = engagement.day_figures(cst, day)
            out.engagement[(learner, course, "day", day)] = EngagementRecord(
                cst["sc"], course, cst["co"], learner, "day", day, f[0], f[1], f[2], f[3], f[4]
            )

    def _cohort(self, out: Outputs, learner: str, course: str, cst: dict[str, Any], hour: int) -> None:
        a, last, v = cst["cb"][str(hour)]
        key = cohort_key(cst["sc"], course, cst["co"])
        out.cohort[(key, learner, hour)] = {
            "k": "b", "school": cst["sc"], "course": course, "cohort": cst["co"], "learner": learner,
            "hour": hour, "a": a, "l": last, "v": v,
        }

    def _mastery(self, out: Outputs, school: str, learner: str, skill: str, sk: dict[str, Any]) -> None:
        out.mastery[(learner, skill)] = MasteryRecord(
            school, sk["course"], learner, skill, round(sk["p"], 9), sk["n"], sk["c"], sk["ts"], sk["v"]
        )

    def reemit(self, state: dict[str, Any], env: StatementEnvelope, out: Outputs) -> None:
        """Records of everything ``env`` may have touched, from the current state (redelivery)."""
        for course in {e.course for e in env.entries}:
            cst = state.get("c", {}).get(course)
            if cst is None or "sc" not in cst:
                continue
            self._engagement(out, env.learner, course, cst, {int(h) for h in cst.get("h", {})})
            for hour in cst.get("cb", {}):
                self._cohort(out, env.learner, course, cst, int(hour))
        for skill, sk in state.get("k", {}).items():
            self._mastery(out, env.school, env.learner, skill, sk)
        act = state.get("a", {})
        for key in act.get("h", {}):
            r = activity.current(act, env.learner, key)
            out.activity[(r.learner, r.course, r.cohort, r.hour_ms)] = r

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
        if offset <= state.get("o", -1):
            self.reemit(state, env, out)
            return False
        learner = env.learner
        courses: dict[str, Any] = state.setdefault("c", {})
        skills: dict[str, Any] = state.setdefault("k", {})
        mx = part.get("mx")
        lag = self.lag
        wm_hour = None if mx is None else (mx - lag) - (mx - lag) % HOUR_MS
        eng_dirty: dict[str, set[int]] = {}
        cb_dirty: dict[str, set[int]] = {}
        apply_statement = engagement.apply_statement
        eng_params = self.eng
        for entry, t in zip(env.entries, timestamps):
            stmt = entry.statement
            out.statements += 1
            if mx is None or t > mx:
                mx = t
                wm_hour = (mx - lag) - (mx - lag) % HOUR_MS
            verb = stmt.get("verb")
            if verb is not None and verb.get("id") == mastery.VOIDED_VERB:
                target = mastery.voided_target(stmt)
                if target is not None:
                    self._void(state, skills, env, target, out)
                    continue  # a voiding statement is bookkeeping, not learning activity
            course = entry.course
            cst = courses.get(course)
            if cst is None:
                cst = courses[course] = {}
            cst["sc"] = env.school
            cst["co"] = entry.cohort
            result = stmt.get("result")
            ch = apply_statement(cst, t, _duration(result, stmt) if result else 0, eng_params)
            if not ch.hours:
                out.late += 1
            else:
                dirty = eng_dirty.get(course)
                if dirty is None:
                    dirty = eng_dirty[course] = set()
                dirty.update(ch.hours)
                cb = cst.get("cb")
                if cb is None:
                    cb = cst["cb"] = {}
                touched = cb_dirty.get(course)
                if touched is None:
                    touched = cb_dirty[course] = set()
                n = cst["n"]
                for hr, d in ch.active_delta.items():
                    eff = max(wm_hour, hr)
                    key = str(eff)
                    b = cb.get(key)
                    if b is None:
                        b = cb[key] = [0, 0, 0]
                    b[0] += d
                    b[2] = n
                    touched.add(eff)
                th = t - t % HOUR_MS
                eff = max(wm_hour, th)
                key = str(eff)
                b = cb.get(key)
                if b is None:
                    b = cb[key] = [0, 0, 0]
                b[1] = max(b[1], t)
                b[2] = n
                touched.add(eff)
            if result:
                self._observe(state, skills, env, course, stmt, result, t, out)
        part["mx"] = mx
        state["o"] = offset
        for course, hours in eng_dirty.items():
            self._engagement(out, learner, course, courses[course], hours)
            engagement.prune(courses[course])
        for course, hours in cb_dirty.items():
            cst = courses[course]
            for hour in hours:
                self._cohort(out, learner, course, cst, hour)
            # Buckets behind the watermark were sent and can no longer change.
            wm_hour = engagement.hour_of(mx - self.lag)
            for key in [k for k in cst["cb"] if int(k) < wm_hour]:
                del cst["cb"][key]
        for r in activity.apply_envelope(state.setdefault("a", {}), env, offset, timestamps):
            out.activity[(r.learner, r.course, r.cohort, r.hour_ms)] = r
        return True

    def _void(self, state: dict[str, Any], skills: dict[str, Any], env: StatementEnvelope, target: str,
              out: Outputs) -> None:
        sid = short_id(target)
        changed = mastery.undo(skills, sid, self.model)
        if changed:
            for skill in changed:
                self._mastery(out, env.school, env.learner, skill, skills[skill])
        else:
            pending = state.setdefault("vd", [])
            pending.append(sid)
            del pending[: -mastery.PENDING_VOIDS]

    def _observe(
        self, state: dict[str, Any], skills: dict[str, Any], env: StatementEnvelope, course: str,
        stmt: dict[str, Any], result: dict[str, Any], t: int, out: Outputs,
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
        sid = short_id(str(stmt.get("id", "")))
        pending = state.get("vd")
        if pending and sid in pending:
            pending.remove(sid)
            return
        for skill in names:
            b = self.model.params(skill)
            ok = mastery.observation(stmt, b)
            if ok is None:
                continue
            sk = mastery.observe(skills, skill, course, sid, ok, t, b)
            self._mastery(out, env.school, env.learner, skill, sk)


def partition_watermark(part: dict[str, Any], lag_ms: int) -> int | None:
    mx = part.get("mx")
    return None if mx is None else mx - lag_ms


__all__ = ["HOUR_MS", "LearnerLogic", "Outputs", "cohort_key", "parse_timestamps", "partition_watermark"]
