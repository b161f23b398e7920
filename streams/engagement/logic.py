"""Sessions and active time of one learner in one course, on event time. Pure: no I/O, no clock.

Definitions (documented for researchers in ``reporting/``):

- Each statement is an activity interval ``[timestamp - duration, timestamp]``, where
  ``duration`` is ``result.duration`` (clamped) or 0. cmi5's completed/passed/failed/
  terminated carry the time since "initialized" (the whole session, breaks included):
  those are not activity durations and count as 0 (the learner stage decides).
- **Active time** is the length of the union of those intervals after bridging every gap
  between consecutive activities (end of one → start of the next) of at most the idle
  cutoff (default 15 min). A union never counts overlapping sources (a duration and the
  gaps around it, two overlapping durations) twice.
- A **session** is a maximal run of activity whose gaps are at most the session gap
  (default 30 min); it is counted in the hour (and day) where it starts.
- Figures per UTC hour: statements (by timestamp), sessions started, active ms (the part of
  the active union inside the hour), last statement time. A day's figures are the sums
  (max for the last time) of its hours.

Order independence: figures are a function of the *set* of accepted statements. The
common case (a statement starting after everything seen) is updated in O(1); an
out-of-order statement recomputes the few hours it can affect from the kept statements.
A statement older than the learner×course horizon (``hour(newest - lateness)``) is not
accepted: those hours are final.

Versions: every statement applied (not late) increments the learner×course sequence ``n``; an hour
(and its day) takes ``n`` as its version whenever one of its figures changes. A record
``(key, version)`` therefore always carries the same figures, whatever the batching.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any

from ..config import DAY_MS, HOUR_MS, EngagementParams
from .state import (
    ACTIVE, ACTIVITY_END, DAY_VERSIONS, HORIZON, HOURS, KEPT_EVENTS, LAST, NEWEST, SEQUENCE, SESSIONS, STMTS, VERSION,
    EngagementDoc,
)


def hour_of(ms: int) -> int:
    return ms - ms % HOUR_MS


@dataclass(frozen=True, slots=True)
class Change:
    """What one statement changed: hours whose figures changed, and active-time deltas per hour."""

    hours: tuple[int, ...]
    active_delta: dict[int, int]


NO_CHANGE = Change((), {})


def _hour_slot(h: dict[str, list[int]], hour: int) -> list[int]:
    slot = h.get(str(hour))
    if slot is None:
        slot = h[str(hour)] = [0, 0, 0, 0, 0]
    return slot


def _add_active(h: dict[str, list[int]], a: int, b: int, deltas: dict[int, int]) -> None:
    """Add the interval [a, b) to the hours it covers."""
    while a < b:
        hour = hour_of(a)
        part = min(b, hour + HOUR_MS) - a
        _hour_slot(h, hour)[ACTIVE] += part
        deltas[hour] = deltas.get(hour, 0) + part
        a += part


def figures_for(events: list[list[int]], first_hour: int, last_hour: int, p: EngagementParams) -> dict[int, list[int]]:
    """Recompute ``[statements, sessions, active, last]`` of hours ``first_hour..last_hour``.

    ``events`` are ``[t, s]`` pairs sorted by ``t``; every event that can reach those hours
    (``t >= first_hour - session_gap``) must be present.
    """
    lo, hi = first_hour, last_hour + HOUR_MS
    out = {hr: [0, 0, 0, 0] for hr in range(first_hour, hi, HOUR_MS)}
    start = bisect.bisect_left(events, [lo - p.session_gap_ms])
    window = [e for e in events[start:] if e[1] < hi + p.session_gap_ms]
    for t, _s in window:
        if lo <= t < hi:
            f = out[hour_of(t)]
            f[STMTS] += 1
            f[LAST] = max(f[LAST], t)
    window.sort(key=lambda e: e[1])
    seg_start = seg_end = None

    def flush(a: int, b: int) -> None:
        a, b = max(a, lo), min(b, hi)
        while a < b:
            hour = hour_of(a)
            part = min(b, hour + HOUR_MS) - a
            out[hour][ACTIVE] += part
            a += part

    for t, s in window:
        if (seg_end is None or s - seg_end > p.session_gap_ms) and lo <= s < hi:
            out[hour_of(s)][SESSIONS] += 1
        if seg_end is not None and s - seg_end <= p.idle_cutoff_ms:
            seg_end = max(seg_end, t)
        else:
            if seg_end is not None:
                flush(seg_start, seg_end)
            seg_start, seg_end = s, t
    if seg_end is not None:
        flush(seg_start, seg_end)
    return out


def apply_statement(st: EngagementDoc | dict[str, Any], t: int, duration_ms: int, p: EngagementParams) -> Change:
    """Count one statement (timestamp ``t``, duration) into learner×course state ``st``.

    ``st``: see ``streams.engagement.state`` (the learner stage's course document, which holds
    a few keys of its own too).
    """
    hz = st.get(HORIZON)
    if hz is not None and t < hz:
        return NO_CHANGE  # late: changes nothing, not even the sequence
    n = st[SEQUENCE] = st.get(SEQUENCE, 0) + 1
    h = st.get(HOURS)
    if h is None:
        h = st[HOURS] = {}
    ev = st.get(KEPT_EVENTS)
    if ev is None:
        ev = st[KEPT_EVENTS] = []
    # The statement's activity interval: its duration (clamped) back from t, not before the horizon.
    s = t - min(max(0, duration_ms), p.max_duration_ms)
    if hz is not None and s < hz:
        s = hz
    end = st.get(ACTIVITY_END)
    deltas: dict[int, int] = {}
    if end is None or s >= end:
        changed = _append_in_order(h, t, s, end, hz, deltas, p)
        ev.append([t, s])
        st[ACTIVITY_END] = t
    else:
        changed = _recount_out_of_order(h, ev, t, s, hz, deltas, p)
        if t > end:
            st[ACTIVITY_END] = t
    _stamp_versions(st, h, changed, n)
    _advance_horizon(st, ev, t, hz, p)
    return Change(tuple(sorted(set(changed))), deltas)


def _append_in_order(
    h: dict[str, list[int]], t: int, s: int, end: int | None, hz: int | None, deltas: dict[int, int],
    p: EngagementParams,
) -> list[int]:
    """Everything seen ends before this statement starts: update the hours incrementally.

    Returns the hours whose figures changed; ``deltas`` receives the active time added per hour.
    """
    th = t - t % HOUR_MS
    changed = [th]
    if end is None or s - end > p.session_gap_ms:
        sh = s - s % HOUR_MS
        _hour_slot(h, sh)[SESSIONS] += 1
        if sh != th:
            changed.append(sh)
    a = end if end is not None and s - end <= p.idle_cutoff_ms else s
    if hz is not None and a < hz:
        a = hz
    if a < t:
        if a >= th:  # the common case: within one hour
            _hour_slot(h, th)[ACTIVE] += t - a
            deltas[th] = t - a
        else:
            _add_active(h, a, t, deltas)
            changed.extend(hr for hr in deltas if hr != th)
    slot = _hour_slot(h, th)
    slot[STMTS] += 1
    slot[LAST] = max(slot[LAST], t)
    return changed


def _recount_out_of_order(
    h: dict[str, list[int]], ev: list[list[int]], t: int, s: int, hz: int | None, deltas: dict[int, int],
    p: EngagementParams,
) -> list[int]:
    """A statement inside what was seen: recompute the hours it can affect from the kept statements."""
    bisect.insort(ev, [t, s])
    first = s - p.session_gap_ms
    first -= first % HOUR_MS
    if hz is not None and first < hz:
        first = hz
    last = t + p.session_gap_ms
    changed = []
    for hr, f in figures_for(ev, first, last - last % HOUR_MS, p).items():
        key = str(hr)
        slot = h.get(key)
        old = slot[:4] if slot is not None else [0, 0, 0, 0]
        if f != old:
            if slot is None:
                slot = h[key] = [0, 0, 0, 0, 0]
            slot[:4] = f
            changed.append(hr)
            if f[ACTIVE] != old[ACTIVE]:
                deltas[hr] = f[ACTIVE] - old[ACTIVE]
    return changed


def _stamp_versions(st: EngagementDoc | dict[str, Any], h: dict[str, list[int]], changed: list[int], n: int) -> None:
    """Changed hours and their days take the statement's sequence number as their version."""
    days = st.get(DAY_VERSIONS)
    if days is None:
        days = st[DAY_VERSIONS] = {}
    for hr in changed:
        h[str(hr)][VERSION] = n
        days[str(hr - hr % DAY_MS)] = n


