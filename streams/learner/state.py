"""The learner stage's stored state, by name.

The table ``learner-state`` (and its changelog) holds compact JSON documents with one- and
two-letter keys; a running deployment's tables hold them, and a new worker must read them
as they are (it upgrades in place). So the stored form stays, and the code reads and writes
it only through these views, which name every field. A view is a slot holding the stored
dict itself: nothing is copied or converted when a state is loaded or saved (orjson reads
and writes the dict directly), which is what keeps the per-batch cost of the table as it
was (measured in ``benchmarks/bench_streams.py``).

Stored forms (``TypedDict``: the exact keys on disk)::

    learner:   {"c": {course: CourseDoc}, "k": {skill: BKT state (streams.mastery.logic)},
                "vx": [keys of the voiding statements this learner sent, newest last],
                "o": last applied source offset, "p": its source partition}
    course:    engagement state (streams.engagement.logic: "n", "h", "ev", "end", "d", "new", "hz")
               + {"i": {statement key: timestamp ms} applied at or after the horizon,
                  "sc": school, "co": cohort, "cb": {hour: FeedBucket} cohort-feed buckets}
    partition: {"o": last offset read, "mx": newest statement time seen,
                "vd": {statement key: 1} voids whose target was not found (oldest first)}

Views create a missing container when it is first written, in the order the stored
documents always had their keys created (so a state is saved byte for byte as before).
"""

from __future__ import annotations

from typing import Any, TypedDict

from ..engagement.state import HORIZON, HOURS, SEQUENCE
from ..mastery.state import SkillDoc

# A cohort-feed bucket, stored as a list: [active ms, last event ms, version].
ACTIVE, LAST, VERSION = range(3)

# Stored keys of a course document, by name. The per-statement path of the learner logic
# indexes the document with these directly: a view's property is a Python call per access,
# which measured ~15% of the pure learner logic's time there (``CourseState`` below is
# written with the same names).
COURSE_SCHOOL, COURSE_COHORT, COURSE_APPLIED, COURSE_FEED_BUCKETS = "sc", "co", "i", "cb"
# Kept by streams.engagement.logic, named in streams.engagement.state.
COURSE_HORIZON, COURSE_SEQUENCE, COURSE_HOURS = HORIZON, SEQUENCE, HOURS
PARTITION_PENDING_VOIDS = "vd"


class CourseDoc(TypedDict, total=False):
    i: dict[str, int]
    sc: str
    co: str
    cb: dict[str, list[int]]
    n: int
    h: dict[str, list[int]]
    ev: list[list[int]]
    end: int
    d: dict[str, int]
    new: int
    hz: int


class LearnerDoc(TypedDict, total=False):
    c: dict[str, CourseDoc]
    k: dict[str, SkillDoc]
    vx: list[str]
    o: int
    p: int


class PartitionDoc(TypedDict, total=False):
    o: int
    mx: int
    vd: dict[str, int]


class LearnerState:
    """One learner's document (table key: the learner pseudonym)."""

    __slots__ = ("doc",)

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc

    @property
    def offset(self) -> int:
        """Last applied source offset (-1: none)."""
        return self.doc.get("o", -1)

    @offset.setter
    def offset(self, value: int) -> None:
        self.doc["o"] = value

    @property
    def partition(self) -> int | None:
        return self.doc.get("p")

    @partition.setter
    def partition(self, value: int) -> None:
        self.doc["p"] = value

    @property
    def known_courses(self) -> dict[str, dict[str, Any]]:
        """Courses so far (read only: an empty dict when there are none)."""
        return self.doc.get("c", {})

    @property
    def known_skills(self) -> dict[str, SkillDoc]:
        return self.doc.get("k", {})

    def courses(self) -> dict[str, dict[str, Any]]:
        """Course → course document, created when missing."""
        courses = self.doc.get("c")
        if courses is None:
            courses = self.doc["c"] = {}
        return courses

    def skills(self) -> dict[str, SkillDoc]:
        """Skill → BKT state (``streams.mastery.logic``), created when missing."""
        skills = self.doc.get("k")
        if skills is None:
            skills = self.doc["k"] = {}
        return skills

    def own_voids(self) -> list[str]:
        """Keys of the voiding statements this learner sent, newest last."""
        own = self.doc.get("vx")
        if own is None:
            own = self.doc["vx"] = []
        return own


