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

The cohort answer computes the rule in ClickHouse (:func:`stalled_skills`): it reads no history
into Python. :func:`stalled` states the same rule on one series; the tests hold the SQL to it
(tests/integration/test_mastery_stalled_sql.py, test_mastery_stalled_window.py).

Only the window's points are needed, nearly always: the series' newest point must lie in the
window (from ``since`` = now − ``D`` days on), and the series restricted to the window is its
tail, once the window's points are checked against the highest version before the window (one
number per pair, ``max(version)``). So ``STALLED_RECENT_SQL`` builds arrays of the window's rows
only and decides every pair with an estimate ``N`` attempts back inside the window; for the
others (fewer than ``N`` attempts in the window), "then" lies before it and ``STALLED_SQL`` reads
those learners' whole history. Both steps give the answer of ``STALLED_SQL`` alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from schemas.clickhouse.ddl import needs_mapping

from .scope import LEARNER_OF_COURSE_IN_SCOPE

DAY_MS = 86_400_000
# P(mastery) from which a skill counts as mastered (reporting/README.md, query 06).
MASTERED = 0.95

_LEARNERS = "has(CAST({learners:Array(String)} AS Array(String)), learner)"
# The current estimate of each skill of the course for the given learners (the heatmap).
COHORT_MASTERY_SQL = (
    "SELECT learner, skill, p_mastery FROM {db}.mastery FINAL "
    "WHERE school = {school:String} AND course = {course:String} AND " + _LEARNERS + " AND " + LEARNER_OF_COURSE_IN_SCOPE
    + " ORDER BY learner, skill"
)
# Every estimate kept for the given learners in the course, per event time (newest version).
MASTERY_HISTORY_SQL = (
    "SELECT learner, skill, toUnixTimestamp64Milli(event_time) AS ms, argMax(p_mastery, version), "
    "argMax(observations, version), max(version) FROM {db}.mastery_history "
    "WHERE school = {school:String} AND course = {course:String} AND " + _LEARNERS + " AND " + LEARNER_OF_COURSE_IN_SCOPE
    + " GROUP BY learner, skill, event_time ORDER BY learner, skill, event_time"
)
# The given learners as a set (one hash lookup a row, where has() scans the array each row).
_LEARNER_SET = "learner IN (SELECT arrayJoin(CAST({learners:Array(String)} AS Array(String))))"
# The stalled rule in SQL (window-free: 18.16 has no window functions), one row per flagged
# learner × skill: learner, skill, P now, P then, attempts since. Per pair, the history's rows
# sorted by (event time, version); ``points`` keeps the last row of each event time (its newest
# version: a replayed row is no extra attempt). ``series`` drops the points an undo superseded,
# as current_series() does: when versions rise with event time (no undo: nearly always) every
# point is kept; otherwise each point is checked against the highest version before it, an
# O(n²) step run only on those few pairs' arrays (``undone`` is empty for the others). The
# lambda reads ``points``: on 18.16 a lambda reading an alias that nothing else reads got a
# wrong array (tests/integration/test_mastery_stalled_sql.py).
STALLED_SQL = (
    "SELECT learner, skill, newest.2, back.2, toInt64(newest.3) - toInt64(back.3) FROM ("
    " SELECT learner, skill, series, series[length(series)] AS newest,"
    "  arrayFilter(x -> toInt64(x.3) <= toInt64(newest.3) - {attempts:Int64}, arrayPopBack(series)) AS earlier,"
    "  earlier[length(earlier)] AS back"
    " FROM ("
    "  SELECT learner, skill, arraySort(x -> (x.1, x.4),"
    "    groupArray((toInt64(toUnixTimestamp64Milli(event_time)), p_mastery, observations, version))) AS ordered,"
    "   arrayFilter((x, next) -> x.1 != next, ordered, arrayPushBack(arrayPopFront(arrayMap(x -> x.1, ordered)),"
    "    toInt64(-1))) AS points,"
    "   arrayAll((a, b) -> a.4 < b.4, arrayPopBack(points), arrayPopFront(points)) AS rising,"
    "   arrayFilter(x -> NOT rising, points) AS undone,"
    "   if(rising, points, arrayFilter((x, i) -> i = 1 OR x.4 > arrayReduce('max',"
    "    arraySlice(arrayMap(y -> y.4, points), 1, i - 1)), undone, arrayEnumerate(undone))) AS series"
    "  FROM {db}.mastery_history"
    "  WHERE school = {school:String} AND course = {course:String} AND " + _LEARNER_SET + " AND " + LEARNER_OF_COURSE_IN_SCOPE
    + "  GROUP BY learner, skill))"
    " WHERE newest.2 < {mastered:Float64} AND newest.1 >= {since_ms:Float64} AND notEmpty(earlier)"
    " AND newest.2 <= back.2"
    " ORDER BY learner, skill"
)
# Event time in ms, and whether a row is in the window (``since_ms`` on: where the newest point must be).
_MS = "toInt64(toUnixTimestamp64Milli(event_time))"
_IN_WINDOW = _MS + " >= {since_ms:Float64}"
# The rule on the window's rows (see the module docstring), one row per learner × skill that is
# flagged or undecided: learner, skill, P now, P then, attempts since, and ``undecided`` = 1 when
# no point of the window is N attempts back (then lies before the window: STALLED_SQL decides).
# ``before`` is the highest version before the window (-1: none): a window point is kept when
# its version is above it and above every version before it in the window; when the window's
# versions rise and start above ``before`` (no undo: nearly always) every point is kept. A pair
# may have no row in the window (an empty ``ordered``): its next event times are pushed, then popped.
STALLED_RECENT_SQL = (
    "SELECT learner, skill, newest.2, back.2, toInt64(newest.3) - toInt64(back.3), empty(earlier) FROM ("
    " SELECT learner, skill, series, series[length(series)] AS newest,"
    "  arrayFilter(x -> toInt64(x.3) <= toInt64(newest.3) - {attempts:Int64}, arrayPopBack(series)) AS earlier,"
    "  earlier[length(earlier)] AS back"
    " FROM ("
    "  SELECT learner, skill,"
    "   if(countIf(NOT (" + _IN_WINDOW + ")) = 0, toInt64(-1), toInt64(maxIf(version, NOT (" + _IN_WINDOW + "))))"
    "    AS before,"
    "   arraySort(x -> (x.1, x.4),"
    "    groupArrayIf((" + _MS + ", p_mastery, observations, version), " + _IN_WINDOW + ")) AS ordered,"
    "   arrayFilter((x, next) -> x.1 != next, ordered, arrayPopFront(arrayPushBack(arrayMap(x -> x.1, ordered),"
    "    toInt64(-1)))) AS points,"
    "   arrayAll((a, b) -> a.4 < b.4, arrayPopBack(points), arrayPopFront(points))"
    "    AND toInt64(points[1].4) > before AS rising,"
    "   arrayFilter(x -> NOT rising, points) AS undone,"
    "   if(rising, points, arrayFilter((x, i) -> toInt64(x.4) > before AND (i = 1 OR x.4 > arrayReduce('max',"
    "    arraySlice(arrayMap(y -> y.4, points), 1, i - 1))), undone, arrayEnumerate(undone))) AS series"
    "  FROM {db}.mastery_history"
    "  WHERE school = {school:String} AND course = {course:String} AND " + _LEARNER_SET + " AND " + LEARNER_OF_COURSE_IN_SCOPE
    + "  GROUP BY learner, skill))"
    " WHERE notEmpty(series) AND newest.2 < {mastered:Float64} AND (empty(earlier) OR newest.2 <= back.2)"
    " ORDER BY learner, skill"
)
_MS_1816 = ("toUnixTimestamp64Milli(event_time)", "toUInt64(toUnixTimestamp(event_time)) * 1000")
# 18.16 has no toUnixTimestamp64Milli and keeps whole seconds: its event_time in ms.
MASTERY_HISTORY_SQL_1816 = MASTERY_HISTORY_SQL.replace(*_MS_1816)
STALLED_SQL_1816 = STALLED_SQL.replace(*_MS_1816)
STALLED_RECENT_SQL_1816 = STALLED_RECENT_SQL.replace(*_MS_1816)


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


