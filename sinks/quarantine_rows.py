"""Rows of the ``quarantine`` table from ``xapi.quarantine`` records (schemas/quarantine.py)."""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from schemas.clickhouse import tables as T
from schemas.errors import InvalidStatement
from schemas.identity import learner_key
from schemas.quarantine import QuarantineRecord

Rows = dict[str, list[tuple[Any, ...]]]

# Keys that make a JSON object an agent to pseudonymise (its inverse functional identifiers).
_IFI_KEYS = frozenset({"mbox", "mbox_sha1sum", "openid", "account"})


def quarantine_rows(secret: bytes, limits: Any, raw: bytes | None) -> Rows:
    """One row per record; a malformed record raises ``InvalidStatement`` (→ dead letter)."""
    from .rows import ms_to_datetime

    r = QuarantineRecord.decode(raw)
    received = ms_to_datetime(limits.check(r.received_ms, "quarantine.received", "$.received"))
    body = r.body.decode("utf-8", errors="replace")
    row = (
        r.school, received, uuid.UUID(r.record_id), r.received_ms, r.credential, r.stage, r.xapi_version, r.state,
        list(r.rules), list(r.paths), list(r.messages), body, max(r.body_bytes, 0), int(r.truncated), r.version,
        sorted(named_learners(secret, r.body)),
    )  # fmt: skip
    return {T.QUARANTINE: [row]}


def named_learners(secret: bytes, body: bytes) -> set[str]:
    """Pseudonyms of every identifiable agent anywhere in a refused body (none if it is not JSON).

    A refused body can be wrong anywhere, so every object holding an identifier counts,
    wherever it stands; an identifier too malformed to canonicalise names nobody.
    """
    from .rows import _pseudonym_of

    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return set()
    found: set[str] = set()
    pending: list[Any] = [document]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            if not _IFI_KEYS.isdisjoint(node):
                try:
                    found.add(_pseudonym_of(secret, learner_key(node)))
                except (InvalidStatement, TypeError, ValueError, AttributeError):
                    pass
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return found
