"""What an LRS stores: the statement with id, timestamp, stored, authority and version set."""

from __future__ import annotations

import uuid
from typing import Any

from .timefmt import format_ms

DEFAULT_VERSION = "1.0.0"
DEFAULT_VERSION_2_0 = "2.0.0"


def canonicalize(
    statement: dict[str, Any],
    *,
    authority: dict[str, Any],
    stored_ms: int,
    version: str = "1.0.3",
    in_place: bool = False,
) -> dict[str, Any]:
    """Return the stored form of an already-validated statement.

    xAPI 1.0.3 Data §2.4.1/§2.4.7-§2.4.10: the LRS assigns ``id`` (a random UUID) if
    absent, sets ``stored``, sets ``timestamp`` to ``stored`` if absent, overwrites
    ``authority`` with the credential's and sets ``version`` if absent: ``"1.0.0"`` for
    a request under X-Experience-API-Version 1.0.x (§2.4.10.s3.b3), ``"2.0.0"`` under
    2.0 (``version`` is that header). Every ``contextActivities`` value is stored as an
    array, as the LRS must return it (§2.4.6.2.s4.b3), in the SubStatement too.

    Deterministic apart from the assigned id. The input is not modified, unless
    ``in_place``: then ``statement`` itself (and its context and SubStatement) is completed
    and returned — same keys in the same order, without copying a statement its caller
    owns (the gateway's freshly parsed request).
    """
    out = statement if in_place else dict(statement)
    if "id" not in out:  # not setdefault: that would draw a UUID for every statement
        out["id"] = str(uuid.uuid4())
    stored = format_ms(stored_ms)
    out["stored"] = stored
    out.setdefault("timestamp", stored)
    out["authority"] = authority
    out.setdefault("version", DEFAULT_VERSION_2_0 if version.startswith("2.") else DEFAULT_VERSION)
    _arrays_in(out, in_place)
    obj = out.get("object")
    if isinstance(obj, dict) and obj.get("objectType") == "SubStatement":
        if in_place:
            _arrays_in(obj, True)
        else:
            sub = dict(obj)
            if _arrays_in(sub, False):
                out["object"] = sub
    return out


def _arrays_in(statement: dict[str, Any], in_place: bool) -> bool:
    """Replace single-Activity contextActivities values by arrays of one (copy-on-write
    unless ``in_place``); True if anything changed."""
    ctx = statement.get("context")
    if not isinstance(ctx, dict):
        return False
    acts = ctx.get("contextActivities")
    if not isinstance(acts, dict):
        return False
    singles = [k for k, v in acts.items() if isinstance(v, dict)]
    if not singles:
        return False
    if in_place:
        for k in singles:  # assigning an existing key keeps its place: same order as a copy
            acts[k] = [acts[k]]
        return True
    statement["context"] = {
        **ctx,
        "contextActivities": {k: [v] if isinstance(v, dict) else v for k, v in acts.items()},
    }
    return True
