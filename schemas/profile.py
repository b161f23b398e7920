"""Per-school profile: how course and cohort are read from a statement."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

COURSE_ACTIVITY_TYPE = "http://adlnet.gov/expapi/activities/course"
DEFAULT_COHORT_EXTENSION = "https://learnpulse.dev/xapi/extensions/cohort"
UNKNOWN = ""


@dataclass(frozen=True)
class SchoolProfile:
    """``course`` = first parent/grouping activity of ``course_activity_type``; else the
    object itself if it has that type; else empty. ``cohort`` = the context extension
    ``cohort_extension`` if present, else the course."""

    course_activity_type: str = COURSE_ACTIVITY_TYPE
    cohort_extension: str = DEFAULT_COHORT_EXTENSION

    def course_and_cohort(self, statement: dict[str, Any]) -> tuple[str, str]:
        context = statement.get("context") or {}
        course = UNKNOWN
        activities = context.get("contextActivities") or {}
        for kind in ("parent", "grouping"):
            items = activities.get(kind) or []
            if isinstance(items, dict):  # 0.95-style single object, tolerated on read
                items = [items]
            for act in items:
                if (act.get("definition") or {}).get("type") == self.course_activity_type:
                    course = act.get("id", UNKNOWN)
                    break
            if course:
                break
        if not course:
            obj = statement.get("object") or {}
            if (obj.get("definition") or {}).get("type") == self.course_activity_type:
                course = obj.get("id", UNKNOWN)
        cohort = (context.get("extensions") or {}).get(self.cohort_extension)
        return course, str(cohort) if cohort else course

# Skills an activity exercises: an activity-definition extension whose value is a skill id
# or a list of them. Streams map attempts to skills with it (plus objectives and per-course
# mapping files); the simulator writes it.
SKILL_EXTENSION = "https://learnpulse.dev/xapi/extensions/skills"
