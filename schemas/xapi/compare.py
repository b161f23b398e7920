"""Statement comparison: is a re-sent statement "the same" as the stored one?

xAPI 1.0.3 Data §2.3.1 "Statement Comparison Requirements": differences that could have
been caused by the exceptions to statement immutability MUST be ignored; any other
difference MUST NOT. The exceptions (§2.3.1.b1-b7), and what we do about each:

- LRS-assigned properties: ``stored``, ``authority`` and ``version`` are ignored;
  ``id`` and ``timestamp`` are compared only when both sides carry them (the LRS fills
  them in when absent).
- Activity Definitions and the Verb's ``display`` are not part of the statement: ignored
  (wherever an Activity appears: object, contextActivities, SubStatement).
- Timestamps are compared as instants, to the millisecond (§4.5: an LRS may return
  another time zone and truncate to 3 decimals).
- Group members are an unordered list: compared as a multiset.
- Attachments are not part of the statement (§2.3.1.b6): ignored. This is also what
  lets a signed statement be compared with the statement it signed (§2.6).
- Case-insensitive values: UUIDs, hex hashes, language tags, the scheme and host of
  IRIs (RFC 3987 §5.3.2 syntax-based normalization, which §3.1 allows, including
  percent-encoding normalization) and the domain of an mbox address.
- contextActivities: the LRS returns a single Activity as an array of one (§2.4.6.2),
  so both forms compare equal.
- ``objectType`` left out means its default (Agent for agents, Activity for objects).

Not exceptions, so compared exactly: everything else, including ``result.duration``
as a string (§2.3.1.b8), except that precision beyond 0.01 s is ignored (§4.6.s1.b5).
Numbers compare by value (``1`` equals ``1.0``) but never equal booleans.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections import Counter
from typing import Any

from .timefmt import parse_ms

__all__ = ["comparison_key", "same_as_compared", "same_statement"]

_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_SECONDS_FRACTION = re.compile(r"(\d+)[.,](\d+)S\Z")


def same_statement(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """True if ``a`` and ``b`` are the same statement under the comparison requirements.

    Both must be valid statements (run :func:`~schemas.xapi.validate.validate_statement`
    first). Used for "same id, same content: not a duplicate; different content: 409".
    Neither argument is modified.
    """
    if "id" in a and "id" in b and str(a["id"]).lower() != str(b["id"]).lower():
        return False
    if "timestamp" in a and "timestamp" in b and parse_ms(a["timestamp"]) != parse_ms(b["timestamp"]):
        return False
    return _statement(a, top=True) == _statement(b, top=True)


def comparison_key(stored: dict[str, Any]) -> bytes:
    """SHA-256 of what :func:`same_statement` compares besides ``id`` and ``timestamp``.

    Lets a stored statement be compared without keeping it (the accepted-id index drops
    the bodies the sinks have written): ``same_statement(stored, new)`` equals
    ``same_as_compared(new, stored["id"], comparison_key(stored), parse_ms(stored["timestamp"]))``
    for a stored statement (one that has both).
    """
    return hashlib.sha256(_encode(_statement(stored, top=True)).encode()).digest()


def same_as_compared(new: dict[str, Any], statement_id: str, key: bytes, timestamp_ms: int) -> bool:
    """:func:`same_statement` of ``new`` and a stored statement known by its id, its
    :func:`comparison_key` and its timestamp (epoch ms)."""
    if "id" in new and str(new["id"]).lower() != statement_id.lower():
        return False
    if "timestamp" in new and parse_ms(new["timestamp"]) != timestamp_ms:
        return False
    return comparison_key(new) == key


def _encode(form: Any) -> str:
    """Text of a normal form, equal for equal forms: sets and dicts in sorted order, every
    item self-delimiting (strings as Python literals, numbers terminated, containers
    bracketed). The forms nest only as deep as a statement's structure (JSON values are
    text already)."""
    kind = type(form)
    if kind is str:
        return repr(form)
    if kind is tuple:
        return "(" + "".join(map(_encode, form)) + ")"
    if kind is frozenset:
        return "{" + "".join(sorted(map(_encode, form))) + "}"
    if kind is dict:
        return "<" + "".join(sorted("(" + repr(k) + _encode(v) + ")" for k, v in form.items())) + ">"
    if form is None:
        return "n"
    if kind is bool:
        return "t" if form else "f"
    if kind is int:
        return f"i{form};"
    return "j" + _frozen(form)  # an activity id a tolerated statement sent as another JSON value


# ---------------------------------------------------------------------------------------
# Normal forms: hashable, order-insensitive where the spec says so, type-aware.


class _Lit(str):
    """Output text, told apart from JSON string values on the work stack."""


def _frozen(value: Any) -> str:
    """Canonical JSON text of arbitrary JSON (extension values, responses): hashable.

    Keys sorted, ``1`` and ``1.0`` written alike, booleans never like numbers. Iterative,
    so deeply nested extension values cannot exhaust the Python stack.
    """
    out: list[str] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _Lit):
            out.append(item)
        elif item is None:
            out.append("null")
        elif item is True or item is False:
            out.append("true" if item else "false")
        elif isinstance(item, str):
            out.append(json.dumps(item))
        elif isinstance(item, (int, float)):
            out.append(repr(int(item)) if isinstance(item, float) and item.is_integer() else repr(item))
        elif isinstance(item, list):
            stack.append(_Lit("]"))
            for i in range(len(item) - 1, -1, -1):
                stack.append(item[i])
                if i:
                    stack.append(_Lit(","))
            stack.append(_Lit("["))
        elif isinstance(item, dict):
            keys = sorted(item)
            stack.append(_Lit("}"))
            for i in range(len(keys) - 1, -1, -1):
                stack.append(item[keys[i]])
                stack.append(_Lit(json.dumps(keys[i]) + ":"))
                if i:
                    stack.append(_Lit(","))
            stack.append(_Lit("{"))
        else:
            out.append(repr(item))
    return "".join(out)


# Short IRIs that repeat across statements (verbs, activities, homePages, extension keys) are
# normalized once: the gateway's index pruning normalizes ~5 per statement, and took 45 µs per
# statement with the cache against 54 without (benchmarks.bench_index_prune). Long ones are not
# kept, so that a client's huge made-up IRIs cannot fill the memory.
_IRI_CACHED_LENGTH = 256


def _iri(value: str) -> str:
    return _iri_cached(value) if len(value) <= _IRI_CACHED_LENGTH else _normalize_iri(value)


@functools.lru_cache(maxsize=8192)
def _iri_cached(value: str) -> str:
    return _normalize_iri(value)


def _normalize_iri(value: str) -> str:
    """RFC 3987 §5.3.2 syntax-based normalization: case of scheme and host, %-escapes."""
    scheme, sep, rest = value.partition(":")
    if not sep:
        return value
    if rest.startswith("//"):
        end = len(rest)
        for stop in "/?#":
            i = rest.find(stop, 2)
            if i != -1 and i < end:
                end = i
        authority = rest[2:end]
        userinfo, at, host = authority.rpartition("@")
        rest = "//" + userinfo + at + host.lower() + rest[end:]
    if "%" in rest:
        rest = _PERCENT.sub(_percent, rest)
    return scheme.lower() + ":" + rest


def _percent(m: re.Match[str]) -> str:
    char = chr(int(m.group(1), 16))
    return char if char in _UNRESERVED else "%" + m.group(1).upper()


def _mbox(value: str) -> str:
    """mailto IRI with the scheme and the address's domain part lower-cased."""
    scheme, _, address = value.partition(":")
    local, at, domain = address.rpartition("@")
    return scheme.lower() + ":" + local + at + domain.lower()


