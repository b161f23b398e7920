"""The Context (xAPI 1.0.3 Data §2.4.6; contextAgents/contextGroups from xAPI 2.0)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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
    format_error,
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


def check_context_activities(cas: object) -> None:
    if cas.__class__ is not dict:
        bad_type("context.contextActivities.type", DATA + "2.4.6.2", "context.contextActivities", "an object", cas)
    if not _CONTEXT_ACTIVITY_KINDS.issuperset(cas):
        unknown_properties(cas, _CONTEXT_ACTIVITY_KINDS, "a contextActivities object")
    for kind, value in cas.items():
        try:
            if value.__class__ is list:
                # check_items written out: this is the hot path (a call per kind saved).
                for act in value:
                    try:
                        check_activity(act)
                    except Violation as e:
                        e.keys.append(index_of(act, value))
                        raise
            elif value.__class__ is dict:
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
    if value.__class__ is not list:
        bad_type("context.relevantTypes.type", cite, "relevantTypes", "an array of IRIs", value)
    if not value:
        fail(
            "context.relevantTypes.empty", cite, "relevantTypes, when present, SHALL hold 1 or more Relevant Type IRIs"
        )
    for i, iri in enumerate(value):
        if iri.__class__ is not str or (iri not in IRI_OK and not is_iri(iri)):
            iri_error(iri, "context.relevantTypes.iri", cite, "a Relevant Type", f"[{i}]")


@dataclass(frozen=True, slots=True)
class ContextMember:
    """xAPI 2.0 Context Agents and Context Groups, which are built alike.

    ``{objectType: "contextAgent", agent: Agent, relevantTypes?: [IRI]}`` and
    ``{objectType: "contextGroup", group: Group, relevantTypes?: [IRI]}``: the texts below
    are made once, so that a valid item costs no string formatting.
    """

    name: str  # "Context Agent"
    object_type: str  # "contextAgent"
    key: str  # "agent"
    kind: str  # "Agent"
    kind_default: object  # an Agent's objectType may be left out, a Group's may not
    kind_text: str  # "an Agent object"
    check_kind: Callable[[dict[str, Any], str], object]
    keys: frozenset[str] = field(init=False)
    cite: str = field(init=False)
    label: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "keys", frozenset({"objectType", self.key, "relevantTypes"}))
        object.__setattr__(self, "cite", f"{XAPI2}{self.name}s")
        object.__setattr__(self, "label", f"{self.object_type}.{self.key}")

    def check_list(self, items: object) -> None:
        each(items, self.check, f"context.{self.object_type}s.type", self.cite, f"context.{self.object_type}s")

    def check(self, item: object) -> None:
        cite = self.cite
        if item.__class__ is not dict:
            bad_type(f"context.{self.object_type}s.type", cite, f"a {self.name}", "an object", item)
        if not self.keys.issuperset(item):
            unknown_properties(item, self.keys, f"a {self.name}")
        if item.get("objectType") != self.object_type:
            if "objectType" not in item:
                missing(
                    f"context.{self.object_type}.objectType",
                    cite,
                    f'a {self.name}\'s objectType ("{self.object_type}")',
                    ".objectType",
                )
            object_type_error(item["objectType"], (self.object_type,), f"a {self.name}")
        if self.key not in item:
            missing(
                f"context.{self.object_type}.{self.key}.required", cite, f"a {self.name}'s {self.key}", f".{self.key}"
            )
        member = item[self.key]
        try:
            if member.__class__ is not dict:
                bad_type("actor.type", cite, f"a {self.name}'s {self.key}", self.kind_text, member)
            kind = member.get("objectType", self.kind_default)
            if kind != self.kind:
                object_type_error(kind, (self.kind,), f"a {self.name}'s {self.key}")
            self.check_kind(member, self.label)
        except Violation as e:
            e.keys.append(f".{self.key}")
            raise
        if "relevantTypes" in item:
            try:
                check_relevant_types(item["relevantTypes"], cite)
            except Violation as e:
                e.keys.append(".relevantTypes")
                raise


CONTEXT_AGENT = ContextMember(
    "Context Agent", "contextAgent", "agent", "Agent", "Agent", "an Agent object", check_agent
)
CONTEXT_GROUP = ContextMember("Context Group", "contextGroup", "group", "Group", ABSENT, "a Group object", check_group)


def check_context(ctx: object, object_is_activity: bool, v2: bool) -> None:
    if ctx.__class__ is not dict:
        bad_type("context.type", DATA + "2.4.6", "context", "an object", ctx)
    allowed = _CONTEXT_KEYS_2 if v2 else _CONTEXT_KEYS_1
    if not allowed.issuperset(ctx):
        unknown_properties(ctx, allowed, "a Context")
    reg = ctx.get("registration", ABSENT)
    if reg is not ABSENT and (reg.__class__ is not str or uuid_match(reg) is None):
        format_error(
            "context.registration.uuid",
            DATA + "2.4.6",
            "context.registration",
            "a UUID string",
            reg,
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
        if team.__class__ is dict and team.get("objectType") != "Group":
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
        if lang.__class__ is not str or (lang not in TAG_OK and not is_language_tag(lang)):
            format_error(
                "context.language.rfc5646",
                DATA + "2.4.6",
                "context.language",
                "a language tag string",
                lang,
                f"context.language MUST be an RFC 5646 language tag, found {show(lang)}",
                ".language",
            )
    if "statement" in ctx:
        try:
            ref = ctx["statement"]
            if ref.__class__ is not dict:
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
        for member in (CONTEXT_AGENT, CONTEXT_GROUP):
            key = member.object_type + "s"
            if key in ctx:
                try:
                    member.check_list(ctx[key])
                except Violation as e:
                    e.keys.append(f".{key}")
                    raise


def check_activity_only(value: object, prop: str, object_is_activity: bool) -> None:
    """context.revision / context.platform: strings, only when the Object is an Activity."""
    if value.__class__ is not str:
        bad_type(f"context.{prop}.type", DATA + "2.4.6", f"context.{prop}", "a string", value, f".{prop}")
    if not object_is_activity:
        fail(
            f"context.{prop}.activity-only",
            DATA + "2.4.6",
            f'the "{prop}" property MUST only be used if the Statement\'s Object is an Activity',
            f".{prop}",
        )
