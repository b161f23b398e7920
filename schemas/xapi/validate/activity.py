"""Activities, their definitions and interaction components (xAPI 1.0.3 Data §2.4.4.1)."""

from __future__ import annotations

from typing import Any

from ..formats import is_iri
from .values import IRI_OK, check_extensions, check_language_map
from .violations import (
    DATA,
    Violation,
    bad_type,
    fail,
    iri_error,
    missing,
    nonempty_string_error,
    object_type_error,
    show,
    unknown_properties,
    unreachable,
)

_ACTIVITY_KEYS = frozenset({"objectType", "id", "definition"})
_DEFINITION_KEYS = frozenset(
    {
        "name",
        "description",
        "type",
        "moreInfo",
        "extensions",
        "interactionType",
        "correctResponsesPattern",
        "choices",
        "scale",
        "source",
        "target",
        "steps",
    }
)
_INTERACTION_KEYS = frozenset(
    {"interactionType", "correctResponsesPattern", "choices", "scale", "source", "target", "steps"}
)
_COMPONENT_LISTS = ("choices", "scale", "source", "target", "steps")
# xAPI 1.0.3 Data §2.4.4.1 "Interaction Components": the lists each interactionType supports.
_COMPONENTS_FOR: dict[str, frozenset[str]] = {
    "true-false": frozenset(),
    "choice": frozenset({"choices"}),
    "fill-in": frozenset(),
    "long-fill-in": frozenset(),
    "matching": frozenset({"source", "target"}),
    "performance": frozenset({"steps"}),
    "sequencing": frozenset({"choices"}),
    "likert": frozenset({"scale"}),
    "numeric": frozenset(),
    "other": frozenset(),
}
# The definition's language maps: (property, what messages call it, path step).
_DEFINITION_TEXTS = (("name", "definition.name", ".name"), ("description", "definition.description", ".description"))
_COMPONENT_KEYS = frozenset({"id", "description"})


def check_components(items: object, list_name: str) -> None:
    if items.__class__ is not list:
        bad_type(
            "activity.definition.components.type",
            DATA + "2.4.4.1",
            f"definition.{list_name}",
            "an array of interaction components",
            items,
        )
    seen: set[str] = set()
    for i, comp in enumerate(items):
        try:
            if comp.__class__ is not dict:
                bad_type(
                    "activity.definition.components.type",
                    DATA + "2.4.4.1",
                    "an interaction component",
                    "an object",
                    comp,
                )
            if not _COMPONENT_KEYS.issuperset(comp):
                unknown_properties(comp, _COMPONENT_KEYS, "an interaction component")
            cid = comp.get("id")
            if cid.__class__ is not str or not cid:
                nonempty_string_error(
                    comp,
                    "id",
                    "activity.definition.component.id",
                    DATA + "2.4.4.1",
                    "interaction component id",
                    "an interaction component id identifies the component and cannot be empty",
                )
            if cid in seen:
                fail(
                    "activity.definition.component.id.unique",
                    DATA + "2.4.4.1",
                    f"within an array of interaction components all id values MUST be distinct; {cid!r} repeats",
                    ".id",
                )
            seen.add(cid)
            if "description" in comp:
                try:
                    check_language_map(comp["description"], "interaction component description")
                except Violation as e:
                    e.keys.append(".description")
                    raise
        except Violation as e:
            e.keys.append(f"[{i}]")
            raise