def _agent(agent: dict[str, Any]) -> Any:
    out: dict[str, Any] = {"objectType": agent.get("objectType", "Agent")}
    if "name" in agent:
        out["name"] = agent["name"]
    if "mbox" in agent:
        out["mbox"] = _mbox(agent["mbox"])
    if "mbox_sha1sum" in agent:
        out["mbox_sha1sum"] = agent["mbox_sha1sum"].lower()
    if "openid" in agent:
        out["openid"] = _iri(agent["openid"])
    if "account" in agent:
        out["account"] = (_iri(agent["account"]["homePage"]), agent["account"]["name"])
    if "member" in agent:
        out["member"] = frozenset(Counter(_agent(m) for m in agent["member"]).items())
    return frozenset(out.items())


def _activity(activity: dict[str, Any]) -> Any:
    # The definition is not part of the statement (§2.3.1.b2). A tolerated statement
    # may carry an activity without id or with another objectType: compared as sent.
    aid = activity.get("id")
    return (activity.get("objectType", "Activity"), _iri(aid) if isinstance(aid, str) else aid)


def _object(obj: dict[str, Any]) -> Any:
    kind = obj.get("objectType", "Activity")
    if kind in ("Agent", "Group"):
        return _agent(obj)
    if kind == "StatementRef":
        return ("StatementRef", obj["id"].lower())
    if kind == "SubStatement":
        return ("SubStatement", _statement(obj, top=False))
    return _activity(obj)