def _advance_horizon(st: EngagementDoc | dict[str, Any], ev: list[list[int]], t: int, hz: int | None, p: EngagementParams) -> None:
    """A newer statement moves the horizon on; kept statements that can no longer matter go."""
    newest = st.get(NEWEST)
    if newest is None or t > newest:
        st[NEWEST] = t
        new_hz = t - p.lateness_ms
        new_hz -= new_hz % HOUR_MS
        if hz is None or new_hz > hz:
            st[HORIZON] = new_hz
            cut = bisect.bisect_left(ev, [new_hz - p.session_gap_ms])
            if cut:
                del ev[:cut]


def prune(st: EngagementDoc | dict[str, Any]) -> None:
    """Forget the figures of days before the horizon's day (final, and already emitted).

    Called once the caller has emitted the records of what changed: an envelope can span
    days, and its earlier days' figures are needed until then.
    """
    hz = st.get(HORIZON)
    if hz is None:
        return
    keep_from = hz - hz % DAY_MS
    h = st.get(HOURS, {})
    for key in [k for k in h if int(k) < keep_from]:
        del h[key]
    days = st.get(DAY_VERSIONS, {})
    for key in [k for k in days if int(k) < keep_from]:
        del days[key]


def hour_figures(st: EngagementDoc | dict[str, Any], hour: int) -> list[int]:
    """``[statements, sessions, active, last, version]`` of one kept hour."""
    return list(st[HOURS][str(hour)])


def day_figures(st: EngagementDoc | dict[str, Any], day: int) -> list[int]:
    """``[statements, sessions, active, last, version]`` of a day: sums of its kept hours."""
    out = [0, 0, 0, 0, st.get(DAY_VERSIONS, {}).get(str(day), 0)]
    for key, f in st.get(HOURS, {}).items():
        if day <= int(key) < day + DAY_MS:
            out[STMTS] += f[STMTS]
            out[SESSIONS] += f[SESSIONS]
            out[ACTIVE] += f[ACTIVE]
            out[LAST] = max(out[LAST], f[LAST])
    return out
