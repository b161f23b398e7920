"""The cohort stage's stored state, by name.

The table ``cohort-state`` (and its changelog) holds one JSON document per cohort with short
keys; a running deployment's tables hold them and a new worker reads them as they are, so the
stored form stays. The code names every key through the constants below (a module constant
costs nothing measurable on the per-step path, where a property per access would).

Stored forms (``TypedDict``: the exact keys on disk)::

    cohort:  {"school", "course", "cohort",
              "L":   {learner pseudonym: LearnerFigures},
              "eh":  last step boundary evaluated (ms; None: not started),
              "rec": figures of the last health record sent [learners, disengaged, share,
                     median] (None: none yet),
              "al":  the open alert {"id": alert id, "at": fired at ms} (None: none)}
    learner: {"b":     {hour ms as text: [active ms, last event ms, version]} buckets not yet
                       out of the 7-day window,
              "first": first hour with activity (ms),
              "s7":    active ms in the 7 days before "eh",
              "last":  newest event time (ms) folded into the figures}
"""

from __future__ import annotations

from typing import Any, Final, TypedDict

# A bucket, stored as a list: [active ms, last event ms, version].
ACTIVE, LAST, VERSION = range(3)

# Stored keys of a cohort document (``Final``: a type checker reads them as the literal keys).
LEARNERS: Final = "L"
EVALUATED_STEP: Final = "eh"
LAST_RECORDED: Final = "rec"
OPEN_ALERT: Final = "al"
# Stored keys of a learner's figures inside it.
BUCKETS: Final = "b"
FIRST_HOUR: Final = "first"
ACTIVE_7D: Final = "s7"
LAST_EVENT: Final = "last"


class LearnerFigures(TypedDict):
    b: dict[str, list[int]]
    first: int
    s7: int
    last: int


class OpenAlert(TypedDict):
    id: str
    at: int


class CohortDoc(TypedDict):
    school: str
    course: str
    cohort: str
    L: dict[str, LearnerFigures]
    eh: int | None
    rec: list[Any] | None
    al: OpenAlert | None


def new_cohort(school: str, course: str, cohort: str) -> CohortDoc:
    return {
        "school": school, "course": course, "cohort": cohort,
        LEARNERS: {}, EVALUATED_STEP: None, LAST_RECORDED: None, OPEN_ALERT: None,
    }


def new_learner(hour: int) -> LearnerFigures:
    return {BUCKETS: {}, FIRST_HOUR: hour, ACTIVE_7D: 0, LAST_EVENT: 0}


def cohort_key(cs: CohortDoc) -> str:
    return f"{cs['school']}|{cs['course']}|{cs['cohort']}"
