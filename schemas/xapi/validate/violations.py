"""How a violation is raised, located and (while collecting) walked past; spec citations.

Nothing here runs for a valid statement except ``fail``'s guard, which only runs when a
check already failed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, NoReturn

import orjson

# Rules whose every check site goes on checking the rest of the statement as if the
# requirement held (see ``fail``): only these can be walked past to find the next
# violation, and so only these can be tolerated by an ingestion policy. Each is about a
# value's form, never about identity (actor, verb, statement id), time or JSON types.
CONTINUABLE_RULES = frozenset(
    {
        "objectType.value",
        "property.unknown",
        "activity.id.iri",
        "activity.id.required",
        "activity.definition.type.iri",
        "activity.definition.moreInfo.irl",
        "language-map.key.rfc5646",
        "extensions.key.iri",
        "context.language.rfc5646",
        "context.revision.activity-only",
        "context.platform.activity-only",
        "result.score.min-max",
        "result.score.min-max.equal",
        "result.score.raw.range",
        "result.score.scaled.range",
        "version.format",
    }
)
# A statement with more violations than this is refused without looking further.
MAX_VIOLATIONS = 64
# Spec citations used in messages. Rules shared by both versions cite xAPI 1.0.3,
# whose text 9274.1.1 keeps; rules only 2.0 has cite 9274.1.1 by section name.
DATA = "xAPI 1.0.3 Data §"
COMM = "xAPI 1.0.3 Communication §"
XAPI2 = "IEEE 9274.1.1 (xAPI 2.0) "
ONLY_IN_2_0 = frozenset({"contextAgents", "contextGroups"})
ABSENT = object()


class Violation(Exception):
    """A violation found below some object; ``keys`` grow (innermost first) on the way up."""

    def __init__(self, rule: str, message: str, key: str) -> None:
        super().__init__(rule)
        self.rule = rule
        self.message = message
        self.keys = [key] if key else []


def key_step(name: str) -> str:
    """The JSON-path step for an object key: ``.name`` or ``["odd key"]``."""
    return f".{name}" if name.isidentifier() else f"[{orjson.dumps(name).decode()}]"


class HardViolation(Violation):
    """A violation no walk goes past (a wrong JSON type), whatever its rule id."""


class Collecting(threading.local):
    """Per-thread state of a :func:`statement_violations` walk (unused on the strict path).

    ``skip`` ≥ 0 while collecting: the first ``skip`` continuable violations met in this
    walk were recorded by earlier walks and are passed over (the walk is deterministic,
    so the n-th one is the same place every time); the next one is raised, so that it
    gets its full JSON path on the way up, like any violation.
    """

    skip = -1
    seen = 0
    continuable: frozenset[str] = frozenset()


collecting = Collecting()


def fail(rule: str, cite: str, detail: str, key: str = "") -> None:
    """Raise the violation; while collecting, pass over the ones already recorded.

    Only rules in ``CONTINUABLE_RULES`` ever return: their call sites go on checking the
    rest as if the requirement held, so every later violation is still found.
    """
    c = collecting
    if c.skip >= 0 and rule in c.continuable and c.seen < c.skip:
        c.seen += 1
        return
    raise Violation(rule, f"{cite}: {detail}", key)


def unreachable(rule: str) -> NoReturn:
    """Marks the end of a check whose ``fail`` (of a rule outside CONTINUABLE_RULES) always raised."""
    raise AssertionError(f"{rule} is not continuable, so its failure raised")  # pragma: no cover


def show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def kind_of(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def bad_type(rule: str, cite: str, what: str, expected: str, value: object, key: str = "") -> NoReturn:
    # A value of the wrong JSON type is never passed over, whatever its rule: nothing
    # downstream could read it (raised directly, not through ``fail``).
    if value is None:
        raise HardViolation(
            "value.null",
            f"{DATA}2.2: the LRS MUST reject Statements with null values (except inside extensions); {what} is null",
            key,
        )
    raise HardViolation(rule, f"{cite}: {what} must be {expected}, found {kind_of(value)}", key)


def unknown_properties(obj: dict[str, Any], allowed: frozenset[str], what: str) -> None:
    """Every key of ``obj`` outside ``allowed`` (the first raises unless collecting)."""
    for key in obj:
        if key in allowed:
            continue
        step = key_step(key)
        case = [good for good in sorted(allowed) if good.lower() == key.lower()]
        if case:
            fail(
                "property.case",
                DATA + "2.2",
                f"the LRS MUST reject a key whose case differs from the specification: "
                f"{what} has {key!r}, the property is {case[0]!r}",
                step,
            )
        elif key in ONLY_IN_2_0:
            fail(
                "property.unknown",
                DATA + "2.4.6",
                f"{key!r} is not a Context property in xAPI 1.0.x; it exists only in xAPI 2.0 "
                "(send X-Experience-API-Version: 2.0.0)",
                step,
            )
        else:
            fail(
                "property.unknown",
                DATA + "2.2",
                f"the LRS MUST reject keys the specification does not allow: {what} has no property {show(key)}",
                step,
            )


def index_of(item: object, items: list[Any]) -> str:
    """The path step of ``item`` in ``items`` (found by identity, so only on error paths)."""
    for i, candidate in enumerate(items):
        if candidate is item:
            return f"[{i}]"
    raise AssertionError("item not in list")  # pragma: no cover


def missing(rule: str, cite: str, what: str, key: str) -> None:
    fail(rule, cite, f"{what} is required", key)


def format_error(rule: str, cite: str, what: str, expected: str, value: object, detail: str, key: str = "") -> None:
    """A value that is not of its form: a wrong JSON type (``expected``) or a bad string (``detail``)."""
    if value.__class__ is not str:
        bad_type(rule, cite, what, expected, value, key)
    fail(rule, cite, detail, key)


def iri_error(value: object, rule: str, cite: str, what: str, key: str, kind: str = "IRI") -> None:
    if value.__class__ is not str:
        bad_type(rule, cite, what, f"an absolute {kind} string", value, key)
    fail(rule, cite, f"{what} MUST be an absolute {kind} (with a scheme), found {show(value)}", key)


def nonempty_string_error(obj: dict[str, Any], name: str, rules: str, cite: str, what: str, empty: str) -> NoReturn:
    """``obj[name]`` is missing (``{rules}.required``), not a string (``.type``) or empty (``.empty``).

    None of these rules is continuable (an identifier's), so this always raises.
    """
    if name not in obj:
        missing(f"{rules}.required", cite, what, f".{name}")
    value = obj.get(name)
    if value.__class__ is not str:
        bad_type(f"{rules}.type", cite, what, "a string", value, f".{name}")
    fail(f"{rules}.empty", cite, empty, f".{name}")
    unreachable(f"{rules}.empty")


def object_type_error(value: object, allowed: tuple[str, ...], what: str) -> None:
    if value is ABSENT:
        fail(
            "objectType.value",
            DATA + "2.2",
            f"{what}.objectType is required and must be {' or '.join(allowed)}",
            ".objectType",
        )
        return
    if value.__class__ is not str:
        bad_type("objectType.value", DATA + "2.2", f"{what}.objectType", "a string", value, ".objectType")
    hint = ""
    for good in allowed:
        if good.lower() == value.lower():
            hint = f" (objectType values are case-sensitive: use {good!r})"
    fail(
        "objectType.value",
        DATA + "2.2",
        f"{what}.objectType must be {' or '.join(allowed)}, found {show(value)}{hint}",
        ".objectType",
    )


def each(items: object, check: Callable[[object], object], rule: str, cite: str, what: str) -> None:
    """``check`` every item of the array ``items`` (``rule`` if it is not an array)."""
    if items.__class__ is not list:
        bad_type(rule, cite, what, "an array", items)
    check_items(items, check)


def check_items(items: list[Any], check: Callable[[object], object]) -> None:
    """``check`` every item; a violation's path gets the item's index."""
    for item in items:
        try:
            check(item)
        except Violation as e:
            e.keys.append(index_of(item, items))
            raise
