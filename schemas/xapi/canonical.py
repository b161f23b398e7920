"""What an LRS stores: the statement with id, timestamp, stored, authority and version set."""

from __future__ import annotations

import uuid
from typing import Any

from .timefmt import format_ms

DEFAULT_VERSION = "1.0.0"


def canonicalize(statement: dict[str, Any], *, authority: dict[str, Any], stored_ms: int) -> dict[str, Any]:
    """Return the stored form of an already-validated statement.

    xAPI 1.0.3 §2.4.1/§2.4.7-§2.4.10: the LRS assigns ``id`` if absent, sets ``stored``,
    sets ``timestamp`` to ``stored`` if absent, overwrites ``authority`` with the
    credential's and sets ``version`` if absent. The input is not modified.
    """
    out = dict(statement)
    out.setdefault("id", str(uuid.uuid4()))
    stored = format_ms(stored_ms)
    out["stored"] = stored
    out.setdefault("timestamp", stored)
    out["authority"] = authority
    out.setdefault("version", DEFAULT_VERSION)
    return out
