"""Builders and assertions shared by the xAPI unit tests."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from schemas.errors import InvalidStatement
from schemas.xapi.validate import validate_statement

ACTOR = {"objectType": "Agent", "name": "Ana", "mbox": "mailto:ana@example.com"}
VERB = {"id": "http://adlnet.gov/expapi/verbs/answered", "display": {"en-US": "answered"}}
ACTIVITY = {
    "objectType": "Activity",
    "id": "http://example.com/activities/q1",
    "definition": {
        "name": {"en-US": "Question 1"},
        "type": "http://adlnet.gov/expapi/activities/cmi.interaction",
    },
}
SHA256 = "495395e777cd98da653df9615d09c0fd6bb2f8d4788394cd53c56a3bfdcd848a"


def statement(**overrides: Any) -> dict[str, Any]:
    """A small valid statement; keyword overrides replace top-level properties (None deletes)."""
    st: dict[str, Any] = {
        "id": "fd41c918-b88b-4b20-a0a5-a4c32391aaa0",
        "actor": copy.deepcopy(ACTOR),
        "verb": copy.deepcopy(VERB),
        "object": copy.deepcopy(ACTIVITY),
        "timestamp": "2015-11-18T12:17:00.000Z",
    }
    for key, value in overrides.items():
        if value is None:
            st.pop(key, None)
        else:
            st[key] = value
    return st


def cmi5_statement() -> dict[str, Any]:
    """A typical cmi5-like statement: account actor, scored result, registration, context activities."""
    return {
        "id": "2c738870-7852-4d2b-a5c4-c3999373838e",
        "timestamp": "2024-03-05T15:09:47.253Z",
        "actor": {
            "objectType": "Agent",
            "name": "Learner",
            "account": {"homePage": "https://lms.example.org", "name": "4711"},
        },
        "verb": {"id": "http://adlnet.gov/expapi/verbs/passed", "display": {"en-US": "passed"}},
        "object": {
            "objectType": "Activity",
            "id": "https://example.org/course/geo/au/4c07",
            "definition": {
                "name": {"en-US": "Introduction to Geology"},
                "description": {"en-US": "Plate tectonics"},
                "type": "http://adlnet.gov/expapi/activities/lesson",
            },
        },
        "result": {
            "score": {"scaled": 0.82, "raw": 82, "min": 0, "max": 100},
            "success": True,
            "completion": True,
            "duration": "PT12M31.5S",
        },
        "context": {
            "registration": "839b7078-b3f2-499f-8628-d1a83039a375",
            "contextActivities": {
                "parent": [
                    {
                        "id": "https://example.org/course/geo",
                        "objectType": "Activity",
                        "definition": {"type": "http://adlnet.gov/expapi/activities/course"},
                    }
                ],
                "category": [{"id": "https://w3id.org/xapi/cmi5/context/categories/cmi5", "objectType": "Activity"}],
                "grouping": [{"id": "https://example.org/course/geo/block/1"}],
            },
            "extensions": {"https://w3id.org/xapi/cmi5/context/extensions/sessionid": "48be2ad6-6e3a"},
        },
    }


def accepted(doc: Any, version: str = "1.0.3") -> bool:
    """Validate and report acceptance (so tests can ``assert accepted(...)``)."""
    validate_statement(doc, version=version)
    return True


def rejected(doc: Any, rule: str, path: str, version: str = "1.0.3") -> InvalidStatement:
    """Assert ``doc`` is rejected for ``rule`` at ``path``; return the error."""
    with pytest.raises(InvalidStatement) as err:
        validate_statement(doc, version=version)
    assert (err.value.rule, err.value.path) == (rule, path), err.value.as_dict()
    assert "xAPI" in err.value.message
    return err.value
