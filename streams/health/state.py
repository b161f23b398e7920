"""The cohort stage's stored state, by name.

The table ``cohort-state`` (and its changelog) holds, per cohort, a small document and one
record per learner, so a batch rewrites only the learners it touched (``streams.health.stored``
reads and writes them). The code names every key through the constants below (a module
constant costs nothing measurable on the per-step path, where a property per access would).

Stored forms (``TypedDict``: the exact keys on disk), keys under ``school|course|cohort``::

    cohort (key ck):           {"school", "course", "cohort",
                                "eh":  last step boundary evaluated (ms; None: not started),
                                "rec": figures of the last health record sent [learners,
                                       disengaged, share, median] (None: none yet),
                                "al":  the open alert {"id": alert id, "at": fired at ms}
                                       (None: none)}
    members (ck \0m):          [learner pseudonym, first joined first]
    learner (ck \0l pseudonym): {"b":     {hour ms as text: [active ms, last event ms, version]}
                                          buckets not yet out of the 7-day window,
                                 "first": first hour with activity (ms),
                                 "s7":    active ms in the 7 days before "e",
                                 "last":  newest event time (ms) folded into the figures,
                                 "e":     the step its figures are advanced to (None: none yet)}

Workers before 2026-12-06 kept the whole cohort in one document, its learners under "L"
(without "e": they were advanced with the cohort, to its "eh"); such a document is read as
it is and stored in the form above at its next save.
"""

from __future__ import annotations

from typing import Any, Final, TypedDict

# A bucket, stored as a list: [active ms, last event ms, version].
ACTIVE, LAST, VERSION = range(3)

# Stored keys of a cohort document (``Final``: a type checker reads them as the literal keys).
LEARNERS: Final = "L"  # in memory (and in documents of workers before 2026-12-06)
EVALUATED_STEP: Final = "eh"
LAST_RECORDED: Final = "rec"
OPEN_ALERT: Final = "al"
# Stored keys of a learner's figures inside it.
BUCKETS: Final = "b"
FIRST_HOUR: Final = "first"
ACTIVE_7D: Final = "s7"
LAST_EVENT: Final = "last"
ADVANCED: Final = "e"


class LearnerFigures(TypedDict, total=False):
    b: dict[str, list[int]]
    first: int
    s7: int
    last: int
    e: int | None  # absent in documents of workers before 2026-12-06


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


def new_learner(hour: int, advanced: int | None) -> LearnerFigures:
    """A learner joining a cohort whose figures are advanced to ``advanced`` (None: not started)."""
    return {BUCKETS: {}, FIRST_HOUR: hour, ACTIVE_7D: 0, LAST_EVENT: 0, ADVANCED: advanced}


def cohort_key(cs: CohortDoc) -> str:
    return f"{cs['school']}|{cs['course']}|{cs['cohort']}"
