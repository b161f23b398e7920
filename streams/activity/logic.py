"""Per-learner hourly statement counts (``learnpulse.activity``). Pure: no I/O, no clock."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from schemas.envelope import StatementEnvelope
from schemas.records import ActivityRecord

HOUR_MS = 3_600_000
# Hours older than this behind the learner's newest event are final and dropped from state.
KEEP_HOURS_MS = 48 * HOUR_MS


def apply_envelope(
    state: dict[str, Any], env: StatementEnvelope, offset: int, timestamps: Sequence[int]
) -> list[ActivityRecord]:
    """Count ``env`` (its statements' ``timestamps`` already parsed) into ``state``.

    ``state`` = ``{"o": last applied offset, "h": {"course\\x1fcohort\\x1fhour": [school, count]}}``.
    Returns the updated records; [] when ``offset`` was already applied.
    """
    if offset <= state.get("o", -1):
        return []
    hours: dict[str, list[Any]] = state.setdefault("h", {})
    touched = set()
    newest = 0
    for entry, ts in zip(env.entries, timestamps):
        newest = max(newest, ts)
        key = f"{entry.course}\x1f{entry.cohort}\x1f{ts - ts % HOUR_MS}"
        slot = hours.setdefault(key, [env.school, 0])
        slot[1] += 1
        touched.add(key)
    # Records first: an envelope can span more than the kept hours.
    out = [current(state, env.learner, key) for key in sorted(touched)]
    for key in [k for k in hours if int(k.rsplit("\x1f", 1)[1]) < newest - KEEP_HOURS_MS]:
        del hours[key]
    state["o"] = offset
    return out


def current(state: dict[str, Any], learner: str, key: str) -> ActivityRecord:
    course, cohort, hour = key.split("\x1f")
    school, count = state["h"][key]
    # The count only grows, so it is a deterministic, monotonic version.
    return ActivityRecord(school, course, cohort, learner, int(hour), count, count)