class CourseState:
    """One learner × course: engagement state, statement keys applied, cohort-feed buckets."""

    __slots__ = ("doc",)

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc

    @property
    def horizon(self) -> int | None:
        """The engagement late rule's hour: older statements change nothing."""
        return self.doc.get(COURSE_HORIZON)

    @property
    def school(self) -> str:
        return self.doc[COURSE_SCHOOL]

    @property
    def cohort(self) -> str:
        return self.doc[COURSE_COHORT]

    @property
    def placed(self) -> bool:
        """Whether school and cohort are known (a statement of the course was applied)."""
        return COURSE_SCHOOL in self.doc

    def place(self, school: str, cohort: str) -> None:
        self.doc[COURSE_SCHOOL] = school
        self.doc[COURSE_COHORT] = cohort

    @property
    def sequence(self) -> int:
        """Statements applied so far: the version of what the last one changed."""
        return self.doc[COURSE_SEQUENCE]

    @property
    def hours(self) -> dict[str, list[int]]:
        return self.doc.get(COURSE_HOURS, {})

    def applied(self) -> dict[str, int]:
        """Statement key → timestamp of every statement applied at or after the horizon."""
        ids = self.doc.get(COURSE_APPLIED)
        if ids is None:
            ids = self.doc[COURSE_APPLIED] = {}
        return ids

    @property
    def applied_keys(self) -> dict[str, int] | tuple[()]:
        """Read only: the applied statement keys, or () when there are none."""
        return self.doc.get(COURSE_APPLIED, ())

    def forget_applied_behind_horizon(self) -> None:
        """Keys older than the horizon can go: a copy of theirs would be late anyway."""
        horizon, ids = self.doc[COURSE_HORIZON], self.doc[COURSE_APPLIED]
        if ids:
            self.doc[COURSE_APPLIED] = {k: v for k, v in ids.items() if v >= horizon}

    @property
    def feed_buckets(self) -> dict[str, list[int]]:
        """Hour → cohort-feed bucket (see ACTIVE, LAST, VERSION) not yet behind the watermark."""
        return self.doc.get(COURSE_FEED_BUCKETS, {})

    def feed_bucket(self, hour: int) -> list[int]:
        """The hour's cohort-feed bucket, created (empty) when missing."""
        cb = self.doc.get(COURSE_FEED_BUCKETS)
        if cb is None:
            cb = self.doc[COURSE_FEED_BUCKETS] = {}
        key = str(hour)
        b = cb.get(key)
        if b is None:
            b = cb[key] = [0, 0, 0]
        return b

    def forget_feed_buckets_before(self, hour: int) -> None:
        cb = self.doc[COURSE_FEED_BUCKETS]
        for key in [k for k in cb if int(k) < hour]:
            del cb[key]


class PartitionState:
    """A source partition's own document (table key: ``streams.learner.stage.part_key``)."""

    __slots__ = ("doc",)

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc

    @property
    def offset(self) -> int:
        """Last offset read (-1: none)."""
        return self.doc.get("o", -1)

    def read_up_to(self, offset: int) -> None:
        self.doc["o"] = max(offset, self.doc.get("o", -1))

    @property
    def newest(self) -> int | None:
        """Newest statement time seen: the partition's watermark is this minus a lag."""
        return self.doc.get("mx")

    @newest.setter
    def newest(self, value: int | None) -> None:
        self.doc["mx"] = value

    @property
    def pending_voids(self) -> dict[str, int] | None:
        """Voids whose target this partition has not seen, oldest first (None: never any)."""
        return self.doc.get(PARTITION_PENDING_VOIDS)

    def pending_voids_created(self) -> dict[str, int]:
        pending = self.doc.get(PARTITION_PENDING_VOIDS)
        if pending is None:
            pending = self.doc[PARTITION_PENDING_VOIDS] = {}
        return pending