def _duration(value: str) -> str:
    m = _SECONDS_FRACTION.search(value)
    if m is None:
        return value
    fraction = m.group(2)[:2].rstrip("0")
    return value[: m.start()] + m.group(1) + ("." + fraction if fraction else "") + "S"


def _result(result: dict[str, Any]) -> Any:
    out = {k: _frozen(v) for k, v in result.items() if k not in ("duration", "extensions")}
    if "duration" in result:
        out["duration"] = _duration(result["duration"])
    if "extensions" in result:
        out["extensions"] = _extensions(result["extensions"])
    return frozenset(out.items())


def _extensions(ext: dict[str, Any]) -> Any:
    return frozenset((_iri(k), _frozen(v)) for k, v in ext.items())


def _context(ctx: dict[str, Any]) -> Any:
    out: dict[str, Any] = {}
    for key, value in ctx.items():
        if key == "registration":
            out[key] = value.lower()
        elif key in ("instructor", "team"):
            out[key] = _agent(value)
        elif key == "contextActivities":
            out[key] = frozenset(
                (kind, tuple(_activity(a) for a in (acts if isinstance(acts, list) else [acts])))
                for kind, acts in value.items()
            )
        elif key == "language":
            out[key] = value.lower()
        elif key == "statement":
            out[key] = value["id"].lower()
        elif key == "extensions":
            out[key] = _extensions(value)
        elif key == "contextAgents":
            out[key] = tuple((_agent(c["agent"]), _relevant(c)) for c in value)
        elif key == "contextGroups":
            out[key] = tuple((_agent(c["group"]), _relevant(c)) for c in value)
        else:  # revision, platform
            out[key] = _frozen(value)
    return frozenset(out.items())


def _relevant(item: dict[str, Any]) -> Any:
    types = item.get("relevantTypes")
    return None if types is None else tuple(_iri(t) for t in types)


def _statement(st: dict[str, Any], *, top: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "actor": _agent(st["actor"]),
        "verb": _iri(st["verb"]["id"]),  # display is not part of the statement (§2.3.1.b3)
        "object": _object(st["object"]),
    }
    if "result" in st:
        out["result"] = _result(st["result"])
    if "context" in st:
        out["context"] = _context(st["context"])
    if not top and "timestamp" in st:
        # A SubStatement's timestamp is never LRS-assigned: compare presence and instant.
        out["timestamp"] = parse_ms(st["timestamp"])
    return out
