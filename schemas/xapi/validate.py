"""xAPI statement validation: every statement requirement of xAPI 1.0.3 and of xAPI 2.0.

Pure functions over already-parsed JSON (dicts, lists, str, int, float, bool, None).
The first violated requirement raises :class:`schemas.errors.InvalidStatement` with

- ``rule``: a short stable id of the requirement (``"actor.ifi.exactly-one"``),
- ``message``: a sentence citing the spec section it comes from,
- ``path``: a JSON path to the offending value (``$.context.contextActivities.parent[0].id``).

Version selection follows the ``X-Experience-API-Version`` header: ``1.0``/``1.0.x``
means xAPI 1.0.3 rules, ``2.0``/``2.0.x`` means IEEE 9274.1.1 (xAPI 2.0) rules, which add
``context.contextAgents``/``contextGroups``, require an RFC 3339 timestamp with a
time-zone offset and accept a statement ``version`` of ``2.0.x`` besides ``1.0.x``.

Rule ids (stable; ``{…}`` is a property name):

- request: ``json.parse``, ``version.header``, ``statements.type``, ``statements.empty``,
  ``statements.id.duplicate``
- any level: ``property.unknown``, ``property.case``, ``value.null``, ``objectType.value``,
  ``language-map.{type,key.rfc5646,value.type}``, ``extensions.{type,key.iri}``
- statement: ``statement.type``, ``statement.{actor,verb,object}.required``,
  ``statement.id.uuid``, ``{timestamp,stored}.{format,timezone.required,offset.negative-zero}``,
  ``authority.group.two-agents``, ``authority.group.anonymous``, ``version.format``
- agents/groups: ``actor.type``, ``actor.ifi.exactly-one``, ``actor.name.type``,
  ``actor.mbox.mailto``, ``actor.mbox_sha1sum.hex``, ``actor.openid.uri``,
  ``actor.account.{type,homePage.required,homePage.irl,name.required,name.type,name.empty}``,
  ``group.member.{required,empty,type,agent}``
- verb: ``verb.{type,id.required,id.iri}``, ``verb.voided.statementref``
- object: ``object.type``, ``activity.{type,id.required,id.iri}``,
  ``activity.definition.{type,type.iri,moreInfo.irl,components.type,components.not-allowed}``,
  ``activity.definition.{interactionType.value,interactionType.required,correctResponsesPattern.type}``,
  ``activity.definition.component.id.{required,type,empty,unique}``,
  ``statementref.{objectType,id.required,id.uuid}``,
  ``substatement.{property.forbidden,nested}``
- result: ``result.type``, ``result.score.type``, ``result.score.{scaled,raw,min,max}.type``,
  ``result.score.{scaled.range,raw.range,min-max,min-max.equal}``, ``result.{success,completion,response}.type``,
  ``result.duration.format``
- context: ``context.type``, ``context.registration.uuid``, ``context.team.group``,
  ``context.contextActivities.type``, ``context.{revision,platform}.{type,activity-only}``,
  ``context.language.rfc5646``, ``context.statement.type``; xAPI 2.0:
  ``context.{contextAgents,contextGroups}.type``, ``context.contextAgent.{objectType,agent.required}``,
  ``context.contextGroup.{objectType,group.required}``, ``context.relevantTypes.{type,empty,iri}``
- attachments: ``attachments.type``, ``attachment.{usageType,display,contentType,length,sha2}.required``,
  ``attachment.usageType.iri``, ``attachment.contentType.media-type``,
  ``attachment.length.{type,negative}``, ``attachment.sha2.hex``, ``attachment.fileUrl.irl``,
  ``attachment.signature.contentType``

How it stays fast (a typical statement costs a few microseconds, see ``benchmarks/``):
hand-written checks over dicts, frozensets of allowed keys, precompiled patterns, and
no path strings on the happy path. An error is raised as ``_Here`` holding the keys
below the object that found it; each caller appends its own key on the way up (``try``
costs nothing in Python 3.11 unless something is raised) and the public functions
turn it into ``InvalidStatement`` with the full path.
"""

from __future__ import annotations

import math
import re
import threading
from typing import Any, NoReturn

import orjson

from ..errors import InvalidStatement
from . import timefmt
from .duration import is_duration
from .formats import _UUID, is_iri, is_language_tag, is_mailto, is_media_type, is_sha1_hex, is_sha2_hex, is_uuid
from .formats import _good_iris as _IRI_OK
from .formats import _good_tags as _TAG_OK

__all__ = [
    "CONTINUABLE_RULES",
    "SIGNATURE_USAGE",
    "VOIDED",
    "attachments_needing_parts",
    "parse_statements_json",
    "statement_violations",
    "validate_statement",
    "validate_statement_tolerant",
    "validate_statements",
    "validate_statements_tolerant",
]

# Rules whose every check site goes on checking the rest of the statement as if the
# requirement held (see ``_fail``): only these can be walked past to find the next
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

VOIDED = "http://adlnet.gov/expapi/verbs/voided"
SIGNATURE_USAGE = "http://adlnet.gov/expapi/attachments/signature"

# Spec citations used in messages. Rules shared by both versions cite xAPI 1.0.3,
# whose text 9274.1.1 keeps; rules only 2.0 has cite 9274.1.1 by section name.
_D = "xAPI 1.0.3 Data §"
_C = "xAPI 1.0.3 Communication §"
_X2 = "IEEE 9274.1.1 (xAPI 2.0) "

_STATEMENT_KEYS = frozenset(
    {"id", "actor", "verb", "object", "result", "context", "timestamp", "stored", "authority", "version", "attachments"}
)
_SUBSTATEMENT_KEYS = frozenset(
    {"objectType", "actor", "verb", "object", "result", "context", "timestamp", "attachments"}
)
_SUBSTATEMENT_FORBIDDEN = ("id", "stored", "version", "authority")
_AGENT_KEYS = frozenset({"objectType", "name", "mbox", "mbox_sha1sum", "openid", "account"})
_GROUP_KEYS = _AGENT_KEYS | {"member"}
_IFIS = ("mbox", "mbox_sha1sum", "openid", "account")
_ACCOUNT_KEYS = frozenset({"homePage", "name"})
_VERB_KEYS = frozenset({"id", "display"})
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
_COMPONENT_KEYS = frozenset({"id", "description"})
_STATEMENTREF_KEYS = frozenset({"objectType", "id"})
_RESULT_KEYS = frozenset({"score", "success", "completion", "response", "duration", "extensions"})
_SCORE_KEYS = frozenset({"scaled", "raw", "min", "max"})
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
_ATTACHMENT_KEYS = frozenset({"usageType", "display", "description", "contentType", "length", "sha2", "fileUrl"})
_ATTACHMENT_REQUIRED = ("usageType", "display", "contentType", "length", "sha2")
_ONLY_IN_2_0 = frozenset({"contextAgents", "contextGroups"})

# Bound matchers for the hot path (saves a Python call per check).
_uuid_match = _UUID.match
# A Semantic Versioning 1.0.0/2.0.0 version 1.0.x or 2.0.x with a pre-release and/or build
# suffix; the plain forms take the faster path in ``_statement_version``.
_SEMVER_ID = r"(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
_semver_match = re.compile(
    rf"[12]\.0\.[0-9]+(?:-{_SEMVER_ID}(?:\.{_SEMVER_ID})*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?\Z", re.ASCII
).match
_simple_ts_match = timefmt._RFC3339_SIMPLE.match
_isfinite = math.isfinite
_ABSENT = object()


# ---------------------------------------------------------------------------------------
# Errors (slow path: nothing below runs for a valid statement)


class _Here(Exception):
    """A violation found below some object; ``keys`` grow (innermost first) on the way up."""

    def __init__(self, rule: str, message: str, key: str) -> None:
        super().__init__(rule)
        self.rule = rule
        self.message = message
        self.keys = [key] if key else []


def _key(name: str) -> str:
    """The JSON-path step for an object key: ``.name`` or ``["odd key"]``."""
    return f".{name}" if name.isidentifier() else f"[{orjson.dumps(name).decode()}]"


class _Hard(_Here):
    """A violation no walk goes past (a wrong JSON type), whatever its rule id."""


