"""Cohort health and disengagement alerts on event time. Pure: no I/O, no clock.

A cohort (school × course × cohort) collects, per learner, hourly activity buckets
``{hour: [active_ms, last_event_ms, version]}`` sent by the learner stage. The cohort is
evaluated at every step boundary ``H`` (default: each hour) once the watermark has passed
``H``; every bucket before ``H`` is then final (the learner stage never changes a bucket
older than its partition watermark), so the figures at ``H`` depend on the input only.

At ``H`` a member (a learner whose first bucket is before ``H``) is **disengaged** if it
has had no activity for ``inactive_days`` or its active time in ``[H - 7 days, H)`` is
below ``low_active_fraction`` × the cohort median of that figure. An alert **fires**
when the disengaged share reaches ``alert_share`` in a cohort of at least
``min_cohort_size`` members, and **resolves** when the share falls to ``resolve_share``
or below (hysteresis): one fired and one resolved record per episode.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Any

from ..config import DAY_MS, HOUR_MS, HealthParams, HealthThresholds
from .state import (
    ACTIVE, ACTIVE_7D, ADVANCED, BUCKETS, EVALUATED_STEP, FIRST_HOUR, LAST, LAST_EVENT, LAST_RECORDED, LEARNERS,
    OPEN_ALERT, VERSION, CohortDoc, LearnerFigures, new_cohort, new_learner,
)

__all__ = ["AlertChange", "Health", "advance", "evaluate", "global_watermark", "merge_bucket", "new_cohort"]


@dataclass(frozen=True, slots=True)
class Health:
    at_ms: int
    learners: int
    disengaged: int
    share: float
    median_active_ms_7d: int
    disengaged_learners: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AlertChange:
    alert_id: str
    state: str  # "fired" | "resolved"
    fired_at_ms: int
    threshold: float
    health: Health


def merge_bucket(cs: CohortDoc, learner: str, hour: int, active: int, last: int, version: int, p: HealthParams) -> bool:
    """Store a learner's cumulative bucket; an older or equal version is ignored (redelivery).

    Returns True if anything changed.
    """
    lr = cs[LEARNERS].get(learner)
    if lr is None:
        lr = cs[LEARNERS][learner] = new_learner(hour, cs[EVALUATED_STEP])
    key = str(hour)
    old = lr[BUCKETS].get(key)
    if old is not None and old[VERSION] >= version:
        return False
    lr[BUCKETS][key] = [active, last, version]
    lr[FIRST_HOUR] = min(lr[FIRST_HOUR], hour)
    advanced = advanced_to(lr, cs[EVALUATED_STEP])
    # A bucket behind the learner's advanced step (only in live traffic after an idle
    # partition woke up): fold it into the running figures so nothing is lost.
    if advanced is not None and hour < advanced:
        if hour >= advanced - p.window_ms:
            lr[ACTIVE_7D] += active - (old[ACTIVE] if old else 0)
        lr[LAST_EVENT] = max(lr[LAST_EVENT], last)
    return True


def advanced_to(lr: LearnerFigures, cohort_step: int | None) -> int | None:
    """The step a learner's running figures are advanced to. A learner of a document stored
    before 2026-12-06 has no step of its own: it was advanced with its cohort."""
    return lr[ADVANCED] if ADVANCED in lr else cohort_step


def _step_keys(start: int, end: int, p: HealthParams) -> list[tuple[str, str]]:
    """Bucket keys of the hours entering and leaving the window from ``start`` to ``end``."""
    return [(str(hour), str(hour - p.window_ms)) for hour in range(start, end, HOUR_MS)]


def _fold(lr: LearnerFigures, keys: list[tuple[str, str]]) -> None:
    b = lr[BUCKETS]
    for entering, leaving in keys:
        add = b.get(entering)
        if add is not None:
            lr[ACTIVE_7D] += add[ACTIVE]
            lr[LAST_EVENT] = max(lr[LAST_EVENT], add[LAST])
        gone = b.pop(leaving, None)
        if gone is not None:
            lr[ACTIVE_7D] -= gone[ACTIVE]


def _median(values: list[int]) -> int:
    if not values:
        return 0
    v = sorted(values)
    m = len(v) // 2
    return v[m] if len(v) % 2 else (v[m - 1] + v[m]) // 2


def evaluate(cs: CohortDoc, at: int, t: HealthThresholds) -> Health:
    """Health at ``at`` from the running figures (call after advancing them to ``at``)."""
    return _ordered(_evaluate(cs, at, t))


def _evaluate(cs: CohortDoc, at: int, t: HealthThresholds,
              learners: list[tuple[str, LearnerFigures]] | None = None) -> Health:  # fmt: skip
    """:func:`evaluate` with the disengaged learners in no particular order: most steps emit
    nothing (the figures did not change), so only an emitted one pays for sorting the names.
    ``learners``: the cohort's ``(name, figures)``, when the caller listed them already."""
    members = [(name, lr) for name, lr in (cs[LEARNERS].items() if learners is None else learners)
               if lr[FIRST_HOUR] < at]  # fmt: skip
    med = _median([lr[ACTIVE_7D] for _n, lr in members])
    inactive_ms = t.inactive_days * DAY_MS
    low = t.low_active_fraction * med
    dis = tuple(name for name, lr in members if at - lr[LAST_EVENT] >= inactive_ms or lr[ACTIVE_7D] < low)
    n = len(members)
    share = round(len(dis) / n, 6) if n else 0.0
    return Health(at, n, len(dis), share, med, dis)


