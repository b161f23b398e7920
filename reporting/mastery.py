"""Mastery in the operators' app: the current estimate per learner × skill (the cohort's heatmap),
each estimate over time (``mastery_history``, the learner page) and the "mastery stalled" rule.

``mastery_history`` keeps, per event time, the newest estimate the pipeline made for that time.
When a voided attempt is undone, the stream worker writes a new estimate (higher version) at
the event time of the newest attempt still counted; the points after it were made with the
voided attempt and are superseded. :func:`current_series` drops them: a point is kept when
its version is above every version at an earlier event time (versions only grow).

The rule (:func:`stalled`), per learner × skill, on that series, ``N`` = ``stalled_attempts``
and ``D`` = ``stalled_within_days`` (``streams.config.HealthThresholds``, per-school overrides):
the learner is still practising the skill (an attempt counted within ``D`` days of the
cohort's newest event, the "now" inactivity is measured from), has made at least ``N``
attempts since an earlier estimate, has not mastered it (P < 0.95) and P(mastery) now is not
above that earlier estimate (the newest one made at least ``N`` attempts ago).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from schemas.clickhouse.ddl import needs_mapping

from .scope import LEARNER_IN_SCOPE

DAY_MS = 86_400_000
# P(mastery) from which a skill counts as mastered (reporting/README.md, query 06).
MASTERED = 0.95

_LEARNERS = "has(CAST({learners:Array(String)} AS Array(String)), learner)"
# The current estimate of each skill of the course for the given learners (the heatmap).
COHORT_MASTERY_SQL = (
    "SELECT learner, skill, p_mastery FROM {db}.mastery FINAL "
    "WHERE school = {school:String} AND course = {course:String} AND " + _LEARNERS + " AND " + LEARNER_IN_SCOPE
    + " ORDER BY learner, skill"
)
# Every estimate kept for the given learners in the course, per event time (newest version).
MASTERY_HISTORY_SQL = (
    "SELECT learner, skill, toUnixTimestamp64Milli(event_time) AS ms, argMax(p_mastery, version), "
    "argMax(observations, version), max(version) FROM {db}.mastery_history "
    "WHERE school = {school:String} AND course = {course:String} AND " + _LEARNERS + " AND " + LEARNER_IN_SCOPE
    + " GROUP BY learner, skill, event_time ORDER BY learner, skill, event_time"
)
# The same for the learner × skill pairs the stalled rule can flag: the newest estimate (highest
# version: the last point of the series) is at or after ``since`` (Unix seconds) and below mastered.
_CANDIDATES = (
    " AND (learner, skill) IN (SELECT learner, skill FROM {db}.mastery_history WHERE school = {school:String} AND "
    "course = {course:String} AND " + _LEARNERS + " GROUP BY learner, skill HAVING "
    "toUnixTimestamp(argMax(event_time, version)) >= {since:UInt32} AND argMax(p_mastery, version) < {mastered:Float64})"
)
STALLED_CANDIDATES_SQL = MASTERY_HISTORY_SQL.replace(" GROUP BY learner, skill, event_time", _CANDIDATES
                                                     + " GROUP BY learner, skill, event_time")  # fmt: skip
_MS_1816 = ("toUnixTimestamp64Milli(event_time)", "toUInt64(toUnixTimestamp(event_time)) * 1000")
# 18.16 has no toUnixTimestamp64Milli and keeps whole seconds: its event_time in ms.
MASTERY_HISTORY_SQL_1816 = MASTERY_HISTORY_SQL.replace(*_MS_1816)
STALLED_CANDIDATES_SQL_1816 = STALLED_CANDIDATES_SQL.replace(*_MS_1816)


@dataclass(frozen=True)
class Point:
    """One estimate of a learner × skill: when (event time, ms), P(mastery), attempts counted, version."""

    at_ms: int
    p_mastery: float
    observations: int
    version: int


def current_series(points: Iterable[Point]) -> list[Point]:
    """``points`` in event-time order without those superseded by an undo (see the module docstring)."""
    out: list[Point] = []
    top = -1
    for p in sorted(points, key=lambda x: x.at_ms):
        if p.version > top:
            out.append(p)
            top = p.version
    return out


def stalled(series: list[Point], now_ms: int, attempts: int, within_days: float) -> dict | None:
    """Why this skill's mastery counts as stalled (the figures of the rule), or None."""
    if not series or attempts < 1:
        return None
    now = series[-1]
    if now.p_mastery >= MASTERED or now_ms - now.at_ms > within_days * DAY_MS:
        return None
    earlier = [p for p in series[:-1] if p.observations <= now.observations - attempts]
    if not earlier:
        return None
    then = earlier[-1]
    if now.p_mastery > then.p_mastery:
        return None
    return {"p_mastery": round(now.p_mastery, 4), "was": round(then.p_mastery, 4),
            "attempts_since": now.observations - then.observations}  # fmt: skip


def history_rows(ch, params: dict, stalled_since_ms: int | None = None) -> dict[tuple[str, str], list[Point]]:
    """``MASTERY_HISTORY_SQL`` on ``ch`` (``params``: school, course, learners, scope), per learner × skill;
    with ``stalled_since_ms``, only the pairs :func:`stalled` can flag when practised since then."""
    old = needs_mapping(ch.server_version())
    if stalled_since_ms is None:
        sql = MASTERY_HISTORY_SQL_1816 if old else MASTERY_HISTORY_SQL
    else:
        sql = STALLED_CANDIDATES_SQL_1816 if old else STALLED_CANDIDATES_SQL
        # Whole seconds rounded down: a superset of the pairs; stalled() applies the exact bound.
        params = {**params, "since": max(0, stalled_since_ms // 1000), "mastered": MASTERED}
    out: dict[tuple[str, str], list[Point]] = {}
    for learner, skill, ms, p, obs, version in ch.query(sql, params):
        out.setdefault((str(learner), str(skill)), []).append(Point(int(ms), float(p), int(obs), int(version)))
    return out


def heatmap_rows(cohort: dict) -> list[dict]:
    """The cells of a cohort answer's heatmap (``reporting.drilldown.cohort_learners``), one per learner × skill."""
    return [{"learner": x["learner"], "name": x["name"], "skill": skill, "p_mastery": p}
            for x in cohort["learners"] for skill, p in sorted(x["mastery"].items())]  # fmt: skip
