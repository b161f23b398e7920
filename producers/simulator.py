"""A seeded simulator of virtual schools emitting xAPI statements.

Walking-skeleton version: schools × courses × learners, each learner active in
sessions of cmi5-style statements; event time can run faster than wall time. The full
model with hidden state and ground truth extends this module.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from schemas.profile import COURSE_ACTIVITY_TYPE, DEFAULT_COHORT_EXTENSION
from schemas.xapi.timefmt import format_ms

VERB = "http://adlnet.gov/expapi/verbs/"
COURSE_BASE = "https://courses.learnpulse.dev/"


@dataclass(frozen=True)
class SimulationConfig:
    seed: int = 42
    schools: int = 3
    courses_per_school: int = 3
    learners_per_course: int = 30
    start_ms: int = 1_767_225_600_000  # 2026-01-01T00:00:00Z
    # Event-time milliseconds between consecutive statements of the whole simulation.
    step_ms: int = 1_000


@dataclass(frozen=True)
class SimulatedStatement:
    school: str
    statement: dict[str, Any]


def school_id(i: int) -> str:
    return f"school-{i:03d}"


def _statement(rng: random.Random, school: str, course: int, learner: int, ts: int) -> dict[str, Any]:
    course_id = f"{COURSE_BASE}{school}/course-{course:02d}"
    verb = rng.choice(["experienced", "answered", "answered", "completed", "attempted"])
    stmt: dict[str, Any] = {
        "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "actor": {
            "objectType": "Agent",
            "account": {"homePage": f"https://{school}.learnpulse.dev", "name": f"learner-{course:02d}-{learner:04d}"},
        },
        "verb": {"id": VERB + verb, "display": {"en-US": verb}},
        "object": {
            "objectType": "Activity",
            "id": f"{course_id}/activity-{rng.randrange(20):02d}",
            "definition": {"type": "http://adlnet.gov/expapi/activities/" + ("cmi.interaction" if verb == "answered" else "lesson")},
        },
        "timestamp": format_ms(ts),
        "context": {
            "contextActivities": {"parent": [{"id": course_id, "definition": {"type": COURSE_ACTIVITY_TYPE}}]},
            "extensions": {DEFAULT_COHORT_EXTENSION: f"{school}/course-{course:02d}/cohort-{learner % 2}"},
        },
    }
    if verb == "answered":
        success = rng.random() < 0.7
        stmt["result"] = {"success": success, "score": {"scaled": 1.0 if success else 0.0}, "duration": f"PT{rng.randrange(5, 120)}S"}
    return stmt


def simulate(config: SimulationConfig) -> Iterator[SimulatedStatement]:
    """Endless, deterministic stream of statements in event-time order."""
    rng = random.Random(config.seed)
    ts = config.start_ms
    while True:
        s = rng.randrange(config.schools)
        school = school_id(s)
        course = rng.randrange(config.courses_per_school)
        learner = rng.randrange(config.learners_per_course)
        yield SimulatedStatement(school, _statement(rng, school, course, learner, ts))
        ts += rng.randrange(1, 2 * config.step_ms)