def _ordered(h: Health) -> Health:
    return replace(h, disengaged_learners=tuple(sorted(h.disengaged_learners)))


def alert_id(cs: CohortDoc, fired_at: int) -> str:
    raw = f"{cs['school']}|{cs['course']}|{cs['cohort']}|{fired_at}".encode()
    return hashlib.sha256(raw).hexdigest()[:32]


def advance(cs: CohortDoc, to_ms: int, p: HealthParams) -> tuple[list[Health], list[AlertChange]]:
    """Evaluate every step boundary after the last evaluated one up to ``to_ms``.

    Returns the health figures that changed and the alert transitions, in event-time order.
    """
    healths: list[Health] = []
    alerts: list[AlertChange] = []
    eh = cs[EVALUATED_STEP]
    if eh is None:
        # Evaluation starts at the cohort's first hour. Decided only once the watermark is
        # past it: then every learner who was active before has arrived, whatever the order.
        firsts = [lr[FIRST_HOUR] for lr in cs[LEARNERS].values()]
        if not firsts:
            return healths, alerts
        first = min(firsts)
        first -= first % p.step_ms
        if first + p.step_ms > to_ms:
            return healths, alerts
        eh = cs[EVALUATED_STEP] = first
    if eh + p.step_ms > to_ms:
        # No step due: the common case of live traffic, whose watermark moves within a step
        # at nearly every batch. Listing the members would read each one's record.
        return healths, alerts
    # Learners stored without a step of their own were advanced with the cohort.
    cohort_step = eh
    t = p.for_school(cs["school"])
    # Every member with a record, listed (and read from the table) once: nobody joins while
    # the cohort advances, and each step folds and evaluates them all.
    learners = list(cs[LEARNERS].items())
    while eh + p.step_ms <= to_ms:
        nxt = eh + p.step_ms
        # Bucket keys of the hours entering and leaving the window, made once per step (not
        # per learner: a fast replay steps every cohort through many hours per second).
        keys = _step_keys(eh, nxt, p)
        for _name, lr in learners:
            start = advanced_to(lr, cohort_step)
            if start is None:  # joined before the cohort started: nothing folded yet
                start = lr[FIRST_HOUR] - lr[FIRST_HOUR] % p.step_ms
            if start >= nxt:
                # Already there (a save cut short by a kill stored this learner, not its
                # cohort), or its first hour is still ahead.
                continue
            # Behind the cohort (the kill stored the cohort, not this learner) or joined
            # later than ``eh`` (started at its first hour): its own hours.
            _fold(lr, keys if start == eh else _step_keys(start, nxt, p))
            lr[ADVANCED] = nxt
        eh = cs[EVALUATED_STEP] = nxt
        h = _evaluate(cs, nxt, t, learners)
        ordered: Health | None = None
        figures = [h.learners, h.disengaged, h.share, h.median_active_ms_7d]
        if figures != cs[LAST_RECORDED]:
            cs[LAST_RECORDED] = figures
            ordered = _ordered(h)
            healths.append(ordered)
        al = cs[OPEN_ALERT]
        if al is None and h.learners >= t.min_cohort_size and h.share >= t.alert_share:
            aid = alert_id(cs, nxt)
            cs[OPEN_ALERT] = {"id": aid, "at": nxt}
            alerts.append(AlertChange(aid, "fired", nxt, t.alert_share, ordered or _ordered(h)))
        elif al is not None and h.share <= t.resolve_share:
            cs[OPEN_ALERT] = None
            alerts.append(AlertChange(al["id"], "resolved", al["at"], t.resolve_share, ordered or _ordered(h)))
    return healths, alerts


def global_watermark(sources: dict[str, list[Any]], n_sources: int) -> int | None:
    """Event time up to which every source partition has sent all it will send.

    ``sources``: source partition → ``[watermark_ms, idle]``. Nothing is complete until
    all ``n_sources`` partitions have reported. A source marked idle has been read to its
    end, so everything it sent is already here: it does not hold the others back. When
    every source is idle, the furthest watermark is complete.
    """
    if len(sources) < n_sources:
        return None
    busy = [wm for wm, idle in sources.values() if not idle and wm is not None]
    if busy:
        return min(busy)
    known = [wm for wm, _idle in sources.values() if wm is not None]
    return max(known) if known else None