class _Collecting(threading.local):
    """Per-thread state of a :func:`statement_violations` walk (unused on the strict path).

    ``skip`` ≥ 0 while collecting: the first ``skip`` continuable violations met in this
    walk were recorded by earlier walks and are passed over (the walk is deterministic,
    so the n-th one is the same place every time); the next one is raised, so that it
    gets its full JSON path on the way up, like any violation.
    """

    skip = -1
    seen = 0
    continuable: frozenset[str] = frozenset()


_collecting = _Collecting()


def _fail(rule: str, cite: str, detail: str, key: str = "") -> None:
    """Raise the violation; while collecting, pass over the ones already recorded.

    Only rules in ``CONTINUABLE_RULES`` ever return: their call sites go on checking the
    rest as if the requirement held, so every later violation is still found.
    """
    c = _collecting
    if c.skip >= 0 and rule in c.continuable and c.seen < c.skip:
        c.seen += 1
        return
    raise _Here(rule, f"{cite}: {detail}", key)


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _kind(value: object) -> str:
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


def _bad_type(rule: str, cite: str, what: str, expected: str, value: object, key: str = "") -> NoReturn:
    # A value of the wrong JSON type is never passed over, whatever its rule: nothing
    # downstream could read it (raised directly, not through ``_fail``).
    if value is None:
        raise _Hard(
            "value.null",
            f"{_D}2.2: the LRS MUST reject Statements with null values (except inside extensions); {what} is null",
            key,
        )
    raise _Hard(rule, f"{cite}: {what} must be {expected}, found {_kind(value)}", key)


def _unknown_property(obj: dict[str, Any], allowed: frozenset[str], what: str) -> None:
    """Every key of ``obj`` outside ``allowed`` (the first raises unless collecting)."""
    for key in obj:
        if key in allowed:
            continue
        step = _key(key)
        case = [good for good in sorted(allowed) if good.lower() == key.lower()]
        if case:
            _fail(
                "property.case",
                _D + "2.2",
                f"the LRS MUST reject a key whose case differs from the specification: "
                f"{what} has {key!r}, the property is {case[0]!r}",
                step,
            )
        elif key in _ONLY_IN_2_0:
            _fail(
                "property.unknown",
                _D + "2.4.6",
                f"{key!r} is not a Context property in xAPI 1.0.x; it exists only in xAPI 2.0 "
                "(send X-Experience-API-Version: 2.0.0)",
                step,
            )
        else:
            _fail(
                "property.unknown",
                _D + "2.2",
                f"the LRS MUST reject keys the specification does not allow: {what} has no property {_show(key)}",
                step,
            )


def _index_of(item: object, items: list[Any]) -> str:
    """The path step of ``item`` in ``items`` (found by identity, so only on error paths)."""
    for i, candidate in enumerate(items):
        if candidate is item:
            return f"[{i}]"
    raise AssertionError("item not in list")  # pragma: no cover


def _missing(rule: str, cite: str, what: str, key: str) -> None:
    _fail(rule, cite, f"{what} is required", key)


def _iri_error(value: object, rule: str, cite: str, what: str, key: str, kind: str = "IRI") -> None:
    if value.__class__ is not str:
        _bad_type(rule, cite, what, f"an absolute {kind} string", value, key)
    _fail(rule, cite, f"{what} MUST be an absolute {kind} (with a scheme), found {_show(value)}", key)


def _object_type_error(value: object, allowed: tuple[str, ...], what: str) -> None:
    if value is _ABSENT:
        _fail(
            "objectType.value",
            _D + "2.2",
            f"{what}.objectType is required and must be {' or '.join(allowed)}",
            ".objectType",
        )
        return
    if value.__class__ is not str:
        _bad_type("objectType.value", _D + "2.2", f"{what}.objectType", "a string", value, ".objectType")
    hint = ""
    for good in allowed:
        if good.lower() == value.lower():  # type: ignore[attr-defined]
            hint = f" (objectType values are case-sensitive: use {good!r})"
    _fail(
        "objectType.value",
        _D + "2.2",
        f"{what}.objectType must be {' or '.join(allowed)}, found {_show(value)}{hint}",
        ".objectType",
    )


# ---------------------------------------------------------------------------------------
# Shared value types


def _language_map(value: object, what: str) -> None:
    """xAPI 1.0.3 Data §4.2: keys RFC 5646 tags, values strings."""
    if value.__class__ is not dict:
        _bad_type("language-map.type", _D + "4.2", what, "a language map (an object)", value)
    for tag, text in value.items():  # type: ignore[attr-defined]
        if tag not in _TAG_OK and not is_language_tag(tag):
            _fail(
                "language-map.key.rfc5646",
                _D + "4.2",
                f"language map keys MUST be RFC 5646 language tags; {what} has key {_show(tag)}",
                _key(tag),
            )
        if text.__class__ is not str:
            _bad_type("language-map.value.type", _D + "4.2", f"{what}[{tag!r}]", "a string", text, _key(tag))


def _extensions(value: object) -> None:
    """xAPI 1.0.3 Data §4.1: keys MUST be IRIs; values are any JSON (null included)."""
    if value.__class__ is not dict:
        _bad_type("extensions.type", _D + "4.1", "extensions", "an object", value)
    for key in value:  # type: ignore[attr-defined]
        if key not in _IRI_OK and not is_iri(key):
            _fail(
                "extensions.key.iri",
                _D + "4.1",
                f"the keys of an extensions map MUST be IRIs, found {_show(key)}",
                _key(key),
            )


def _timestamp(value: object, v2: bool, name: str) -> None:
    """Full check of a ``timestamp``/``stored`` value; callers try the fast path first."""
    problem = timefmt.timestamp_problem(value, require_offset=v2)
    if problem is None:
        return
    if value.__class__ is not str:
        _bad_type(f"{name}.format", _D + "4.5", name, "an ISO 8601 timestamp string", value)
    if problem == timefmt.TIMEZONE:
        _fail(
            f"{name}.timezone.required",
            _X2 + "Timestamps",
            f"a Timestamp SHALL be formatted per RFC 3339 with a time-zone offset, found {_show(value)}",
        )
    if problem == timefmt.NEGATIVE_ZERO:
        _fail(
            f"{name}.offset.negative-zero",
            _D + "4.5",
            f"a Timestamp MUST be ISO 8601, which forbids the offset -00:00, found {_show(value)}",
        )
    if v2:
        _fail(
            f"{name}.format",
            _X2 + "Timestamps",
            "a Timestamp SHALL be an RFC 3339 date-time with offset (YYYY-MM-DDThh:mm:ss[.fff]±hh:mm), "
            f"found {_show(value)}",
        )
    _fail(f"{name}.format", _D + "4.5", f"a Timestamp MUST be an ISO 8601 combined date and time, found {_show(value)}")


def _number_error(value: object, rule: str, what: str, key: str) -> NoReturn:
    if value.__class__ is float:
        raise _Hard(rule, f"{_D}2.4.5.1: {what} must be a finite number, found {value!r}", key)
    extra = " (a string is rejected even if it contains a number, §2.2)" if value.__class__ is str else ""
    _bad_type(rule, _D + "2.4.5.1", what, "a number" + extra, value, key)


# ---------------------------------------------------------------------------------------
# Agents and Groups (xAPI 1.0.3 Data §2.4.2)


def _account(acc: object) -> None:
    if acc.__class__ is not dict:
        _bad_type("actor.account.type", _D + "2.4.2.4", "account", "an object", acc)
    if not _ACCOUNT_KEYS.issuperset(acc):  # type: ignore[attr-defined]
        _unknown_property(acc, _ACCOUNT_KEYS, "an Account")  # type: ignore[arg-type]
    home = acc.get("homePage")  # type: ignore[attr-defined]
    if home.__class__ is not str or (home not in _IRI_OK and not is_iri(home)):
        if "homePage" not in acc:  # type: ignore[operator]
            _missing("actor.account.homePage.required", _D + "2.4.2.4", "account.homePage", ".homePage")
        _iri_error(home, "actor.account.homePage.irl", _D + "2.4.2.4", "account.homePage", ".homePage", "IRL")
    name = acc.get("name")  # type: ignore[attr-defined]
    if name.__class__ is not str or not name:
        if "name" not in acc:  # type: ignore[operator]
            _missing("actor.account.name.required", _D + "2.4.2.4", "account.name", ".name")
        if name.__class__ is not str:
            _bad_type("actor.account.name.type", _D + "2.4.2.4", "account.name", "a string", name, ".name")
        _fail(
            "actor.account.name.empty",
            _D + "2.4.2.4",
            "account.name is the unique id or name used to log in and cannot be empty",
            ".name",
        )


