"""Parameters of the stream computations, built from settings and files (never at import time).

Everything here is a plain frozen dataclass so the pure logic can be tested with any
values and the Faust wiring only passes them down.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000


@dataclass(frozen=True)
class EngagementParams:
    """Sessions and active time (see ``streams.engagement.logic``)."""

    # A session ends after this much idle event time.
    session_gap_ms: int = 30 * MINUTE_MS
    # Gaps up to this long between activities count as active time.
    idle_cutoff_ms: int = 15 * MINUTE_MS
    # A statement older than the learner×course's newest statement by more than this (rounded
    # down to the hour) no longer changes engagement figures; those hours are final.
    lateness_ms: int = HOUR_MS
    # ``result.duration`` above this is clamped (a bogus "P30D" must not fill a month).
    max_duration_ms: int = 4 * HOUR_MS


@dataclass(frozen=True)
class HealthThresholds:
    """When a learner counts as disengaged and when a cohort alert fires/resolves."""

    # No activity for this many days → disengaged.
    inactive_days: float = 7.0
    # 7-day active time below this fraction of the cohort median → disengaged.
    low_active_fraction: float = 0.25
    # Alert fires when the disengaged share reaches this …
    alert_share: float = 0.4
    # … and resolves when it falls to this or below (hysteresis).
    resolve_share: float = 0.25
    # Cohorts smaller than this never alert.
    min_cohort_size: int = 5
    # "Mastery stalled" (operators' cohort page only, reporting/mastery.py): a skill practised
    # within the last `stalled_within_days` whose P(mastery) has not risen over the last
    # `stalled_attempts` attempts (and is below mastered). Not a disengagement rule: no alert.
    stalled_attempts: int = 5
    stalled_within_days: float = 7.0


@dataclass(frozen=True)
class HealthParams:
    """Cohort health evaluation: defaults plus per-school overrides."""

    defaults: HealthThresholds = HealthThresholds()
    per_school: dict[str, HealthThresholds] = field(default_factory=dict)
    # Cohort health is evaluated at each multiple of this event-time step.
    step_ms: int = HOUR_MS
    # Window of the active-time rule.
    window_ms: int = 7 * DAY_MS
    # How far the partition watermark trails the newest statement time seen in it.
    watermark_lag_ms: int = 10 * MINUTE_MS

    def for_school(self, school: str) -> HealthThresholds:
        return self.per_school.get(school, self.defaults)


def load_health_params(path: Path | None, base: HealthParams | None = None) -> HealthParams:
    """Read per-school thresholds from a JSON file.

    Format: ``{"defaults": {<HealthThresholds fields>}, "schools": {"school-001": {...}}}``;
    a school's entry overrides only the fields it names. Unknown fields are an error.
    """
    base = base or HealthParams()
    if path is None:
        return base
    doc = json.loads(Path(path).read_text())
    names = {f.name for f in fields(HealthThresholds)}

    def over(t: HealthThresholds, d: dict[str, Any], where: str) -> HealthThresholds:
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"{path}: unknown threshold fields {sorted(unknown)} in {where}")
        return replace(t, **d)

    defaults = over(base.defaults, doc.get("defaults", {}), "defaults")
    schools = {s: over(defaults, d, s) for s, d in doc.get("schools", {}).items()}
    return replace(base, defaults=defaults, per_school=schools)


@dataclass(frozen=True)
class StreamsConfig:
    """All computation parameters of the Faust app."""

    engagement: EngagementParams = EngagementParams()
    health: HealthParams = HealthParams()
    # BKT parameters and skill mapping, see ``streams.mastery.logic``.
    mastery_file: Path | None = None
    skill_map_file: Path | None = None
    # Envelopes per processing batch (``stream.take_events``) and the longest wait for one.
    batch_max: int = 1000
    batch_within_s: float = 0.2
