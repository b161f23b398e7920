"""Rows of the LRS read index (migration ``0010_lrs_index``) for one statement envelope.

Pure: no I/O, no clock; the same envelope always gives the same rows, so a replayed
envelope only rewrites identical keys. Called by the statements sink beside
``statement_rows`` (see ``sinks/rows.py``).
"""

from __future__ import annotations

import hashlib
import uuid
from functools import lru_cache
from typing import Any

from schemas.envelope import StatementEnvelope
from schemas.errors import InvalidStatement
from schemas.identity import canonical_ifi
from schemas.xapi.timefmt import parse_ms
from schemas.xapi.validate import VOIDED

Rows = dict[str, list[tuple[Any, ...]]]

_NIL = uuid.UUID(int=0)

LRS_STATEMENTS = "lrs_statements"
LRS_STATEMENT_IDS = "lrs_statement_ids"
LRS_VOIDS = "lrs_voids"
LRS_AGENTS = "lrs_agents"
LRS_ACTIVITIES = "lrs_activities"
LRS_ATTACHMENT_REFS = "lrs_attachment_refs"

LRS_COLUMNS: dict[str, tuple[str, ...]] = {
    LRS_STATEMENTS: ("school", "stored_ms", "statement_id", "verb_id", "registration", "has_ref", "ref_id", "voiding"),
    LRS_STATEMENT_IDS: ("school", "statement_id", "stored_ms", "voiding"),
    LRS_VOIDS: ("school", "voided_id", "voiding_id", "stored_ms"),
    LRS_AGENTS: ("school", "agent", "statement_id", "direct"),
    LRS_ACTIVITIES: ("school", "activity_id", "statement_id", "direct"),
    # Attachments (by SHA-2) each statement declares: an erasure finds them here (0014).
    LRS_ATTACHMENT_REFS: ("school", "sha2", "statement_id"),
}
# lrs_attachments is written by the gateway (reporting.lrs.LrsStore.put_attachments), not here.


def agent_key(ifi: str) -> str:
    """How an agent is indexed: sha256 hex of its canonical IFI (``schemas.identity``)."""
    return hashlib.sha256(ifi.encode()).hexdigest()


# The same agents (the learner, the school's authority) recur in every statement of a batch.
_agent_key = lru_cache(maxsize=65_536)(agent_key)


def _agents(value: Any, direct: int, out: dict[str, int]) -> None:
    """An Agent or Group: its own IFI if it has one, and every member's."""
    if not isinstance(value, dict):
        return
    try:
        key = _agent_key(canonical_ifi(value))
    except InvalidStatement:
        key = None  # an anonymous Group: only its members identify anyone
    if key is not None and out.get(key, -1) < direct:
        out[key] = direct
    for member in value.get("member") or ():
        _agents(member, direct, out)


def _context_agents(ctx: Any, out: dict[str, int]) -> None:
    if not isinstance(ctx, dict):
        return
    _agents(ctx.get("instructor"), 0, out)
    _agents(ctx.get("team"), 0, out)
    for ca in ctx.get("contextAgents") or ():  # xAPI 2.0
        if isinstance(ca, dict):
            _agents(ca.get("agent"), 0, out)
    for cg in ctx.get("contextGroups") or ():
        if isinstance(cg, dict):
            _agents(cg.get("group"), 0, out)


def _context_activities(ctx: Any, out: dict[str, int]) -> None:
    if not isinstance(ctx, dict):
        return
    for acts in (ctx.get("contextActivities") or {}).values():
        for act in [acts] if isinstance(acts, dict) else acts or ():
            if isinstance(act, dict) and isinstance(act.get("id"), str):
                out.setdefault(act["id"], 0)


def _related(statement: dict[str, Any]) -> tuple[dict[str, int], dict[str, int]]:
    """``({agent key: direct}, {activity id: direct})`` as the GET filters read them.

    xAPI 1.0.3 Communication §2.1.3: ``agent`` matches the Actor or Object (and Groups
    with that member); ``related_agents`` adds Authority, Instructor, Team (2.0: context
    agents and groups) and all of these inside a SubStatement; ``activity`` matches the
    Object; ``related_activities`` adds context activities, also inside a SubStatement.
    """
    agents: dict[str, int] = {}
    activities: dict[str, int] = {}
    _agents(statement.get("authority"), 0, agents)
    _statement_parts(statement, 1, agents, activities)
    return agents, activities


