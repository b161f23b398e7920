"""Sink-side errors."""

from __future__ import annotations


class SinkBackpressure(Exception):
    """ClickHouse cannot take the batch now; keep it, pause consumption, retry later."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DeadLetterStorm(Exception):
    """Too many records went to the dead-letter topic: likely a bad deploy, so stop."""
