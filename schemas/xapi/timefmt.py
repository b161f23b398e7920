"""Timestamps as xAPI writes them (ISO 8601 / RFC 3339) and as we store them (epoch ms, UTC)."""

from __future__ import annotations

from datetime import datetime, timezone

from ..errors import InvalidStatement


def parse_ms(value: str, path: str = "$.timestamp") -> int:
    """ISO 8601 timestamp with offset → epoch milliseconds (UTC).

    A timestamp without an offset is read as UTC, as xAPI 1.0.3 §4.5.1 recommends an
    LRS do. Sub-millisecond digits are truncated (ClickHouse keeps DateTime64(3)).
    """
    try:
        dt = datetime.fromisoformat(value)
    except (TypeError, ValueError) as err:
        raise InvalidStatement("timestamp.format", f"not an ISO 8601 timestamp: {value!r}", path) from err
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1000) if dt.microsecond % 1000 == 0 else (
        int(dt.replace(microsecond=0).timestamp()) * 1000 + dt.microsecond // 1000
    )


def format_ms(ms: int) -> str:
    """Epoch milliseconds → RFC 3339 UTC with millisecond precision (``...T12:00:00.123Z``)."""
    dt = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
