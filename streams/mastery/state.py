"""A learner × skill's stored BKT state, by name.

It lives inside the learner stage's document (``"k": {skill: SkillDoc}``, see
``streams.learner.state``), stored with short keys that running deployments' tables hold;
the code names them through these constants (see ``streams.mastery.logic`` for what they
mean and how versions are counted)::

    {"l0": log-odds baseline before the kept history, "l": current log-odds of P(L),
     "h": [[statement key, 1 correct / 0 wrong, event time ms], ...] kept history (oldest first),
     "n": observations counted, "c": of them correct, "v": version,
     "course": course id, "ts": newest event time counted, "tf": newest event time folded into
     "l0", "sc": school}

States written before the log-odds form hold ``"p"``/``"p0"`` (probabilities) instead of
``"l"``/``"l0"``; ``streams.mastery.logic`` converts them when first touched.
"""

from __future__ import annotations

from typing import Final, TypedDict

BASELINE: Final = "l0"
LOG_ODDS: Final = "l"
KEPT_HISTORY: Final = "h"
OBSERVED: Final = "n"
CORRECT: Final = "c"
VERSION: Final = "v"
COURSE: Final = "course"
NEWEST: Final = "ts"
NEWEST_FOLDED: Final = "tf"
SCHOOL: Final = "sc"
# Of states written before the log-odds form.
LEGACY_P: Final = "p"
LEGACY_P0: Final = "p0"

# An entry of the kept history, stored as a list: [statement key, 1/0, event time ms].
KEY, OUTCOME, AT = range(3)


class SkillDoc(TypedDict, total=False):
    l0: float
    l: float  # noqa: E741  (the stored key)
    h: list[list[object]]
    n: int
    c: int
    v: int
    course: str
    ts: int
    tf: int
    sc: str
    p: float
    p0: float


def new_skill(prior_log_odds: float, course: str, school: str) -> SkillDoc:
    return {
        BASELINE: prior_log_odds, LOG_ODDS: prior_log_odds, KEPT_HISTORY: [], OBSERVED: 0, CORRECT: 0, VERSION: 0,
        COURSE: course, NEWEST: 0, NEWEST_FOLDED: 0, SCHOOL: school,
    }