def _ifis(obj: dict[str, Any]) -> int:
    """Validate the inverse functional identifiers present; return how many there are."""
    n = 0
    if "mbox" in obj:
        n += 1
        if not is_mailto(obj["mbox"]):
            mbox = obj["mbox"]
            if mbox.__class__ is not str:
                _bad_type("actor.mbox.mailto", _D + "2.4.2.3", "mbox", "a mailto IRI string", mbox, ".mbox")
            _fail(
                "actor.mbox.mailto",
                _D + "2.4.2.3",
                f'mbox MUST be a mailto IRI ("mailto:email address"), found {_show(mbox)}',
                ".mbox",
            )
    if "mbox_sha1sum" in obj:
        n += 1
        if not is_sha1_hex(obj["mbox_sha1sum"]):
            sha = obj["mbox_sha1sum"]
            if sha.__class__ is not str:
                _bad_type("actor.mbox_sha1sum.hex", _D + "2.4.2.3", "mbox_sha1sum", "a string", sha, ".mbox_sha1sum")
            _fail(
                "actor.mbox_sha1sum.hex",
                _D + "2.4.2.3",
                f"mbox_sha1sum MUST be the hex-encoded SHA1 of a mailto IRI (40 hex digits), found {_show(sha)}",
                ".mbox_sha1sum",
            )
    if "openid" in obj:
        n += 1
        openid = obj["openid"]
        if openid.__class__ is not str or (openid not in _IRI_OK and not is_iri(openid)):
            _iri_error(openid, "actor.openid.uri", _D + "2.4.2.3", "openid", ".openid", "URI")
    if "account" in obj:
        n += 1
        try:
            _account(obj["account"])
        except _Here as e:
            e.keys.append(".account")
            raise
    return n


def _agent(agent: dict[str, Any], what: str) -> None:
    """An Agent whose objectType (absent or "Agent") was already checked."""
    if not _AGENT_KEYS.issuperset(agent):
        _unknown_property(agent, _AGENT_KEYS, f"an Agent ({what})")
    if "name" in agent and agent["name"].__class__ is not str:
        _bad_type("actor.name.type", _D + "2.4.2.1", f"{what}.name", "a string", agent["name"], ".name")
    n = _ifis(agent)
    if n != 1:
        found = ", ".join(k for k in _IFIS if k in agent)
        _fail(
            "actor.ifi.exactly-one",
            _D + "2.4.2.1",
            f"an Agent must have exactly one inverse functional identifier, found {n}" + (f" ({found})" if n else ""),
        )


def _group(group: dict[str, Any], what: str) -> list[Any] | None:
    """A Group whose objectType "Group" was already checked; returns its members."""
    if not _GROUP_KEYS.issuperset(group):
        _unknown_property(group, _GROUP_KEYS, f"a Group ({what})")
    if "name" in group and group["name"].__class__ is not str:
        _bad_type("actor.name.type", _D + "2.4.2.2", f"{what}.name", "a string", group["name"], ".name")
    n = _ifis(group)
    if n > 1:
        found = ", ".join(k for k in _IFIS if k in group)
        _fail(
            "actor.ifi.exactly-one",
            _D + "2.4.2.2",
            f"an Identified Group MUST include exactly one inverse functional identifier, found {n} ({found})",
        )
    members = group.get("member")
    if members.__class__ is not list:
        if "member" in group:
            _bad_type("group.member.type", _D + "2.4.2.2", f"{what}.member", "an array of Agents", members, ".member")
        if n == 0:
            _fail(
                "group.member.required",
                _D + "2.4.2.2",
                "an Anonymous Group (a Group without an inverse functional identifier) MUST include a "
                '"member" property listing constituent Agents',
            )
        return None
    if n == 0 and not members:
        _fail(
            "group.member.empty",
            _D + "2.4.2.2",
            'an Anonymous Group MUST list its constituent Agents in "member"; the array is empty',
            ".member",
        )
    for i, member in enumerate(members):  # type: ignore[arg-type]
        try:
            if member.__class__ is not dict:
                _bad_type("group.member.type", _D + "2.4.2.2", "a Group member", "an Agent object", member)
            ot = member.get("objectType", "Agent")
            if ot != "Agent":
                if ot == "Group":
                    _fail(
                        "group.member.agent",
                        _D + "2.4.2.2",
                        'a Group MUST NOT contain Group Objects in its "member" property',
                        ".objectType",
                    )
                _object_type_error(ot, ("Agent",), "a Group member")
            _agent(member, "a Group member")
        except _Here as e:
            e.keys.append(f".member[{i}]")
            raise
    return members  # type: ignore[return-value]


def _actor(actor: object, what: str) -> list[Any] | None:
    """An Agent or a Group (xAPI 1.0.3 Data §2.4.2). Returns a Group's members, if any."""
    if actor.__class__ is not dict:
        _bad_type("actor.type", _D + "2.4.2", what, "an Agent or Group object", actor)
    ot = actor.get("objectType", "Agent")  # type: ignore[attr-defined]
    if ot == "Agent":
        _agent(actor, what)  # type: ignore[arg-type]
        return None
    if ot == "Group":
        return _group(actor, what)  # type: ignore[arg-type]
    _object_type_error(ot, ("Agent", "Group"), what)
    # Passed over (collecting): an actor still needs its identity, as an Agent.
    _agent(actor, what)  # type: ignore[arg-type]
    return None


# ---------------------------------------------------------------------------------------
# Verb, Activity, StatementRef (xAPI 1.0.3 Data §2.4.3, §2.4.4)


def _verb(verb: object) -> str:
    if verb.__class__ is not dict:
        _bad_type("verb.type", _D + "2.4.3", "verb", "an object", verb)
    if not _VERB_KEYS.issuperset(verb):  # type: ignore[attr-defined]
        _unknown_property(verb, _VERB_KEYS, "a Verb")  # type: ignore[arg-type]
    vid = verb.get("id")  # type: ignore[attr-defined]
    if vid.__class__ is not str or (vid not in _IRI_OK and not is_iri(vid)):
        if "id" not in verb:  # type: ignore[operator]
            _missing("verb.id.required", _D + "2.4.3", "verb.id", ".id")
        _iri_error(vid, "verb.id.iri", _D + "2.4.3", "verb.id", ".id")
    if "display" in verb:  # type: ignore[operator]
        try:
            _language_map(verb["display"], "verb.display")  # type: ignore[index]
        except _Here as e:
            e.keys.append(".display")
            raise
    return vid  # type: ignore[no-any-return]


def _components(items: object, list_name: str) -> None:
    if items.__class__ is not list:
        _bad_type(
            "activity.definition.components.type",
            _D + "2.4.4.1",
            f"definition.{list_name}",
            "an array of interaction components",
            items,
        )
    seen: set[str] = set()
    for i, comp in enumerate(items):  # type: ignore[arg-type]
        try:
            if comp.__class__ is not dict:
                _bad_type(
                    "activity.definition.components.type", _D + "2.4.4.1", "an interaction component", "an object", comp
                )
            if not _COMPONENT_KEYS.issuperset(comp):
                _unknown_property(comp, _COMPONENT_KEYS, "an interaction component")
            cid = comp.get("id")
            if cid.__class__ is not str or not cid:
                if "id" not in comp:
                    _missing(
                        "activity.definition.component.id.required", _D + "2.4.4.1", "interaction component id", ".id"
                    )
                if cid.__class__ is not str:
                    _bad_type(
                        "activity.definition.component.id.type",
                        _D + "2.4.4.1",
                        "interaction component id",
                        "a string",
                        cid,
                        ".id",
                    )
                _fail(
                    "activity.definition.component.id.empty",
                    _D + "2.4.4.1",
                    "an interaction component id identifies the component and cannot be empty",
                    ".id",
                )
            if cid in seen:
                _fail(
                    "activity.definition.component.id.unique",
                    _D + "2.4.4.1",
                    f"within an array of interaction components all id values MUST be distinct; {cid!r} repeats",
                    ".id",
                )
            seen.add(cid)
            if "description" in comp:
                try:
                    _language_map(comp["description"], "interaction component description")
                except _Here as e:
                    e.keys.append(".description")
                    raise
        except _Here as e:
            e.keys.append(f"[{i}]")
            raise


