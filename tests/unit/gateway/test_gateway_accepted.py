"""The accepted-ids registry: conflict checks in the sink's blind spot, and the Consistent-Through cap."""

from __future__ import annotations

import asyncio

import orjson

from producers.gateway.accepted import AcceptedIds


def _in_envelope(*statements) -> bytes:
    return orjson.dumps({"statements": [{"course": "", "cohort": "", "statement": s} for s in statements]})


def _future():
    return asyncio.new_event_loop().create_future()


def test_accepted_entries_forgotten_only_once_the_sink_passed_their_kafka_ack():
    now = [10_000]
    reg = AcceptedIds(margin_ms=1_000, clock_ms=lambda: now[0])
    env = _in_envelope({"id": "a"}, {"id": "b"})
    token = reg.reserve("s", [("a", (env, 0), False), ("b", (env, 1), True)], stored_ms=9_000, settled=_future())
    assert reg.get("s", "a").statement == {"id": "a"} and reg.get("s", "b").statement == {"id": "b"}
    assert reg.get("s", "b").voiding and not reg.get("s", "a").voiding
    assert reg.oldest_stored_ms() == 9_000
    reg.prune(50_000)
    assert len(reg) == 2  # still pending: never forgotten
    now[0] = 12_000  # Kafka confirmed at 12.0 s (stamped at 9.0 s: a slow commit)
    reg.settle("s", ["a", "b"], token, committed=True)
    assert reg.pending(reg.get("s", "a")) is None
    reg.prune(12_500)  # the sink caught up at 12.5 s: within the skew margin of the ack
    assert len(reg) == 2 and reg.oldest_stored_ms() == 9_000
    reg.prune(13_500)
    assert len(reg) == 0 and reg.oldest_stored_ms() is None


def test_accepted_failed_request_frees_its_ids_and_other_schools_are_separate():
    reg = AcceptedIds()
    f = _future()
    token = reg.reserve("s", [("a", (_in_envelope({"id": "a"}), 0), False)], stored_ms=1, settled=f)
    assert reg.pending(reg.get("s", "a")) is f
    assert reg.get("t", "a") is None
    reg.settle("s", ["a"], token, committed=False)
    assert reg.get("s", "a") is None


def test_accepted_eviction_keeps_pending_and_counts_the_rest():
    reg = AcceptedIds(max_entries=2)
    t1 = reg.reserve("s", [("a", (b"", 0), False)], 1, _future())
    reg.settle("s", ["a"], t1, committed=True)
    reg.reserve("s", [("b", (b"", 0), False), ("c", (b"", 0), False)], 2, _future())
    assert reg.get("s", "a") is None and reg.get("s", "b") is not None  # the committed oldest made room
    reg.reserve("s", [("d", (b"", 0), False)], 3, _future())
    assert len(reg) == 3  # never drops a pending reservation
