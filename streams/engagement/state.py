"""A learner × course's stored engagement state, by name.

It lives in the learner stage's course document (``streams.learner.state``), stored with
short keys that running deployments' tables hold; the code names them through these
constants (see ``streams.engagement.logic`` for what the figures mean)::

    {"n": sequence (statements applied), "new": newest statement time,
     "hz": horizon hour (older statements are late), "end": latest activity end,
     "ev": [[t, activity start], ...] kept statements sorted by t,
     "h": {hour ms as text: [statements, sessions, active ms, last event ms, version]},
     "d": {day ms as text: version}}
"""

from __future__ import annotations

from typing import Final, TypedDict

SEQUENCE: Final = "n"
NEWEST: Final = "new"
HORIZON: Final = "hz"
ACTIVITY_END: Final = "end"
KEPT_EVENTS: Final = "ev"
HOURS: Final = "h"
DAY_VERSIONS: Final = "d"

# Figures of one hour, stored as a list: [statements, sessions, active_ms, last_event_ms, version]
STMTS, SESSIONS, ACTIVE, LAST, VERSION = range(5)


class EngagementDoc(TypedDict, total=False):
    n: int
    new: int
    hz: int
    end: int
    ev: list[list[int]]
    h: dict[str, list[int]]
    d: dict[str, int]