def history_rows(ch, params: dict) -> dict[tuple[str, str], list[Point]]:
    """``MASTERY_HISTORY_SQL`` on ``ch`` (``params``: school, course, learners, scope), per learner × skill."""
    sql = MASTERY_HISTORY_SQL_1816 if needs_mapping(ch.server_version()) else MASTERY_HISTORY_SQL
    out: dict[tuple[str, str], list[Point]] = {}
    for learner, skill, ms, p, obs, version in ch.query(sql, params):
        out.setdefault((str(learner), str(skill)), []).append(Point(int(ms), float(p), int(obs), int(version)))
    return out


def stalled_skills(ch, params: dict, now_ms: int, attempts: int, within_days: float) -> dict[str, list[dict]]:
    """:func:`stalled` for every learner × skill of ``params`` (school, course, learners, scope), computed
    in ClickHouse (``STALLED_RECENT_SQL``, then ``STALLED_SQL`` for the pairs it leaves undecided): per
    learner, the stalled skills with the rule's figures, by learner and skill."""
    if attempts < 1:
        return {}
    old_server = needs_mapping(ch.server_version())
    rule = {"attempts": attempts, "mastered": MASTERED, "since_ms": float(now_ms - within_days * DAY_MS)}
    found: dict[tuple[str, str], dict] = {}
    undecided: set[tuple[str, str]] = set()
    recent_sql = STALLED_RECENT_SQL_1816 if old_server else STALLED_RECENT_SQL
    for learner, skill, p_now, p_then, since, whole_history_needed in ch.query(recent_sql, {**params, **rule}):
        if whole_history_needed:
            undecided.add((str(learner), str(skill)))
        else:
            found[(str(learner), str(skill))] = _why(p_now, p_then, since)
    if undecided:
        whole_sql = STALLED_SQL_1816 if old_server else STALLED_SQL
        few = {**params, **rule, "learners": sorted({learner for learner, _ in undecided})}
        for learner, skill, p_now, p_then, since in ch.query(whole_sql, few):
            if (str(learner), str(skill)) in undecided:
                found[(str(learner), str(skill))] = _why(p_now, p_then, since)
    out: dict[str, list[dict]] = {}
    for (learner, skill), why in sorted(found.items()):
        out.setdefault(learner, []).append({"skill": skill, **why})
    return out


def _why(p_now, p_then, since) -> dict:
    """The rule's figures of one stalled skill: P now, P then, attempts since then."""
    return {"p_mastery": round(float(p_now), 4), "was": round(float(p_then), 4), "attempts_since": int(since)}


def heatmap_rows(cohort: dict) -> list[dict]:
    """The cells of a cohort answer's heatmap (``reporting.drilldown.cohort_learners``), one per learner × skill."""
    return [{"learner": x["learner"], "name": x["name"], "skill": skill, "p_mastery": p}
            for x in cohort["learners"] for skill, p in sorted(x["mastery"].items())]  # fmt: skip
