"""The Context (xAPI 1.0.3 Data §2.4.6; contextAgents/contextGroups from xAPI 2.0)."""

from __future__ import annotations

from ..formats import is_iri, is_language_tag
from .activity import check_activity
from .agents import check_actor, check_agent, check_group
from .statementref import check_statement_ref
from .values import IRI_OK, TAG_OK, check_extensions, uuid_match
from .violations import (
    ABSENT,
    DATA,
    XAPI2,
    Violation,
    bad_type,
    each,
    fail,
    index_of,
    iri_error,
    missing,
    object_type_error,
    show,
    unknown_properties,
)

_CONTEXT_KEYS_1 = frozenset(
    {
        "registration",
        "instructor",
        "team",
        "contextActivities",
        "revision",
        "platform",
        "language",
        "statement",
        "extensions",
    }
)
_CONTEXT_KEYS_2 = _CONTEXT_KEYS_1 | {"contextAgents", "contextGroups"}
_CONTEXT_ACTIVITY_KINDS = frozenset({"parent", "grouping", "category", "other"})
_CONTEXT_AGENT_KEYS = frozenset({"objectType", "agent", "relevantTypes"})
_CONTEXT_GROUP_KEYS = frozenset({"objectType", "group", "relevantTypes"})


def check_context_activities(cas: object) -> None:
    if type(cas) is not dict:
        bad_type("context.contextActivities.type", DATA + "2.4.6.2", "context.contextActivities", "an object", cas)
    if not _CONTEXT_ACTIVITY_KINDS.issuperset(cas):
        unknown_properties(cas, _CONTEXT_ACTIVITY_KINDS, "a contextActivities object")
    for kind, value in cas.items():
        try:
            if type(value) is list:
                for act in value:
                    try:
                        check_activity(act)
                    except Violation as e:
                        e.keys.append(index_of(act, value))
                        raise
            elif type(value) is dict:
                # A single Activity is allowed for compatibility with 0.95 (§2.4.6.2).
                check_activity(value)
            else:
                bad_type(
                    "context.contextActivities.type",
                    DATA + "2.4.6.2",
                    f"contextActivities.{kind}",
                    "an Activity object or an array of Activity objects",
                    value,
                )
        except Violation as e:
            e.keys.append(f".{kind}")
            raise


def check_relevant_types(value: object, cite: str) -> None:
    if type(value) is not list:
        bad_type("context.relevantTypes.type", cite, "relevantTypes", "an array of IRIs", value)
    if not value:
        fail(
            "context.relevantTypes.empty", cite, "relevantTypes, when present, SHALL hold 1 or more Relevant Type IRIs"
        )
    for i, iri in enumerate(value):
        if type(iri) is not str or (iri not in IRI_OK and not is_iri(iri)):
            iri_error(iri, "context.relevantTypes.iri", cite, "a Relevant Type", f"[{i}]")


def check_context_agent(item: object) -> None:
    """xAPI 2.0 Context Agent: {objectType: "contextAgent", agent: Agent, relevantTypes?: [IRI]}."""
    cite = XAPI2 + "Context Agents"
    if type(item) is not dict:
        bad_type("context.contextAgents.type", cite, "a Context Agent", "an object", item)
    if not _CONTEXT_AGENT_KEYS.issuperset(item):
        unknown_properties(item, _CONTEXT_AGENT_KEYS, "a Context Agent")
    if item.get("objectType") != "contextAgent":
        if "objectType" not in item:
            missing(
                "context.contextAgent.objectType", cite, 'a Context Agent\'s objectType ("contextAgent")', ".objectType"
            )
        object_type_error(item["objectType"], ("contextAgent",), "a Context Agent")
    if "agent" not in item:
        missing("context.contextAgent.agent.required", cite, "a Context Agent's agent", ".agent")
    agent = item["agent"]
    try:
        if type(agent) is not dict:
            bad_type("actor.type", cite, "a Context Agent's agent", "an Agent object", agent)
        ot = agent.get("objectType", "Agent")
        if ot != "Agent":
            object_type_error(ot, ("Agent",), "a Context Agent's agent")
        check_agent(agent, "contextAgent.agent")
    except Violation as e:
        e.keys.append(".agent")
        raise
    if "relevantTypes" in item:
        try:
            check_relevant_types(item["relevantTypes"], cite)
        except Violation as e:
            e.keys.append(".relevantTypes")
            raise


