"""Request JSON checked for what a parser lets through: nesting depth and duplicate keys.

orjson parses up to 1,024 levels but serializes at most 254, so a deeply nested
extension was accepted and then failed (500) when the gateway wrote it; RFC 8259 §4
leaves duplicate member names to the implementation and orjson keeps the last one,
so ``{"verb": A, "verb": B}`` would be stored as if B had been sent alone. Both are
refused here with a rule id, before anything is stored. Both checks cost a few C-speed
passes over the bytes (``count``, ``find``) plus one ``orjson.dumps``; nothing runs a
Python loop per byte:

- depth (before parsing): a text with at most ``max_depth`` ``[``/``{`` in all cannot
  nest deeper, which settles every ordinary statement. Otherwise the brackets outside
  strings are taken (``brackets``: when no string holds a bracket, every string is ``""``
  once the rest is deleted, else the *structure*, every string removed, ``structure``)
  and innermost pairs are removed pass after pass: what is left after ``max_depth``
  passes is deeper.
- duplicates (after parsing): every object member has exactly one ``:`` outside strings
  and orjson writes the colons inside strings back as they came, so the parsed value,
  serialized again, has fewer colons than the text exactly when a duplicate name was
  collapsed. Only a text that escapes a colon (``\\u003a``) needs the structure of both.
  The slow standard-library parser runs only to name the duplicate in the error.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

from .protocol import bad_request

# Deeper than any statement needs (an xAPI statement is ~6 levels plus its extensions'
# own values) and far from orjson's serializer limit (254) with the envelope around it.
MAX_DEPTH = 64

_KEEP = b'"[]{}:'
_DELETE = bytes(b for b in range(256) if b not in _KEEP)
_NOT_BRACKET_OR_QUOTE = bytes(b for b in range(256) if b not in b'"[]{}')
_BRACKETS = bytes.maketrans(b"{}", b"[]")
_STRINGS = re.compile(rb'"[^"]*"')


def _without_escapes(raw: bytes) -> bytes:
    # An escaped backslash then an escaped quote, so that each remaining quote opens or
    # closes a string (read left to right, as JSON is).
    return raw.replace(b"\\\\", b"").replace(b'\\"', b"") if b"\\" in raw else raw


def brackets(raw: bytes) -> bytes:
    """The brackets of ``raw`` outside strings: what :func:`structure` keeps, without ``:``."""
    kept = _without_escapes(raw).translate(None, _NOT_BRACKET_OR_QUOTE)
    if b'"' not in kept:
        return kept
    # A string without brackets is now "" and, left to right from the first (opening)
    # quote, every such pair is one string. A string with a bracket keeps its opening
    # quote (never followed by a quote), so no quote left means no bracket was in a string.
    outside = kept.replace(b'""', b"")
    if b'"' not in outside:
        return outside
    return structure(raw).replace(b":", b"")  # brackets inside strings: remove the strings


def structure(raw: bytes) -> bytes:
    """``raw`` with every JSON string and every non-structural byte removed."""
    raw = _without_escapes(raw)
    kept = raw.translate(None, _DELETE)
    if b'"' not in kept:
        return kept
    pieces = kept.split(b'"')
    if len(pieces) % 2:
        # An even number of quotes: each pair encloses a string, exactly what the regular
        # expression removes left to right, for a tenth of its time on a batch.
        return b"".join(pieces[::2])
    return _STRINGS.sub(b"", kept)  # an unterminated string: as the expression reads it


def depth_exceeds(skeleton: bytes, max_depth: int) -> bool:
    """True if the brackets of ``skeleton`` (from :func:`structure`) nest deeper than ``max_depth``."""
    brackets = skeleton.translate(_BRACKETS, b":")
    if brackets.count(b"[") <= max_depth:
        return False  # not even that many openers in total
    for _ in range(max_depth):
        shorter = brackets.replace(b"[]", b"")
        if len(shorter) == len(brackets):
            return False  # unbalanced: the parser reports it
        brackets = shorter
        if not brackets:
            return False
    return b"[]" in brackets


def check_depth(raw: bytes, max_depth: int = MAX_DEPTH) -> None:
    """Refuse JSON nested deeper than ``max_depth`` (400 ``json.depth``)."""
    if raw.count(b"[") + raw.count(b"{") <= max_depth:
        return  # not even that many openers in all
    if depth_exceeds(brackets(raw), max_depth):
        raise bad_request(
            "json.depth",
            f"the JSON nests arrays/objects more than {max_depth} levels deep; this LRS accepts at most {max_depth}",
        )


def _members(raw: bytes) -> int:
    return structure(raw).count(b":")


def check_unique_keys(raw: bytes, parsed: Any) -> None:
    """Refuse duplicate member names in one object (400 ``json.duplicate-key``); ``parsed`` is ``raw`` parsed."""
    colons = raw.count(b":")
    if not colons:
        return
    again = orjson.dumps(parsed)
    if b"\\u003a" in raw or b"\\u003A" in raw:
        # An escaped colon comes back unescaped: count members only, outside strings.
        same = _members(raw) == _members(again)
    else:
        same = again.count(b":") == colons
    if same:
        return
    key, path = first_duplicate(raw)
    raise bad_request(
        "json.duplicate-key", f"the JSON repeats the member name {key!r} in one object; names must be unique "
        "(RFC 8259 §4: a duplicate would silently replace the first value)", path,
    )  # fmt: skip


class _Pairs(list):
    """An object's members in text order (the standard parser's ``object_pairs_hook``)."""


def first_duplicate(raw: bytes) -> tuple[str, str]:
    """``(name, JSON path of its object)`` of the first duplicate member (slow path: errors only)."""
    try:
        doc = json.loads(raw, object_pairs_hook=_Pairs)
    except (ValueError, RecursionError):
        return "?", "$"
    found = _find(doc, "$")
    return found if found is not None else ("?", "$")


def _find(value: Any, path: str) -> tuple[str, str] | None:
    if isinstance(value, _Pairs):
        seen: set[str] = set()
        for k, _ in value:
            if k in seen:
                return k, path
            seen.add(k)
        for k, v in value:
            if (found := _find(v, f"{path}.{k}")) is not None:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            if (found := _find(v, f"{path}[{i}]")) is not None:
                return found
    return None


def parse_request_json(raw: bytes, max_depth: int = MAX_DEPTH) -> Any:
    """Parse a request's JSON: depth checked first, then parsed, then duplicate names refused."""
    check_depth(raw, max_depth)
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise bad_request("json.parse", f"the request body is not valid JSON: {err}") from err
    check_unique_keys(raw, parsed)
    return parsed
