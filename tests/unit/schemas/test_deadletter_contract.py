"""The dead-letter record contract (schemas/deadletter.py) and the storm limit of sinks/storm.py."""

from __future__ import annotations

import pytest

from schemas.deadletter import DeadLetter, source_of
from sinks.errors import DeadLetterStorm
from sinks.storm import StormGuard


def test_dead_letter_headers_round_trip_with_and_without_target():
    for dl in (
        DeadLetter("envelope.decode", "not an envelope", source_of("t.xapi.statements", 3, 41), "sink:statements"),
        DeadLetter("webhook.refused", "401 Unauthorized", source_of("t.learnpulse.alerts", 0, 7), "notifier", "hook-1"),
    ):
        headers = dl.headers()
        assert all(isinstance(k, str) and isinstance(v, bytes) for k, v in headers)
        assert DeadLetter.from_headers(headers) == dl
    assert dict(headers)["source"] == b"t.learnpulse.alerts/0/7"


def test_a_record_without_the_contract_headers_is_not_a_dead_letter():
    with pytest.raises(ValueError, match="reason"):
        DeadLetter.from_headers([("rule", b"x"), ("source", b"t/0/1"), ("stage", b"s")])


def test_storm_guard_stops_only_when_dead_letters_are_many_and_most():
    few = StormGuard(window=10, minimum=5, share=0.5, what="records")
    for _ in range(4):
        few.dead_lettered("bad")  # four of four, but fewer than the minimum
    guard = StormGuard(window=10, minimum=5, share=0.5, what="records")
    for _ in range(5):
        guard.passed()
    for _ in range(5):
        guard.dead_lettered("bad")  # five of ten: not more than half
    with pytest.raises(DeadLetterStorm, match="6 of the last 10 records"):
        guard.dead_lettered("bad")  # six of the last ten