def _interaction(d: dict[str, Any], itype: object) -> None:
    """The interaction properties of a definition that has an interactionType."""
    allowed = _COMPONENTS_FOR.get(itype) if itype.__class__ is str else None  # type: ignore[call-overload]
    if allowed is None:
        if itype.__class__ is not str:
            _bad_type(
                "activity.definition.interactionType.value",
                _D + "2.4.4.1",
                "definition.interactionType",
                "a string",
                itype,
                ".interactionType",
            )
        hint = " (values are case-sensitive)" if itype.lower() in _COMPONENTS_FOR else ""  # type: ignore[attr-defined]
        _fail(
            "activity.definition.interactionType.value",
            _D + "2.4.4.1",
            f"Interaction Activities MUST have a valid interactionType ({', '.join(_COMPONENTS_FOR)}), "
            f"found {_show(itype)}{hint}",
            ".interactionType",
        )
    if "correctResponsesPattern" in d:
        crp = d["correctResponsesPattern"]
        if crp.__class__ is not list:
            _bad_type(
                "activity.definition.correctResponsesPattern.type",
                _D + "2.4.4.1",
                "definition.correctResponsesPattern",
                "an array of strings",
                crp,
                ".correctResponsesPattern",
            )
        for i, pattern in enumerate(crp):
            if pattern.__class__ is not str:
                _bad_type(
                    "activity.definition.correctResponsesPattern.type",
                    _D + "2.4.4.1",
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
                _fail(
                    "activity.definition.components.not-allowed",
                    _D + "2.4.4.1",
                    f"interactionType {itype!r} supports {supported}, found {list_name!r}",
                    f".{list_name}",
                )
            try:
                _components(d[list_name], list_name)
            except _Here as e:
                e.keys.append(f".{list_name}")
                raise


def _definition(d: object) -> None:
    if d.__class__ is not dict:
        _bad_type("activity.definition.type", _D + "2.4.4.1", "activity definition", "an object", d)
    if not _DEFINITION_KEYS.issuperset(d):  # type: ignore[attr-defined]
        _unknown_property(d, _DEFINITION_KEYS, "an Activity Definition")  # type: ignore[arg-type]
    if "name" in d:  # type: ignore[operator]
        try:
            _language_map(d["name"], "definition.name")  # type: ignore[index]
        except _Here as e:
            e.keys.append(".name")
            raise
    if "description" in d:  # type: ignore[operator]
        try:
            _language_map(d["description"], "definition.description")  # type: ignore[index]
        except _Here as e:
            e.keys.append(".description")
            raise
    if "type" in d:  # type: ignore[operator]
        atype = d["type"]  # type: ignore[index]
        if atype.__class__ is not str or (atype not in _IRI_OK and not is_iri(atype)):
            _iri_error(atype, "activity.definition.type.iri", _D + "2.4.4.1", "definition.type", ".type")
    if "moreInfo" in d:  # type: ignore[operator]
        more = d["moreInfo"]  # type: ignore[index]
        if more.__class__ is not str or (more not in _IRI_OK and not is_iri(more)):
            _iri_error(
                more, "activity.definition.moreInfo.irl", _D + "2.4.4.1", "definition.moreInfo", ".moreInfo", "IRL"
            )
    if "extensions" in d:  # type: ignore[operator]
        try:
            _extensions(d["extensions"])  # type: ignore[index]
        except _Here as e:
            e.keys.append(".extensions")
            raise
    if "interactionType" in d:  # type: ignore[operator]
        _interaction(d, d["interactionType"])  # type: ignore[arg-type,index]
    elif not _INTERACTION_KEYS.isdisjoint(d):  # type: ignore[arg-type]
        for key in sorted(_INTERACTION_KEYS.intersection(d)):  # type: ignore[arg-type]
            _fail(
                "activity.definition.interactionType.required",
                _D + "2.4.4.1",
                f"Interaction Activities MUST have a valid interactionType; {key!r} given without one",
                f".{key}",
            )


def _activity(act: Any, type_checked: bool = False) -> None:
    """An Activity object (objectType absent or "Activity", unless ``type_checked``)."""
    if act.__class__ is not dict:
        _bad_type("activity.type", _D + "2.4.4.1", "an Activity", "an Activity object", act)
    if not _ACTIVITY_KEYS.issuperset(act):
        _unknown_property(act, _ACTIVITY_KEYS, "an Activity")
    ot = act.get("objectType")
    if (ot is not None and ot != "Activity" or (ot is None and "objectType" in act)) and not type_checked:
        _object_type_error(ot, ("Activity",), "an Activity")
    aid = act.get("id")
    if aid.__class__ is not str or (aid not in _IRI_OK and not is_iri(aid)):
        if "id" not in act:
            _missing("activity.id.required", _D + "2.4.4.1", "activity id", ".id")
        else:
            _iri_error(aid, "activity.id.iri", _D + "2.4.4.1", "activity id", ".id")
    if "definition" in act:
        try:
            _definition(act["definition"])
        except _Here as e:
            e.keys.append(".definition")
            raise


def _statement_ref(ref: dict[str, Any]) -> None:
    """A Statement Reference whose objectType "StatementRef" was already checked."""
    if not _STATEMENTREF_KEYS.issuperset(ref):
        _unknown_property(ref, _STATEMENTREF_KEYS, "a Statement Reference")
    rid = ref.get("id")
    if not is_uuid(rid):
        if "id" not in ref:
            _missing("statementref.id.required", _D + "2.4.4.3", "StatementRef id", ".id")
        if rid.__class__ is not str:
            _bad_type("statementref.id.uuid", _D + "2.4.4.3", "StatementRef id", "a UUID string", rid, ".id")
        _fail(
            "statementref.id.uuid",
            _D + "2.4.4.3",
            f'a Statement Reference MUST set "id" to the UUID of a Statement, found {_show(rid)}',
            ".id",
        )


# ---------------------------------------------------------------------------------------
# Result (xAPI 1.0.3 Data §2.4.5)


def _score(score: object) -> None:
    if score.__class__ is not dict:
        _bad_type("result.score.type", _D + "2.4.5.1", "result.score", "an object", score)
    if not _SCORE_KEYS.issuperset(score):  # type: ignore[attr-defined]
        _unknown_property(score, _SCORE_KEYS, "a Score")  # type: ignore[arg-type]
    # Numbers: int, or a finite float; bool is excluded by testing the exact class.
    scaled = score.get("scaled", 0)  # type: ignore[attr-defined]
    cls = scaled.__class__
    if cls is not int and (cls is not float or not _isfinite(scaled)):
        _number_error(scaled, "result.score.scaled.type", "score.scaled", ".scaled")
    if not -1 <= scaled <= 1:
        _fail(
            "result.score.scaled.range",
            _D + "2.4.5.1",
            f"score.scaled MUST be a decimal number between -1 and 1 inclusive, found {scaled!r}",
            ".scaled",
        )
    lo = score.get("min")  # type: ignore[attr-defined]
    if lo is not None:
        cls = lo.__class__
        if cls is not int and (cls is not float or not _isfinite(lo)):
            _number_error(lo, "result.score.min.type", "score.min", ".min")
    hi = score.get("max")  # type: ignore[attr-defined]
    if hi is not None:
        cls = hi.__class__
        if cls is not int and (cls is not float or not _isfinite(hi)):
            _number_error(hi, "result.score.max.type", "score.max", ".max")
        if lo is not None and not lo < hi:
            if lo == hi:
                # Its own rule: zero-weight problems send min = max = 0, and a credential may
                # tolerate exactly that without tolerating a reversed range.
                _fail(
                    "result.score.min-max.equal",
                    _D + "2.4.5.1",
                    f"score.min MUST be less than score.max, found them equal ({lo!r})",
                    ".min",
                )
            else:
                _fail(
                    "result.score.min-max",
                    _D + "2.4.5.1",
                    f"score.min MUST be less than score.max, found min {lo!r} greater than max {hi!r}",
                    ".min",
                )
    raw = score.get("raw")  # type: ignore[attr-defined]
    if raw is not None:
        cls = raw.__class__
        if cls is not int and (cls is not float or not _isfinite(raw)):
            _number_error(raw, "result.score.raw.type", "score.raw", ".raw")
        if (lo is not None and raw < lo) or (hi is not None and raw > hi):
            _fail(
                "result.score.raw.range",
                _D + "2.4.5.1",
                f"score.raw MUST lie between min and max inclusive, found raw {raw!r} (min {lo!r}, max {hi!r})",
                ".raw",
            )
    if len(score) > (lo is not None) + (hi is not None) + (raw is not None) + ("scaled" in score):  # type: ignore[arg-type,operator]
        for name in ("min", "max", "raw"):
            if name in score and score[name] is None:  # type: ignore[operator,index]
                _bad_type(f"result.score.{name}.type", _D + "2.4.5.1", f"score.{name}", "a number", None, f".{name}")


def _result(res: object) -> None:
    if res.__class__ is not dict:
        _bad_type("result.type", _D + "2.4.5", "result", "an object", res)
    if not _RESULT_KEYS.issuperset(res):  # type: ignore[attr-defined]
        _unknown_property(res, _RESULT_KEYS, "a Result")  # type: ignore[arg-type]
    if "score" in res:  # type: ignore[operator]
        try:
            _score(res["score"])  # type: ignore[index]
        except _Here as e:
            e.keys.append(".score")
            raise
    if "success" in res and res["success"].__class__ is not bool:  # type: ignore[operator,index]
        _boolean_error(res["success"], "success")  # type: ignore[index]
    if "completion" in res and res["completion"].__class__ is not bool:  # type: ignore[operator,index]
        _boolean_error(res["completion"], "completion")  # type: ignore[index]
    if "response" in res and res["response"].__class__ is not str:  # type: ignore[operator,index]
        _bad_type("result.response.type", _D + "2.4.5", "result.response", "a string", res["response"], ".response")  # type: ignore[index]
    if "duration" in res and not is_duration(res["duration"]):  # type: ignore[operator,index]
        duration = res["duration"]  # type: ignore[index]
        if duration.__class__ is not str:
            _bad_type(
                "result.duration.format",
                _D + "4.6",
                "result.duration",
                "an ISO 8601 duration string",
                duration,
                ".duration",
            )
        _fail(
            "result.duration.format",
            _D + "4.6",
            f"a Duration MUST use the ISO 8601:2004 §4.4.3.2 format (e.g. PT1H2M3.45S, P2W); found {_show(duration)}",
            ".duration",
        )
    if "extensions" in res:  # type: ignore[operator]
        try:
            _extensions(res["extensions"])  # type: ignore[index]
        except _Here as e:
            e.keys.append(".extensions")
            raise


def _boolean_error(value: object, name: str) -> NoReturn:
    extra = " (a string is rejected even if it contains a boolean, §2.2)" if value.__class__ is str else ""
    _bad_type(f"result.{name}.type", _D + "2.4.5", f"result.{name}", "a boolean" + extra, value, f".{name}")


# ---------------------------------------------------------------------------------------
# Context (xAPI 1.0.3 Data §2.4.6; contextAgents/contextGroups from xAPI 2.0)


def _context_activities(cas: object) -> None:
    if cas.__class__ is not dict:
        _bad_type("context.contextActivities.type", _D + "2.4.6.2", "context.contextActivities", "an object", cas)
    if not _CONTEXT_ACTIVITY_KINDS.issuperset(cas):  # type: ignore[attr-defined]
        _unknown_property(cas, _CONTEXT_ACTIVITY_KINDS, "a contextActivities object")  # type: ignore[arg-type]
    for kind, value in cas.items():  # type: ignore[attr-defined]
        try:
            if value.__class__ is list:
                for act in value:
                    try:
                        _activity(act)
                    except _Here as e:
                        e.keys.append(_index_of(act, value))
                        raise
            elif value.__class__ is dict:
                # A single Activity is allowed for compatibility with 0.95 (§2.4.6.2).
                _activity(value)
            else:
                _bad_type(
                    "context.contextActivities.type",
                    _D + "2.4.6.2",
                    f"contextActivities.{kind}",
                    "an Activity object or an array of Activity objects",
                    value,
                )
        except _Here as e:
            e.keys.append(f".{kind}")
            raise


def _relevant_types(value: object, cite: str) -> None:
    if value.__class__ is not list:
        _bad_type("context.relevantTypes.type", cite, "relevantTypes", "an array of IRIs", value)
    if not value:
        _fail(
            "context.relevantTypes.empty", cite, "relevantTypes, when present, SHALL hold 1 or more Relevant Type IRIs"
        )
    for i, iri in enumerate(value):  # type: ignore[arg-type]
        if iri.__class__ is not str or (iri not in _IRI_OK and not is_iri(iri)):
            _iri_error(iri, "context.relevantTypes.iri", cite, "a Relevant Type", f"[{i}]")


def _context_agent(item: object) -> None:
    """xAPI 2.0 Context Agent: {objectType: "contextAgent", agent: Agent, relevantTypes?: [IRI]}."""
    cite = _X2 + "Context Agents"
    if item.__class__ is not dict:
        _bad_type("context.contextAgents.type", cite, "a Context Agent", "an object", item)
    if not _CONTEXT_AGENT_KEYS.issuperset(item):  # type: ignore[attr-defined]
        _unknown_property(item, _CONTEXT_AGENT_KEYS, "a Context Agent")  # type: ignore[arg-type]
    if item.get("objectType") != "contextAgent":  # type: ignore[attr-defined]
        if "objectType" not in item:  # type: ignore[operator]
            _missing(
                "context.contextAgent.objectType", cite, 'a Context Agent\'s objectType ("contextAgent")', ".objectType"
            )
        _object_type_error(item["objectType"], ("contextAgent",), "a Context Agent")  # type: ignore[index]
    if "agent" not in item:  # type: ignore[operator]
        _missing("context.contextAgent.agent.required", cite, "a Context Agent's agent", ".agent")
    agent = item["agent"]  # type: ignore[index]
    try:
        if agent.__class__ is not dict:
            _bad_type("actor.type", cite, "a Context Agent's agent", "an Agent object", agent)
        ot = agent.get("objectType", "Agent")
        if ot != "Agent":
            _object_type_error(ot, ("Agent",), "a Context Agent's agent")
        _agent(agent, "contextAgent.agent")
    except _Here as e:
        e.keys.append(".agent")
        raise
    if "relevantTypes" in item:  # type: ignore[operator]
        try:
            _relevant_types(item["relevantTypes"], cite)  # type: ignore[index]
        except _Here as e:
            e.keys.append(".relevantTypes")
            raise


def _context_group(item: object) -> None:
    """xAPI 2.0 Context Group: {objectType: "contextGroup", group: Group, relevantTypes?: [IRI]}."""
    cite = _X2 + "Context Groups"
    if item.__class__ is not dict:
        _bad_type("context.contextGroups.type", cite, "a Context Group", "an object", item)
    if not _CONTEXT_GROUP_KEYS.issuperset(item):  # type: ignore[attr-defined]
        _unknown_property(item, _CONTEXT_GROUP_KEYS, "a Context Group")  # type: ignore[arg-type]
    if item.get("objectType") != "contextGroup":  # type: ignore[attr-defined]
        if "objectType" not in item:  # type: ignore[operator]
            _missing(
                "context.contextGroup.objectType", cite, 'a Context Group\'s objectType ("contextGroup")', ".objectType"
            )
        _object_type_error(item["objectType"], ("contextGroup",), "a Context Group")  # type: ignore[index]
    if "group" not in item:  # type: ignore[operator]
        _missing("context.contextGroup.group.required", cite, "a Context Group's group", ".group")
    group = item["group"]  # type: ignore[index]
    try:
        if group.__class__ is not dict:
            _bad_type("actor.type", cite, "a Context Group's group", "a Group object", group)
        if group.get("objectType") != "Group":
            _object_type_error(group.get("objectType", _ABSENT), ("Group",), "a Context Group's group")
        _group(group, "contextGroup.group")
    except _Here as e:
        e.keys.append(".group")
        raise
    if "relevantTypes" in item:  # type: ignore[operator]
        try:
            _relevant_types(item["relevantTypes"], cite)  # type: ignore[index]
        except _Here as e:
            e.keys.append(".relevantTypes")
            raise


def _each(items: object, check: Any, rule: str, cite: str, what: str) -> None:
    if items.__class__ is not list:
        _bad_type(rule, cite, what, "an array", items)
    for item in items:  # type: ignore[attr-defined]
        try:
            check(item)
        except _Here as e:
            e.keys.append(_index_of(item, items))  # type: ignore[arg-type]
            raise


def _context(ctx: object, object_is_activity: bool, v2: bool) -> None:
    if ctx.__class__ is not dict:
        _bad_type("context.type", _D + "2.4.6", "context", "an object", ctx)
    allowed = _CONTEXT_KEYS_2 if v2 else _CONTEXT_KEYS_1
    if not allowed.issuperset(ctx):  # type: ignore[attr-defined]
        _unknown_property(ctx, allowed, "a Context")  # type: ignore[arg-type]
    reg = ctx.get("registration", _ABSENT)  # type: ignore[attr-defined]
    if reg is not _ABSENT and (reg.__class__ is not str or _uuid_match(reg) is None):
        if reg.__class__ is not str:
            _bad_type(
                "context.registration.uuid", _D + "2.4.6", "context.registration", "a UUID string", reg, ".registration"
            )
        _fail(
            "context.registration.uuid",
            _D + "2.4.6",
            f"context.registration MUST be a UUID in standard string form, found {_show(reg)}",
            ".registration",
        )
    if "instructor" in ctx:  # type: ignore[operator]
        try:
            _actor(ctx["instructor"], "context.instructor")  # type: ignore[index]
        except _Here as e:
            e.keys.append(".instructor")
            raise
    if "team" in ctx:  # type: ignore[operator]
        team = ctx["team"]  # type: ignore[index]
        if team.__class__ is dict and team.get("objectType") != "Group":
            _fail("context.team.group", _D + "2.4.6", 'context.team MUST be a Group (objectType "Group")', ".team")
        try:
            _actor(team, "context.team")
        except _Here as e:
            e.keys.append(".team")
            raise
    if "contextActivities" in ctx:  # type: ignore[operator]
        try:
            _context_activities(ctx["contextActivities"])  # type: ignore[index]
        except _Here as e:
            e.keys.append(".contextActivities")
            raise
    if "revision" in ctx:  # type: ignore[operator]
        _activity_only(ctx["revision"], "revision", object_is_activity)  # type: ignore[index]
    if "platform" in ctx:  # type: ignore[operator]
        _activity_only(ctx["platform"], "platform", object_is_activity)  # type: ignore[index]
    if "language" in ctx:  # type: ignore[operator]
        lang = ctx["language"]  # type: ignore[index]
        if lang.__class__ is not str or (lang not in _TAG_OK and not is_language_tag(lang)):
            if lang.__class__ is not str:
                _bad_type(
                    "context.language.rfc5646",
                    _D + "2.4.6",
                    "context.language",
                    "a language tag string",
                    lang,
                    ".language",
                )
            _fail(
                "context.language.rfc5646",
                _D + "2.4.6",
                f"context.language MUST be an RFC 5646 language tag, found {_show(lang)}",
                ".language",
            )
    if "statement" in ctx:  # type: ignore[operator]
        try:
            ref = ctx["statement"]  # type: ignore[index]
            if ref.__class__ is not dict:
                _bad_type(
                    "context.statement.type", _D + "2.4.6", "context.statement", "a Statement Reference object", ref
                )
            if ref.get("objectType") != "StatementRef":
                _fail(
                    "statementref.objectType",
                    _D + "2.4.4.3",
                    'a Statement Reference MUST specify an "objectType" property with the value "StatementRef"',
                    ".objectType",
                )
            _statement_ref(ref)
        except _Here as e:
            e.keys.append(".statement")
            raise
    if "extensions" in ctx:  # type: ignore[operator]
        try:
            _extensions(ctx["extensions"])  # type: ignore[index]
        except _Here as e:
            e.keys.append(".extensions")
            raise
    if v2:
        if "contextAgents" in ctx:  # type: ignore[operator]
            try:
                _each(
                    ctx["contextAgents"],
                    _context_agent,
                    "context.contextAgents.type",
                    _X2 + "Context Agents",
                    "context.contextAgents",
                )  # type: ignore[index]
            except _Here as e:
                e.keys.append(".contextAgents")
                raise
        if "contextGroups" in ctx:  # type: ignore[operator]
            try:
                _each(
                    ctx["contextGroups"],
                    _context_group,
                    "context.contextGroups.type",
                    _X2 + "Context Groups",
                    "context.contextGroups",
                )  # type: ignore[index]
            except _Here as e:
                e.keys.append(".contextGroups")
                raise


def _activity_only(value: object, prop: str, object_is_activity: bool) -> None:
    """context.revision / context.platform: strings, only when the Object is an Activity."""
    if value.__class__ is not str:
        _bad_type(f"context.{prop}.type", _D + "2.4.6", f"context.{prop}", "a string", value, f".{prop}")
    if not object_is_activity:
        _fail(
            f"context.{prop}.activity-only",
            _D + "2.4.6",
            f'the "{prop}" property MUST only be used if the Statement\'s Object is an Activity',
            f".{prop}",
        )


# ---------------------------------------------------------------------------------------
# Attachments (xAPI 1.0.3 Data §2.4.11, §2.6)


def _attachment(att: object) -> None:
    if att.__class__ is not dict:
        _bad_type("attachments.type", _D + "2.4.11", "an attachment", "an Attachment object", att)
    if not _ATTACHMENT_KEYS.issuperset(att):  # type: ignore[attr-defined]
        _unknown_property(att, _ATTACHMENT_KEYS, "an Attachment")  # type: ignore[arg-type]
    for req in _ATTACHMENT_REQUIRED:
        if req not in att:  # type: ignore[operator]
            _missing(f"attachment.{req}.required", _D + "2.4.11", f"attachment.{req}", f".{req}")
    usage = att["usageType"]  # type: ignore[index]
    if usage.__class__ is not str or (usage not in _IRI_OK and not is_iri(usage)):
        _iri_error(usage, "attachment.usageType.iri", _D + "2.4.11", "attachment.usageType", ".usageType")
    for lmap in ("display", "description"):
        if lmap in att:  # type: ignore[operator]
            try:
                _language_map(att[lmap], f"attachment.{lmap}")  # type: ignore[index]
            except _Here as e:
                e.keys.append(f".{lmap}")
                raise
    ctype = att["contentType"]  # type: ignore[index]
    if not is_media_type(ctype):
        if ctype.__class__ is not str:
            _bad_type(
                "attachment.contentType.media-type",
                _D + "2.4.11",
                "attachment.contentType",
                "a string",
                ctype,
                ".contentType",
            )
        _fail(
            "attachment.contentType.media-type",
            _D + "2.4.11",
            f"attachment.contentType MUST be an Internet Media Type (type/subtype), found {_show(ctype)}",
            ".contentType",
        )
    length = att["length"]  # type: ignore[index]
    if length.__class__ is not int:
        _bad_type("attachment.length.type", _D + "2.4.11", "attachment.length", "an integer", length, ".length")
    if length < 0:
        _fail(
            "attachment.length.negative", _D + "2.4.11", f"attachment.length counts octets, found {length}", ".length"
        )
    if not is_sha2_hex(att["sha2"]):  # type: ignore[index]
        sha2 = att["sha2"]  # type: ignore[index]
        if sha2.__class__ is not str:
            _bad_type("attachment.sha2.hex", _D + "2.4.11", "attachment.sha2", "a string", sha2, ".sha2")
        _fail(
            "attachment.sha2.hex",
            _D + "2.4.11",
            f"attachment.sha2 MUST be the hex SHA-2 hash of the data (224/256/384/512 bits), found {_show(sha2)}",
            ".sha2",
        )
    if "fileUrl" in att:  # type: ignore[operator]
        url = att["fileUrl"]  # type: ignore[index]
        if url.__class__ is not str or (url not in _IRI_OK and not is_iri(url)):
            _iri_error(url, "attachment.fileUrl.irl", _D + "2.4.11", "attachment.fileUrl", ".fileUrl", "IRL")
    if usage == SIGNATURE_USAGE and ctype != "application/octet-stream":
        _fail(
            "attachment.signature.contentType",
            _D + "2.6",
            'a signature Attachment MUST have contentType "application/octet-stream"',
            ".contentType",
        )


# ---------------------------------------------------------------------------------------
# Statements and SubStatements


def _statement_object(obj: object, v2: bool, in_sub: bool) -> bool:
    """Validate a Statement's object; return whether it is an Activity."""
    if obj.__class__ is not dict:
        _bad_type("object.type", _D + "2.4.4", "object", "an object", obj)
    ot = obj.get("objectType", "Activity")  # type: ignore[attr-defined]
    if ot == "Activity":
        _activity(obj)  # type: ignore[arg-type]
        return True
    if ot == "Agent":
        _agent(obj, "object")  # type: ignore[arg-type]
    elif ot == "Group":
        _group(obj, "object")  # type: ignore[arg-type]
    elif ot == "StatementRef":
        _statement_ref(obj)  # type: ignore[arg-type]
    elif ot == "SubStatement":
        if in_sub:
            _fail(
                "substatement.nested",
                _D + "2.4.4.3",
                "a SubStatement MUST NOT contain a SubStatement of its own",
                ".objectType",
            )
        if not _SUBSTATEMENT_KEYS.issuperset(obj):  # type: ignore[attr-defined]
            for key in _SUBSTATEMENT_FORBIDDEN:
                if key in obj:  # type: ignore[operator]
                    _fail(
                        "substatement.property.forbidden",
                        _D + "2.4.4.3",
                        'a SubStatement MUST NOT have the "id", "stored", "version" or "authority" properties; '
                        f"found {key!r}",
                        f".{key}",
                    )
            _unknown_property(obj, _SUBSTATEMENT_KEYS, "a SubStatement")  # type: ignore[arg-type]
        _core(obj, v2, True)  # type: ignore[arg-type]
    else:
        _object_type_error(ot, ("Activity", "Agent", "Group", "StatementRef", "SubStatement"), "object")
        # Passed over (collecting): the rest is checked as an Activity's (e.g. "GroupActivity").
        _activity(obj, type_checked=True)
    return False


def _core(st: dict[str, Any], v2: bool, in_sub: bool) -> None:
    """What Statements and SubStatements share: actor, verb, object, result, context, timestamp, attachments."""
    if "actor" not in st or "verb" not in st or "object" not in st:
        for req in ("actor", "verb", "object"):
            if req not in st:
                _missing(f"statement.{req}.required", _D + "2.2", f'"{req}"', f".{req}")
    try:
        _actor(st["actor"], "actor")
    except _Here as e:
        e.keys.append(".actor")
        raise
    try:
        verb_id = _verb(st["verb"])
    except _Here as e:
        e.keys.append(".verb")
        raise
    obj = st["object"]
    try:
        is_activity = _statement_object(obj, v2, in_sub)
    except _Here as e:
        e.keys.append(".object")
        raise
    if verb_id == VOIDED and not in_sub and obj.get("objectType") != "StatementRef":
        _fail(
            "verb.voided.statementref",
            _D + "2.3.2",
            'the Object of a voiding Statement MUST have "objectType" "StatementRef"',
            ".object",
        )
    if "result" in st:
        try:
            _result(st["result"])
        except _Here as e:
            e.keys.append(".result")
            raise
    if "context" in st:
        try:
            _context(st["context"], is_activity, v2)
        except _Here as e:
            e.keys.append(".context")
            raise
    if "timestamp" in st:
        ts = st["timestamp"]
        if ts.__class__ is not str or _simple_ts_match(ts) is None or ts.endswith("-00:00"):
            try:
                _timestamp(ts, v2, "timestamp")
            except _Here as e:
                e.keys.append(".timestamp")
                raise
    if "attachments" in st:
        try:
            _each(st["attachments"], _attachment, "attachments.type", _D + "2.4.11", "attachments")
        except _Here as e:
            e.keys.append(".attachments")
            raise


def _statement_version(value: object, v2: bool) -> None:
    if value.__class__ is str:
        head, _, patch = value.partition(".0.")  # type: ignore[attr-defined]
        if patch.isdigit() and patch.isascii() and (head == "1" or (v2 and head == "2")):
            return
        # Communication §3.3: "1.0" means 1.0.0, and versions are Semantic Versioning 1.0.0,
        # so a pre-release or build suffix (1.0.3-rc1, 1.0.0-alpha) keeps a 1.0.x version.
        if value == "1.0" or _semver_match(value) is not None and (value[0] == "1" or v2):  # type: ignore[index]
            return
    if v2:
        _fail(
            "version.format",
            _X2 + "Version",
            f'a Statement version SHALL start with "1.0." or "2.0." (e.g. "2.0.0"), found {_show(value)}',
        )
        return
    _fail(
        "version.format",
        _D + "2.4.10",
        f'an LRS MUST reject Statements whose version does not start with "1.0.", found {_show(value)}',
    )


def _statement(doc: object, v2: bool) -> None:
    if doc.__class__ is not dict:
        _bad_type("statement.type", _D + "2.4", "a Statement", "a JSON object", doc)
    if not _STATEMENT_KEYS.issuperset(doc):  # type: ignore[attr-defined]
        _unknown_property(doc, _STATEMENT_KEYS, "a Statement")  # type: ignore[arg-type]
    sid = doc.get("id", _ABSENT)  # type: ignore[attr-defined]
    if sid is not _ABSENT and (sid.__class__ is not str or _uuid_match(sid) is None):
        if sid.__class__ is not str:
            _bad_type("statement.id.uuid", _D + "2.4.1", "the Statement id", "a UUID string", sid, ".id")
        _fail(
            "statement.id.uuid",
            _D + "2.4.1",
            f"a Statement id MUST be a UUID in standard string form, found {_show(sid)}",
            ".id",
        )
    _core(doc, v2, False)  # type: ignore[arg-type]
    if "stored" in doc:  # type: ignore[operator]
        # Set by the LRS and overwritten on store, but validated first (§2.4.8.s3.b2).
        stored = doc["stored"]  # type: ignore[index]
        if stored.__class__ is not str or _simple_ts_match(stored) is None or stored.endswith("-00:00"):
            try:
                _timestamp(stored, v2, "stored")
            except _Here as e:
                e.keys.append(".stored")
                raise
    if "authority" in doc:  # type: ignore[operator]
        try:
            members = _actor(doc["authority"], "authority")  # type: ignore[index]
        except _Here as e:
            e.keys.append(".authority")
            raise
        if doc["authority"].get("objectType") == "Group" and (members is None or len(members) != 2):  # type: ignore[index]
            _fail(
                "authority.group.two-agents",
                _D + "2.4.9",
                "authority MUST be an Agent, except in 3-legged OAuth where it MUST be a Group of two Agents; "
                f"this Group has {0 if members is None else len(members)} member(s)",
                ".authority",
            )
        if doc["authority"].get("objectType") == "Group" and any(k in doc["authority"] for k in _IFIS):  # type: ignore[index]
            _fail(
                "authority.group.anonymous",
                _D + "2.4.9",
                "an authority Group (3-legged OAuth: the application and the user) MUST be an anonymous Group, "
                "without mbox, mbox_sha1sum, openid or account",
                ".authority",
            )
    if "version" in doc:  # type: ignore[operator]
        try:
            _statement_version(doc["version"], v2)  # type: ignore[index]
        except _Here as e:
            e.keys.append(".version")
            raise


def _is_v2(version: object) -> bool:
    if version.__class__ is str:
        if version == "1.0.3" or version == "1.0" or version.startswith("1.0."):  # type: ignore[attr-defined]
            return False
        if version == "2.0.0" or version == "2.0" or version.startswith("2.0."):  # type: ignore[attr-defined]
            return True
    raise InvalidStatement(
        "version.header",
        f"{_C}3.3: the X-Experience-API-Version header must be 1.0.x or 2.0.0, found {_show(version)}; "
        "the LRS MUST reject other versions with 400 Bad Request",
        "$",
    )


def _raise_at(err: _Here, base: str) -> NoReturn:
    raise InvalidStatement(err.rule, err.message, base + "".join(reversed(err.keys))) from None


def _collect(doc: object, v2: bool, base: str, only: frozenset[str]) -> tuple[list[InvalidStatement], bool]:
    """Every violation of ``doc``, walking past those whose rule is in ``only``.

    One walk per violation found: walk k passes over the k violations already recorded
    and raises the next, which reaches the top with its full path like any violation.
    The list ends with the first violation that cannot be walked past (outside ``only``,
    or a wrong JSON type), or at ``MAX_VIOLATIONS``; the flag says whether the walk got to
    the end past every violation (so that all of them are in ``only``). Only statements
    that failed the strict walk come here, so valid traffic never pays.
    """
    c = _collecting
    found: list[InvalidStatement] = []
    only = only & CONTINUABLE_RULES
    while len(found) < MAX_VIOLATIONS:
        c.skip, c.seen, c.continuable = len(found), 0, only
        try:
            _statement(doc, v2)
            return found, True
        except _Here as err:
            found.append(InvalidStatement(err.rule, err.message, base + "".join(reversed(err.keys))))
            if err.rule not in only or isinstance(err, _Hard):
                return found, False
        finally:
            c.skip = -1
    return found, False


def _check(doc: object, v2: bool, base: str, tolerate: frozenset[str]) -> tuple[str, ...]:
    """Validate one statement; raise its first violation that ``tolerate`` does not cover.

    Returns the tolerated rule ids it violates (sorted, each once), ``()`` if valid.
    """
    try:
        _statement(doc, v2)
        return ()
    except _Here as err:
        if err.rule not in tolerate or isinstance(err, _Hard):
            _raise_at(err, base)
    found, complete = _collect(doc, v2, base, tolerate)
    if len(found) >= MAX_VIOLATIONS:
        raise InvalidStatement(
            "statement.violations.too-many",
            f"the statement breaks at least {MAX_VIOLATIONS} requirements; the first: {found[0].message}",
            found[0].path,
        )
    if not complete:
        raise found[-1]
    return tuple(sorted({v.rule for v in found}))


def statement_violations(doc: object, *, version: str = "1.0.3", path: str = "$") -> list[InvalidStatement]:
    """Every requirement ``doc`` violates, in document order; ``[]`` if it is valid.

    Checking goes on past violations of ``CONTINUABLE_RULES``; the first other violation
    ends the list (what lies below a wrong type or a missing identity cannot be judged).
    A valid statement costs what :func:`validate_statement` costs.
    """
    v2 = _is_v2(version)
    try:
        _statement(doc, v2)
        return []
    except _Here:
        pass
    return _collect(doc, v2, path, CONTINUABLE_RULES)[0]


# ---------------------------------------------------------------------------------------
# Public API


def validate_statement(doc: object, *, version: str = "1.0.3", path: str = "$") -> None:
    """Raise ``InvalidStatement`` for the first requirement ``doc`` violates, else return.

    ``doc`` is one statement as parsed JSON. ``version`` is the request's
    X-Experience-API-Version header: ``1.0``/``1.0.x`` selects xAPI 1.0.3 rules,
    ``2.0``/``2.0.x`` IEEE 9274.1.1 (xAPI 2.0) rules; anything else raises
    ``InvalidStatement("version.header", …, "$")``. ``path`` prefixes every reported
    path. LRS-assigned ``stored`` and ``authority`` are accepted when well-formed (the
    LRS overwrites them). Attachments without ``fileUrl`` are accepted here; see
    :func:`attachments_needing_parts` for the transport rule. ``doc`` is not modified.
    """
    v2 = _is_v2(version)
    try:
        _statement(doc, v2)
    except _Here as err:
        _raise_at(err, path)


def validate_statement_tolerant(
    doc: object, *, version: str = "1.0.3", path: str = "$", tolerate: frozenset[str] = frozenset()
) -> tuple[str, ...]:
    """:func:`validate_statement` under a tolerant ingestion policy.

    A statement whose only violations are of rules in ``tolerate`` (see
    ``CONTINUABLE_RULES``) passes: the rule ids it violates are returned, sorted, each
    once (``()`` for a valid statement). Any other violation raises.
    """
    return _check(doc, _is_v2(version), path, tolerate)


def validate_statements(payload: object, *, version: str = "1.0.3") -> list[dict[str, Any]]:
    """Validate a POST /statements body; return its statements as a list.

    ``payload`` is one statement object (returned as a one-element list, path ``$…``)
    or a non-empty array of them (paths ``$[3]…``). All-or-nothing (xAPI 1.0.3
    Communication §3.2.s3.b9): the first invalid statement raises. Two statements with
    the same ``id`` (compared case-insensitively) raise ``statements.id.duplicate``
    (Communication §2.1.2.s2.b6). The statements themselves are returned unmodified.
    """
    v2 = _is_v2(version)
    if payload.__class__ is dict:
        try:
            _statement(payload, v2)
        except _Here as err:
            _raise_at(err, "$")
        return [payload]  # type: ignore[list-item]
    if payload.__class__ is not list:
        try:
            _bad_type(
                "statements.type",
                _C + "2.1.2",
                "the request body",
                "a Statement object or an array of Statements",
                payload,
            )
        except _Here as err:
            _raise_at(err, "$")
    if not payload:
        raise InvalidStatement(
            "statements.empty", f"{_C}2.1.2: the request body is an empty array; POST needs at least one Statement", "$"
        )
    seen: dict[str, int] = {}
    for i, doc in enumerate(payload):  # type: ignore[arg-type]
        try:
            _statement(doc, v2)
        except _Here as err:
            _raise_at(err, f"$[{i}]")
        sid = doc.get("id")
        if sid is not None:
            key = sid.lower()
            if key in seen:
                raise InvalidStatement(
                    "statements.id.duplicate",
                    f"{_C}2.1.2: a batch containing two or more Statements with the same id SHOULD* be rejected "
                    f"with 400 Bad Request; {sid} repeats the id of $[{seen[key]}]",
                    f"$[{i}].id",
                )
            seen[key] = i
    return payload  # type: ignore[return-value]


def validate_statements_tolerant(
    payload: object, *, version: str = "1.0.3", tolerate: frozenset[str] = frozenset()
) -> tuple[list[dict[str, Any]], list[tuple[str, ...]]]:
    """:func:`validate_statements` under a tolerant ingestion policy.

    Returns the statements and, for each, the ``tolerate`` rule ids it violates (``()``
    when valid). A statement violating any other rule raises as :func:`validate_statements`
    does. Without ``tolerate`` this is :func:`validate_statements` plus empty tuples.
    """
    if not tolerate:
        statements = validate_statements(payload, version=version)
        return statements, [()] * len(statements)
    v2 = _is_v2(version)
    if payload.__class__ is dict:
        return [payload], [_check(payload, v2, "$", tolerate)]  # type: ignore[list-item]
    if payload.__class__ is not list or not payload:
        return validate_statements(payload, version=version), []  # raises statements.type / .empty
    seen: dict[str, int] = {}
    tolerated: list[tuple[str, ...]] = []
    for i, doc in enumerate(payload):  # type: ignore[arg-type]
        tolerated.append(_check(doc, v2, f"$[{i}]", tolerate))
        sid = doc.get("id")
        if sid is not None:
            key = sid.lower()
            if key in seen:
                raise InvalidStatement(
                    "statements.id.duplicate",
                    f"{_C}2.1.2: a batch containing two or more Statements with the same id SHOULD* be rejected "
                    f"with 400 Bad Request; {sid} repeats the id of $[{seen[key]}]",
                    f"$[{i}].id",
                )
            seen[key] = i
    return payload, tolerated  # type: ignore[return-value]


def parse_statements_json(raw: bytes | str, version: str = "1.0.3") -> list[dict[str, Any]]:
    """Parse a JSON request body and validate it as :func:`validate_statements` does.

    Unparseable JSON (syntax errors, invalid UTF-8, NaN/Infinity, an empty body)
    raises ``InvalidStatement("json.parse", …, "$")`` chained to the parser's error.
    Duplicate keys are not detected: the last one wins (xAPI 1.0.3 Data §2.2.s3.b7
    leaves that behaviour undefined).
    """
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise InvalidStatement(
            "json.parse",
            f"{_C}3.2: the request body is not valid JSON ({err}); malformed JSON is a 400 Bad Request",
            "$",
        ) from err
    return validate_statements(payload, version=version)


def attachments_needing_parts(statement: dict[str, Any]) -> list[str]:
    """The ``sha2`` of every Attachment without ``fileUrl``, in order, without repeats.

    xAPI 1.0.3 Communication §1.5.2: such attachments must arrive as parts of a
    multipart/mixed request; a plain application/json request carrying any of them is
    to be rejected (400). Attachments of a SubStatement object count too. The statement
    must already be valid.
    """
    out: list[str] = []
    sources = [statement.get("attachments")]
    obj = statement.get("object")
    if obj.__class__ is dict and obj.get("objectType") == "SubStatement":  # type: ignore[union-attr]
        sources.append(obj.get("attachments"))  # type: ignore[union-attr]
    for atts in sources:
        for att in atts or ():
            if "fileUrl" not in att and att["sha2"] not in out:
                out.append(att["sha2"])
    return out
