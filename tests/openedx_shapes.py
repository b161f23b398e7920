"""Statements shaped like those Open edX's event-routing-backends sends (written here, not copied).

Each breaks xAPI 1.0.3 in one of the ways that producer does, named by the rule id our
validator reports and the JSON path. ``fresh(kind)`` returns a new copy with a new id.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

LMS = "https://courses.example-school.org"
COURSE = f"{LMS}/course/course-v1:ExampleX+GEO101+2026_T1"
PROBLEM = f"{LMS}/xblock/block-v1:ExampleX+GEO101+2026_T1+type@problem+block@5d1c0e8a7b2f4c3e9a61d0b4c2e7f813"
ACTOR = {"objectType": "Agent", "account": {"homePage": LMS, "name": "8f0c2a6e-4b1d-4e7a-9c35-2d6b7e1f0a94"}}
EXT = {
    "https://w3id.org/xapi/openedx/extension/transformer-version": "event-routing-backends@9.3.0",
    "https://w3id.org/xapi/openedx/extensions/session-id": "3f6a0c1d9e2b48f7a5c4d3e2f1a0b9c8",
}
COURSE_ACTIVITY = {
    "id": COURSE,
    "objectType": "Activity",
    "definition": {"name": {"en-US": "Geology 101"}, "type": "http://adlnet.gov/expapi/activities/course"},
}


def _base(verb: str, display: str) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "version": "1.0.3",
        "actor": copy.deepcopy(ACTOR),
        "verb": {"id": verb, "display": {"en": display}},
        "timestamp": "2026-11-30T09:14:03.118204+00:00",
        "context": {"contextActivities": {"parent": [copy.deepcopy(COURSE_ACTIVITY)]}, "extensions": dict(EXT)},
    }


def group_problem_evaluated() -> dict[str, Any]:
    """A multi-question problem graded as a whole: the object is a "GroupActivity"."""
    st = _base("https://w3id.org/xapi/acrossx/verbs/evaluated", "evaluated")
    st["object"] = {
        "objectType": "GroupActivity",
        "id": PROBLEM,
        "definition": {
            "type": "http://adlnet.gov/expapi/activities/cmi.interaction",
            "name": {"en-US": "Plate boundaries (3 questions)"},
            "interactionType": "other",
        },
    }
    st["result"] = {"score": {"min": 0, "max": 3, "raw": 2, "scaled": 0.6667}, "success": False}
    return st


def question_in_group() -> dict[str, Any]:
    """One question of that problem: its parent is the "GroupActivity"."""
    st = _base("https://w3id.org/xapi/acrossx/verbs/evaluated", "evaluated")
    st["object"] = {
        "objectType": "Activity",
        "id": PROBLEM + "_2_1",
        "definition": {
            "type": "http://adlnet.gov/expapi/activities/cmi.interaction",
            "description": {"en-US": "Which boundary forms mid-ocean ridges?"},
            "interactionType": "choice",
        },
    }
    st["result"] = {"response": "divergent", "success": True}
    st["context"]["contextActivities"] = {
        "parent": [{"objectType": "GroupActivity", "id": PROBLEM,
                    "definition": {"type": "http://adlnet.gov/expapi/activities/cmi.interaction",
                                   "interactionType": "other"}}],
        "grouping": [copy.deepcopy(COURSE_ACTIVITY)],
    }  # fmt: skip
    return st


def video_with_bare_guid_grouping() -> dict[str, Any]:
    """A video played, grouped under an activity whose id is a bare GUID (no scheme)."""
    st = _base("https://w3id.org/xapi/video/verbs/played", "played")
    st["object"] = {
        "objectType": "Activity",
        "id": f"{LMS}/xblock/block-v1:ExampleX+GEO101+2026_T1+type@video+block@0b7e2c",
        "definition": {"type": "https://w3id.org/xapi/video/activity-type/video", "name": {"en-US": "Subduction"}},
    }
    st["result"] = {"extensions": {"https://w3id.org/xapi/video/extensions/time": 31.4}}
    st["context"]["contextActivities"]["grouping"] = [
        {"id": "c4f2a7d0-3b9e-4c1a-8e6f-5d2b0a9c7e31", "objectType": "Activity"}
    ]
    return st


def enrollment_without_object_id() -> dict[str, Any]:
    """An enrollment whose course could not be resolved: the object has no id."""
    st = _base("http://adlnet.gov/expapi/verbs/registered", "registered")
    st["object"] = {"objectType": "Activity", "definition": {"name": {}, "type": "http://adlnet.gov/expapi/activities/course"}}
    del st["context"]["contextActivities"]
    st["context"]["registration"] = "8f0c2a6e-4b1d-4e7a-9c35-2d6b7e1f0a94"
    return st


def zero_weight_grade() -> dict[str, Any]:
    """A subsection grade of a zero-weight problem set: score min = max = 0."""
    st = _base("http://id.tincanapi.com/verb/earned", "earned")
    st["object"] = {
        "objectType": "Activity",
        "id": f"{LMS}/xblock/block-v1:ExampleX+GEO101+2026_T1+type@sequential+block@9e1f",
        "definition": {"type": "http://id.tincanapi.com/activitytype/resource"},
    }
    st["result"] = {"score": {"scaled": 0.0, "raw": 0.0, "min": 0.0, "max": 0.0}, "success": True}
    return st


def zero_weight_group_problem() -> dict[str, Any]:
    """Two defects in one: a "GroupActivity" object of a zero-weight problem."""
    st = group_problem_evaluated()
    st["result"] = {"score": {"min": 0, "max": 0, "raw": 0, "scaled": 0}, "success": True}
    return st


# kind → (builder, [(rule id, JSON path)]) in document order.
KINDS: dict[str, tuple[Any, list[tuple[str, str]]]] = {
    "group_object": (group_problem_evaluated, [("objectType.value", "$.object.objectType")]),
    "group_parent": (question_in_group, [("objectType.value", "$.context.contextActivities.parent[0].objectType")]),
    "bare_guid_grouping": (video_with_bare_guid_grouping, [("activity.id.iri", "$.context.contextActivities.grouping[0].id")]),
    "object_without_id": (enrollment_without_object_id, [("activity.id.required", "$.object.id")]),
    "zero_weight_score": (zero_weight_grade, [("result.score.min-max.equal", "$.result.score.min")]),
    "group_and_zero_weight": (
        zero_weight_group_problem,
        [("objectType.value", "$.object.objectType"), ("result.score.min-max.equal", "$.result.score.min")],
    ),
}  # fmt: skip


def fresh(kind: str) -> dict[str, Any]:
    return KINDS[kind][0]()
