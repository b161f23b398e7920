"""Statements and SubStatements: required parts, object kinds, voiding, stored, authority, version."""

from __future__ import annotations

import re
from typing import Any

from .activity import check_activity
from .agents import IFIS, check_actor, check_agent, check_group
from .attachments import check_attachment
from .context import check_context
from .result import check_result
from .statementref import check_statement_ref
from .values import check_time_property, simple_ts_match, uuid_match
from .verb import check_verb
from .violations import (
    ABSENT,
    DATA,
    XAPI2,
    Violation,
    bad_type,
    each,
    fail,
    format_error,
    missing,
    object_type_error,
    show,
    unknown_properties,
)

VOIDED = "http://adlnet.gov/expapi/verbs/voided"
_STATEMENT_KEYS = frozenset(
    {"id", "actor", "verb", "object", "result", "context", "timestamp", "stored", "authority", "version", "attachments"}
)
_SUBSTATEMENT_KEYS = frozenset(
    {"objectType", "actor", "verb", "object", "result", "context", "timestamp", "attachments"}
)
_SUBSTATEMENT_FORBIDDEN = ("id", "stored", "version", "authority")
# A Semantic Versioning 1.0.0/2.0.0 version 1.0.x or 2.0.x with a pre-release and/or build
# suffix; the plain forms take the faster path in ``check_version``.
_SEMVER_ID = r"(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
_semver_match = re.compile(
    rf"[12]\.0\.[0-9]+(?:-{_SEMVER_ID}(?:\.{_SEMVER_ID})*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?\Z", re.ASCII
).match


def check_object(obj: object, v2: bool, in_sub: bool) -> bool:
    """Validate a Statement's object; return whether it is an Activity."""
    if obj.__class__ is not dict:
        bad_type("object.type", DATA + "2.4.4", "object", "an object", obj)
    ot = obj.get("objectType", "Activity")
    if ot == "Activity":
        check_activity(obj)
        return True
    if ot == "Agent":
        check_agent(obj, "object")
    elif ot == "Group":
        check_group(obj, "object")
    elif ot == "StatementRef":
        check_statement_ref(obj)
    elif ot == "SubStatement":
        if in_sub:
            fail(
                "substatement.nested",
                DATA + "2.4.4.3",
                "a SubStatement MUST NOT contain a SubStatement of its own",
                ".objectType",
            )
        if not _SUBSTATEMENT_KEYS.issuperset(obj):
            for key in _SUBSTATEMENT_FORBIDDEN:
                if key in obj:
                    fail(
                        "substatement.property.forbidden",
                        DATA + "2.4.4.3",
                        'a SubStatement MUST NOT have the "id", "stored", "version" or "authority" properties; '
                        f"found {key!r}",
                        f".{key}",
                    )
            unknown_properties(obj, _SUBSTATEMENT_KEYS, "a SubStatement")
        check_core(obj, v2, True)
    else:
        object_type_error(ot, ("Activity", "Agent", "Group", "StatementRef", "SubStatement"), "object")
        # Passed over (collecting): the rest is checked as an Activity's (e.g. "GroupActivity").
        check_activity(obj, type_checked=True)
    return False


