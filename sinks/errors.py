"""Sink-side errors."""

from __future__ import annotations


class DeadLetterStorm(Exception):
    """Too many records went to the dead-letter topic: likely a bad deploy, so stop."""


class DeadLetterUndelivered(Exception):
    """The dead-letter topic did not acknowledge a rejected record; retried like an outage.

    Offsets are not committed past a rejected record until Kafka holds its dead letter.
    """


class SinkMisconfigured(Exception):
    """ClickHouse rejects the sink's writes for a reason no record causes (a missing table
    or column, no permission): stop instead of dead-lettering every record."""