def _statement_parts(st: dict[str, Any], direct: int, agents: dict[str, int], activities: dict[str, int]) -> None:
    """Actor, object and context of a statement (``direct`` 1) or of its SubStatement (0)."""
    _agents(st.get("actor"), direct, agents)
    _context_agents(st.get("context"), agents)
    _context_activities(st.get("context"), activities)
    obj = st.get("object")
    if not isinstance(obj, dict):
        return
    kind = obj.get("objectType", "Activity")
    if kind in ("Agent", "Group"):
        _agents(obj, direct, agents)
    elif kind == "Activity" and isinstance(obj.get("id"), str):
        if activities.get(obj["id"], -1) < direct:
            activities[obj["id"]] = direct
    elif kind == "SubStatement" and direct:
        _statement_parts(obj, 0, agents, activities)


def lrs_rows(envelope: StatementEnvelope) -> Rows:
    """Index rows for every statement of ``envelope``; raises ``InvalidStatement`` if not canonical."""
    out: Rows = {t: [] for t in LRS_COLUMNS}
    school = envelope.school
    for i, entry in enumerate(envelope.entries):
        s = entry.statement
        path = f"$.statements[{i}].statement"
        try:
            sid = uuid.UUID(s["id"])
            stored_ms = parse_ms(s["stored"], path + ".stored")
            verb = s["verb"]["id"]
        except (KeyError, TypeError, ValueError) as err:
            raise InvalidStatement("statement.canonical", f"not a canonical statement: {err!r}", path) from err
        statement_index_rows(school, s, sid, stored_ms, verb, path, out)
    return out


def statement_index_rows(
    school: str, s: dict[str, Any], sid: uuid.UUID, stored_ms: int, verb: Any, path: str, out: Rows
) -> None:
    """Append one statement's index rows to ``out`` (a dict of every ``LRS_COLUMNS`` table).

    ``sid``, ``stored_ms`` and ``verb`` are the statement's id, ``stored`` and verb id,
    already parsed by the caller (the statements sink parses them for its own rows).
    """
    obj = s.get("object") if isinstance(s.get("object"), dict) else {}
    ref = None
    if obj.get("objectType") == "StatementRef":
        try:
            ref = uuid.UUID(obj["id"])
        except (KeyError, TypeError, ValueError) as err:
            raise InvalidStatement("statement.ref", f"StatementRef id is not a UUID: {err!r}", path + ".object.id")
    voiding = int(verb == VOIDED and ref is not None)
    registration = (s.get("context") or {}).get("registration") or ""
    out[LRS_STATEMENTS].append(
        (school, stored_ms, sid, verb, str(registration).lower(), int(ref is not None), ref or _NIL, voiding)
    )
    out[LRS_STATEMENT_IDS].append((school, sid, stored_ms, voiding))
    if voiding:
        out[LRS_VOIDS].append((school, ref, sid, stored_ms))
    agents, activities = _related(s)
    out[LRS_AGENTS].extend((school, key, sid, direct) for key, direct in agents.items())
    out[LRS_ACTIVITIES].extend((school, act, sid, direct) for act, direct in activities.items())
    out[LRS_ATTACHMENT_REFS].extend((school, sha2, sid) for sha2 in attachment_shas(s))


def attachment_shas(statement: dict[str, Any]) -> list[str]:
    """SHA-2 of every attachment the statement and its SubStatement declare, once each."""
    found: dict[str, None] = {}
    obj = statement.get("object")
    for holder in (statement, obj if isinstance(obj, dict) and obj.get("objectType") == "SubStatement" else None):
        if not isinstance(holder, dict):
            continue
        for att in holder.get("attachments") or ():
            if isinstance(att, dict) and isinstance(att.get("sha2"), str):
                found[att["sha2"]] = None
    return list(found)