def check_context_group(item: object) -> None:
    """xAPI 2.0 Context Group: {objectType: "contextGroup", group: Group, relevantTypes?: [IRI]}."""
    cite = XAPI2 + "Context Groups"
    if type(item) is not dict:
        bad_type("context.contextGroups.type", cite, "a Context Group", "an object", item)
    if not _CONTEXT_GROUP_KEYS.issuperset(item):
        unknown_properties(item, _CONTEXT_GROUP_KEYS, "a Context Group")
    if item.get("objectType") != "contextGroup":
        if "objectType" not in item:
            missing(
                "context.contextGroup.objectType", cite, 'a Context Group\'s objectType ("contextGroup")', ".objectType"
            )
        object_type_error(item["objectType"], ("contextGroup",), "a Context Group")
    if "group" not in item:
        missing("context.contextGroup.group.required", cite, "a Context Group's group", ".group")
    group = item["group"]
    try:
        if type(group) is not dict:
            bad_type("actor.type", cite, "a Context Group's group", "a Group object", group)
        if group.get("objectType") != "Group":
            object_type_error(group.get("objectType", ABSENT), ("Group",), "a Context Group's group")
        check_group(group, "contextGroup.group")
    except Violation as e:
        e.keys.append(".group")
        raise
    if "relevantTypes" in item:
        try:
            check_relevant_types(item["relevantTypes"], cite)
        except Violation as e:
            e.keys.append(".relevantTypes")
            raise


def check_context(ctx: object, object_is_activity: bool, v2: bool) -> None:
    if type(ctx) is not dict:
        bad_type("context.type", DATA + "2.4.6", "context", "an object", ctx)
    allowed = _CONTEXT_KEYS_2 if v2 else _CONTEXT_KEYS_1
    if not allowed.issuperset(ctx):
        unknown_properties(ctx, allowed, "a Context")
    reg = ctx.get("registration", ABSENT)
    if reg is not ABSENT and (type(reg) is not str or uuid_match(reg) is None):
        if type(reg) is not str:
            bad_type(
                "context.registration.uuid",
                DATA + "2.4.6",
                "context.registration",
                "a UUID string",
                reg,
                ".registration",
            )
        fail(
            "context.registration.uuid",
            DATA + "2.4.6",
            f"context.registration MUST be a UUID in standard string form, found {show(reg)}",
            ".registration",
        )
    if "instructor" in ctx:
        try:
            check_actor(ctx["instructor"], "context.instructor")
        except Violation as e:
            e.keys.append(".instructor")
            raise
    if "team" in ctx:
        team = ctx["team"]
        if type(team) is dict and team.get("objectType") != "Group":
            fail("context.team.group", DATA + "2.4.6", 'context.team MUST be a Group (objectType "Group")', ".team")
        try:
            check_actor(team, "context.team")
        except Violation as e:
            e.keys.append(".team")
            raise
    if "contextActivities" in ctx:
        try:
            check_context_activities(ctx["contextActivities"])
        except Violation as e:
            e.keys.append(".contextActivities")
            raise
    if "revision" in ctx:
        check_activity_only(ctx["revision"], "revision", object_is_activity)
    if "platform" in ctx:
        check_activity_only(ctx["platform"], "platform", object_is_activity)
    if "language" in ctx:
        lang = ctx["language"]
        if type(lang) is not str or (lang not in TAG_OK and not is_language_tag(lang)):
            if type(lang) is not str:
                bad_type(
                    "context.language.rfc5646",
                    DATA + "2.4.6",
                    "context.language",
                    "a language tag string",
                    lang,
                    ".language",
                )
            fail(
                "context.language.rfc5646",
                DATA + "2.4.6",
                f"context.language MUST be an RFC 5646 language tag, found {show(lang)}",
                ".language",
            )
    if "statement" in ctx:
        try:
            ref = ctx["statement"]
            if type(ref) is not dict:
                bad_type(
                    "context.statement.type", DATA + "2.4.6", "context.statement", "a Statement Reference object", ref
                )
            if ref.get("objectType") != "StatementRef":
                fail(
                    "statementref.objectType",
                    DATA + "2.4.4.3",
                    'a Statement Reference MUST specify an "objectType" property with the value "StatementRef"',
                    ".objectType",
                )
            check_statement_ref(ref)
        except Violation as e:
            e.keys.append(".statement")
            raise
    if "extensions" in ctx:
        try:
            check_extensions(ctx["extensions"])
        except Violation as e:
            e.keys.append(".extensions")
            raise
    if v2:
        if "contextAgents" in ctx:
            try:
                each(
                    ctx["contextAgents"],
                    check_context_agent,
                    "context.contextAgents.type",
                    XAPI2 + "Context Agents",
                    "context.contextAgents",
                )
            except Violation as e:
                e.keys.append(".contextAgents")
                raise
        if "contextGroups" in ctx:
            try:
                each(
                    ctx["contextGroups"],
                    check_context_group,
                    "context.contextGroups.type",
                    XAPI2 + "Context Groups",
                    "context.contextGroups",
                )
            except Violation as e:
                e.keys.append(".contextGroups")
                raise


def check_activity_only(value: object, prop: str, object_is_activity: bool) -> None:
    """context.revision / context.platform: strings, only when the Object is an Activity."""
    if type(value) is not str:
        bad_type(f"context.{prop}.type", DATA + "2.4.6", f"context.{prop}", "a string", value, f".{prop}")
    if not object_is_activity:
        fail(
            f"context.{prop}.activity-only",
            DATA + "2.4.6",
            f'the "{prop}" property MUST only be used if the Statement\'s Object is an Activity',
            f".{prop}",
        )
