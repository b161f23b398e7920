"""Rows of the ``quarantine`` table from ``xapi.quarantine`` records (schemas/quarantine.py)."""

from __future__ import annotations

import uuid
from typing import Any

from schemas.clickhouse import tables as T
from schemas.quarantine import QuarantineRecord

Rows = dict[str, list[tuple[Any, ...]]]


def quarantine_rows(limits: Any, raw: bytes | None) -> Rows:
    """One row per record; a malformed record raises ``InvalidStatement`` (→ dead letter)."""
    from .rows import ms_to_datetime

    r = QuarantineRecord.decode(raw)
    received = ms_to_datetime(limits.check(r.received_ms, "quarantine.received", "$.received"))
    body = r.body.decode("utf-8", errors="replace")
    row = (
        r.school, received, uuid.UUID(r.record_id), r.received_ms, r.credential, r.stage, r.xapi_version, r.state,
        list(r.rules), list(r.paths), list(r.messages), body, max(r.body_bytes, 0), int(r.truncated), r.version,
    )  # fmt: skip
    return {T.QUARANTINE: [row]}
