"""The ``format`` parameter of GET /statements: ``ids`` and ``canonical`` views of a stored statement.

``exact`` needs nothing here: the stored bytes are returned as they are.
xAPI 1.0.3 Communication §2.1.3 (format) and §2.1.3.s4 (language filtering).
"""

from __future__ import annotations

from typing import Any

_IFIS = ("mbox", "mbox_sha1sum", "openid", "account")
_COMPONENT_LISTS = ("choices", "scale", "source", "target", "steps")


# -- ids -----------------------------------------------------------------------------------
def _agent_ids(agent: Any) -> Any:
    """An Agent or Group reduced to what identifies it; anonymous Groups keep their members' ids."""
    if not isinstance(agent, dict):
        return agent
    out: dict[str, Any] = {}
    if "objectType" in agent:
        out["objectType"] = agent["objectType"]
    for k in _IFIS:
        if k in agent:
            out[k] = agent[k]
            break
    else:
        if "member" in agent:
            out["member"] = [_agent_ids(m) for m in agent["member"]]
    return out


def _activity_ids(act: Any) -> Any:
    if not isinstance(act, dict):
        return act
    # Communication §2.1.3 (format=ids): "Activity Objects contain only the id property".
    return {"id": act.get("id")}


def _object_ids(obj: Any) -> Any:
    if not isinstance(obj, dict):
        return obj
    kind = obj.get("objectType", "Activity")
    if kind in ("Agent", "Group"):
        return _agent_ids(obj)
    if kind == "SubStatement":
        return _statement_ids(obj)
    if kind == "Activity":
        return _activity_ids(obj)
    return obj  # StatementRef is already just an id


def _context_ids(ctx: dict[str, Any]) -> dict[str, Any]:
    out = dict(ctx)
    for k in ("instructor", "team"):
        if k in out:
            out[k] = _agent_ids(out[k])
    if isinstance(out.get("contextActivities"), dict):
        out["contextActivities"] = {
            kind: [_activity_ids(a) for a in acts] if isinstance(acts, list) else _activity_ids(acts)
            for kind, acts in out["contextActivities"].items()
        }
    if isinstance(out.get("contextAgents"), list):
        out["contextAgents"] = [{**ca, "agent": _agent_ids(ca.get("agent"))} for ca in out["contextAgents"]]
    if isinstance(out.get("contextGroups"), list):
        out["contextGroups"] = [{**cg, "group": _agent_ids(cg.get("group"))} for cg in out["contextGroups"]]
    return out


def _statement_ids(st: dict[str, Any]) -> dict[str, Any]:
    out = dict(st)
    if "actor" in out:
        out["actor"] = _agent_ids(out["actor"])
    if isinstance(out.get("verb"), dict):
        out["verb"] = {"id": out["verb"].get("id")}
    if "object" in out:
        out["object"] = _object_ids(out["object"])
    if isinstance(out.get("context"), dict):
        out["context"] = _context_ids(out["context"])
    if "authority" in out:
        out["authority"] = _agent_ids(out["authority"])
    return out


def ids_format(statement: dict[str, Any]) -> dict[str, Any]:
    """``format=ids``: only the minimum that identifies each Agent, Group, Activity and Verb."""
    return _statement_ids(statement)


# -- canonical -----------------------------------------------------------------------------
def parse_accept_language(header: str | None) -> list[tuple[str, float]]:
    """Language ranges of an ``Accept-Language`` header, best first (RFC 7231 §5.3.5)."""
    if not header:
        return []
    ranges = []
    for n, item in enumerate(header.split(",")):
        tag, _, params = item.strip().partition(";")
        tag = tag.strip().lower()
        if not tag:
            continue
        q = 1.0
        for p in params.split(";"):
            name, _, value = p.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > 0:
            ranges.append((tag, q, n))
    ranges.sort(key=lambda r: (-r[1], r[2]))
    return [(t, q) for t, q, _ in ranges]


def choose_language(available: list[str], ranges: list[tuple[str, float]]) -> str | None:
    """The entry of a language map to keep: RFC 2616 §14.4 basic matching, per map.

    A range matches a tag equal to it or starting with it followed by ``-``; ``*`` matches
    anything. Without any match the first entry is kept, so every map keeps exactly one
    language as §2.1.3.s4.b1 requires.
    """
    if not available:
        return None
    lowered = [(k.lower(), k) for k in available]
    for rng, _q in ranges:
        if rng == "*":
            return available[0]
        for low, key in lowered:
            if low == rng or low.startswith(rng + "-"):
                return key
    return available[0]


def _filter_map(lang_map: Any, ranges: list[tuple[str, float]]) -> Any:
    if not isinstance(lang_map, dict) or len(lang_map) <= 1:
        return lang_map
    key = choose_language(list(lang_map), ranges)
    return {key: lang_map[key]}


def _activity_canonical(act: Any, ranges: list[tuple[str, float]]) -> Any:
    if not isinstance(act, dict) or not isinstance(act.get("definition"), dict):
        return act
    d = dict(act["definition"])
    for k in ("name", "description"):
        if k in d:
            d[k] = _filter_map(d[k], ranges)
    for lst in _COMPONENT_LISTS:
        if isinstance(d.get(lst), list):
            d[lst] = [
                {**c, "description": _filter_map(c["description"], ranges)}
                if isinstance(c, dict) and "description" in c
                else c
                for c in d[lst]
            ]
    return {**act, "definition": d}


def _statement_canonical(st: dict[str, Any], ranges: list[tuple[str, float]]) -> dict[str, Any]:
    out = dict(st)
    verb = out.get("verb")
    if isinstance(verb, dict) and "display" in verb:
        out["verb"] = {**verb, "display": _filter_map(verb["display"], ranges)}
    obj = out.get("object")
    if isinstance(obj, dict):
        kind = obj.get("objectType", "Activity")
        if kind == "Activity":
            out["object"] = _activity_canonical(obj, ranges)
        elif kind == "SubStatement":
            out["object"] = _statement_canonical(obj, ranges)
    ctx = out.get("context")
    if isinstance(ctx, dict) and isinstance(ctx.get("contextActivities"), dict):
        out["context"] = {
            **ctx,
            "contextActivities": {
                kind: [_activity_canonical(a, ranges) for a in acts] if isinstance(acts, list)
                else _activity_canonical(acts, ranges)
                for kind, acts in ctx["contextActivities"].items()
            },
        }  # fmt: skip
    return out


def canonical_format(statement: dict[str, Any], accept_language: str | None) -> dict[str, Any]:
    """``format=canonical``: Activities and Verbs with one language per language map.

    We keep no separate canonical Activity definitions, so the statement's own
    definition is the canonical one; Agents and Groups are returned as received.
    """
    return _statement_canonical(statement, parse_accept_language(accept_language))