def check_core(st: dict[str, Any], v2: bool, in_sub: bool) -> None:
    """What Statements and SubStatements share: actor, verb, object, result, context, timestamp, attachments."""
    if "actor" not in st or "verb" not in st or "object" not in st:
        for req in ("actor", "verb", "object"):
            if req not in st:
                missing(f"statement.{req}.required", DATA + "2.2", f'"{req}"', f".{req}")
    try:
        check_actor(st["actor"], "actor")
    except Violation as e:
        e.keys.append(".actor")
        raise
    try:
        verb_id = check_verb(st["verb"])
    except Violation as e:
        e.keys.append(".verb")
        raise
    obj = st["object"]
    try:
        is_activity = check_object(obj, v2, in_sub)
    except Violation as e:
        e.keys.append(".object")
        raise
    if verb_id == VOIDED and not in_sub and obj.get("objectType") != "StatementRef":
        fail(
            "verb.voided.statementref",
            DATA + "2.3.2",
            'the Object of a voiding Statement MUST have "objectType" "StatementRef"',
            ".object",
        )
    if "result" in st:
        try:
            check_result(st["result"])
        except Violation as e:
            e.keys.append(".result")
            raise
    if "context" in st:
        try:
            check_context(st["context"], is_activity, v2)
        except Violation as e:
            e.keys.append(".context")
            raise
    if "timestamp" in st:
        ts = st["timestamp"]
        # The usual RFC 3339 form passes here without a call (inline on the hot path).
        if ts.__class__ is not str or simple_ts_match(ts) is None or ts.endswith("-00:00"):
            check_time_property(ts, v2, "timestamp")
    if "attachments" in st:
        try:
            each(st["attachments"], check_attachment, "attachments.type", DATA + "2.4.11", "attachments")
        except Violation as e:
            e.keys.append(".attachments")
            raise


def check_version(value: object, v2: bool) -> None:
    if value.__class__ is str:
        head, _, patch = value.partition(".0.")
        if patch.isdigit() and patch.isascii() and (head == "1" or (v2 and head == "2")):
            return
        # Communication §3.3: "1.0" means 1.0.0, and versions are Semantic Versioning 1.0.0,
        # so a pre-release or build suffix (1.0.3-rc1, 1.0.0-alpha) keeps a 1.0.x version.
        if value == "1.0" or _semver_match(value) is not None and (value[0] == "1" or v2):
            return
    if v2:
        fail(
            "version.format",
            XAPI2 + "Version",
            f'a Statement version SHALL start with "1.0." or "2.0." (e.g. "2.0.0"), found {show(value)}',
        )
        return
    fail(
        "version.format",
        DATA + "2.4.10",
        f'an LRS MUST reject Statements whose version does not start with "1.0.", found {show(value)}',
    )


def check_authority(authority: object) -> None:
    """An Agent, or in 3-legged OAuth an anonymous Group of two Agents (Data §2.4.9)."""
    try:
        members = check_actor(authority, "authority")
    except Violation as e:
        e.keys.append(".authority")
        raise
    if authority.__class__ is not dict or authority.get("objectType") != "Group":
        return
    if members is None or len(members) != 2:
        fail(
            "authority.group.two-agents",
            DATA + "2.4.9",
            "authority MUST be an Agent, except in 3-legged OAuth where it MUST be a Group of two Agents; "
            f"this Group has {0 if members is None else len(members)} member(s)",
            ".authority",
        )
    if any(k in authority for k in IFIS):
        fail(
            "authority.group.anonymous",
            DATA + "2.4.9",
            "an authority Group (3-legged OAuth: the application and the user) MUST be an anonymous Group, "
            "without mbox, mbox_sha1sum, openid or account",
            ".authority",
        )


def check_statement(doc: object, v2: bool) -> None:
    if doc.__class__ is not dict:
        bad_type("statement.type", DATA + "2.4", "a Statement", "a JSON object", doc)
    if not _STATEMENT_KEYS.issuperset(doc):
        unknown_properties(doc, _STATEMENT_KEYS, "a Statement")
    sid = doc.get("id", ABSENT)
    if sid is not ABSENT and (sid.__class__ is not str or uuid_match(sid) is None):
        format_error(
            "statement.id.uuid",
            DATA + "2.4.1",
            "the Statement id",
            "a UUID string",
            sid,
            f"a Statement id MUST be a UUID in standard string form, found {show(sid)}",
            ".id",
        )
    check_core(doc, v2, False)
    if "stored" in doc:
        # Set by the LRS and overwritten on store, but validated first (§2.4.8.s3.b2).
        stored = doc["stored"]
        if stored.__class__ is not str or simple_ts_match(stored) is None or stored.endswith("-00:00"):
            check_time_property(stored, v2, "stored")
    if "authority" in doc:
        check_authority(doc["authority"])
    if "version" in doc:
        try:
            check_version(doc["version"], v2)
        except Violation as e:
            e.keys.append(".version")
            raise