def check_interaction(d: dict[str, Any], itype: object) -> None:
    """The interaction properties of a definition that has an interactionType."""
    allowed = _COMPONENTS_FOR.get(itype) if itype.__class__ is str else None
    if allowed is None:
        if itype.__class__ is not str:
            bad_type(
                "activity.definition.interactionType.value",
                DATA + "2.4.4.1",
                "definition.interactionType",
                "a string",
                itype,
                ".interactionType",
            )
        hint = " (values are case-sensitive)" if itype.lower() in _COMPONENTS_FOR else ""
        fail(
            "activity.definition.interactionType.value",
            DATA + "2.4.4.1",
            f"Interaction Activities MUST have a valid interactionType ({', '.join(_COMPONENTS_FOR)}), "
            f"found {show(itype)}{hint}",
            ".interactionType",
        )
        unreachable("activity.definition.interactionType.value")
    if "correctResponsesPattern" in d:
        crp = d["correctResponsesPattern"]
        if crp.__class__ is not list:
            bad_type(
                "activity.definition.correctResponsesPattern.type",
                DATA + "2.4.4.1",
                "definition.correctResponsesPattern",
                "an array of strings",
                crp,
                ".correctResponsesPattern",
            )
        for i, pattern in enumerate(crp):
            if pattern.__class__ is not str:
                bad_type(
                    "activity.definition.correctResponsesPattern.type",
                    DATA + "2.4.4.1",
                    f"definition.correctResponsesPattern[{i}]",
                    "a string",
                    pattern,
                    f".correctResponsesPattern[{i}]",
                )
    for list_name in _COMPONENT_LISTS:
        if list_name in d:
            if list_name not in allowed:
                supported = (
                    f"only the component list(s) {', '.join(sorted(allowed))}" if allowed else "no component lists"
                )
                fail(
                    "activity.definition.components.not-allowed",
                    DATA + "2.4.4.1",
                    f"interactionType {itype!r} supports {supported}, found {list_name!r}",
                    f".{list_name}",
                )
            try:
                check_components(d[list_name], list_name)
            except Violation as e:
                e.keys.append(f".{list_name}")
                raise


def check_definition(d: object) -> None:
    if d.__class__ is not dict:
        bad_type("activity.definition.type", DATA + "2.4.4.1", "activity definition", "an object", d)
    if not _DEFINITION_KEYS.issuperset(d):
        unknown_properties(d, _DEFINITION_KEYS, "an Activity Definition")
    for name, what, step in _DEFINITION_TEXTS:
        if name in d:
            try:
                check_language_map(d[name], what)
            except Violation as e:
                e.keys.append(step)
                raise
    if "type" in d:
        atype = d["type"]
        if atype.__class__ is not str or (atype not in IRI_OK and not is_iri(atype)):
            iri_error(atype, "activity.definition.type.iri", DATA + "2.4.4.1", "definition.type", ".type")
    if "moreInfo" in d:
        more = d["moreInfo"]
        if more.__class__ is not str or (more not in IRI_OK and not is_iri(more)):
            iri_error(
                more, "activity.definition.moreInfo.irl", DATA + "2.4.4.1", "definition.moreInfo", ".moreInfo", "IRL"
            )
    if "extensions" in d:
        try:
            check_extensions(d["extensions"])
        except Violation as e:
            e.keys.append(".extensions")
            raise
    if "interactionType" in d:
        check_interaction(d, d["interactionType"])
    elif not _INTERACTION_KEYS.isdisjoint(d):
        for key in sorted(_INTERACTION_KEYS.intersection(d)):
            fail(
                "activity.definition.interactionType.required",
                DATA + "2.4.4.1",
                f"Interaction Activities MUST have a valid interactionType; {key!r} given without one",
                f".{key}",
            )


def check_activity(act: Any, type_checked: bool = False) -> None:
    """An Activity object (objectType absent or "Activity", unless ``type_checked``)."""
    if act.__class__ is not dict:
        bad_type("activity.type", DATA + "2.4.4.1", "an Activity", "an Activity object", act)
    if not _ACTIVITY_KEYS.issuperset(act):
        unknown_properties(act, _ACTIVITY_KEYS, "an Activity")
    ot = act.get("objectType")
    if (ot is not None and ot != "Activity" or (ot is None and "objectType" in act)) and not type_checked:
        object_type_error(ot, ("Activity",), "an Activity")
    aid = act.get("id")
    if aid.__class__ is not str or (aid not in IRI_OK and not is_iri(aid)):
        if "id" not in act:
            missing("activity.id.required", DATA + "2.4.4.1", "activity id", ".id")
        else:
            iri_error(aid, "activity.id.iri", DATA + "2.4.4.1", "activity id", ".id")
    if "definition" in act:
        try:
            check_definition(act["definition"])
        except Violation as e:
            e.keys.append(".definition")
            raise
