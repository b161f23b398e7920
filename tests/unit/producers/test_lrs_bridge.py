"""LRS bridge cursor logic against an in-memory LRS (pure logic; the real LRS test is in tests/integration)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from producers.kafka import DeliveryFailed
from producers.lrs_bridge import BridgeCursor, BridgeError, BridgeOptions, LrsBridge
from producers.tincan_compat import LrsError, LrsUnavailable
from schemas.xapi.timefmt import format_ms, parse_ms
from tests.unit.producers.test_replay import RecordingPublisher

T0 = 1_767_225_600_000


def _stmt(i: int, stored_ms: int, micro: int = 0) -> dict:
    return {
        "id": f"00000000-0000-4000-8000-{i:012d}",
        "actor": {"objectType": "Agent", "mbox": f"mailto:l{i % 5}@example.org"},
        "verb": {"id": "http://adlnet.gov/expapi/verbs/experienced", "display": {"en-US": "experienced"}},
        "object": {"objectType": "Activity", "id": f"https://example.org/a/{i}"},
        "timestamp": format_ms(T0),
        # LRSs keep microseconds; the cursor works in milliseconds.
        "stored": format_ms(stored_ms)[:-1] + f"{micro:03d}Z",
        "authority": {"objectType": "Agent", "mbox": "mailto:lrs@example.org"},
        "version": "1.0.3",
    }


class FakeLRS:
    """Statements API semantics: ``since`` exclusive on stored (µs), ascending, limit, ``more`` links."""

    endpoint = "http://lrs.example/xAPI/"

    def __init__(self, honour_since: bool = True) -> None:
        self.statements: list[dict] = []
        self.honour_since = honour_since
        self.requests: list[dict] = []
        self.failures: list[Exception] = []

    def _key(self, s: dict) -> tuple[int, str]:
        return parse_ms(s["stored"]), s["stored"]

    def _page(self, params: dict) -> dict:
        if self.failures:
            raise self.failures.pop(0)
        self.requests.append(params)
        rows = sorted(self.statements, key=lambda s: s["stored"])
        if self.honour_since and "since" in params:
            rows = [s for s in rows if s["stored"] > params["since"][:-1] + "000Z"]
        offset, limit = int(params.get("offset", 0)), int(params["limit"])
        page = rows[offset : offset + limit]
        out = {"statements": page}
        if offset + limit < len(rows):
            rest = {k: v for k, v in params.items() if k != "offset"}
            out["more"] = "/xAPI/statements?" + "&".join(
                f"{k}={v}" for k, v in {**rest, "offset": offset + limit}.items()
            )
        return out

    def fetch_statements(self, params: dict) -> dict:
        return self._page(dict(params))

    def fetch_more(self, more: str) -> dict:
        return self._page({k: v[0] for k, v in parse_qs(urlsplit(more).query).items()})


def _bridge(tmp_path, lrs, publisher=None, **kw) -> LrsBridge:
    options = BridgeOptions(
        school="school-b", cursor_path=tmp_path / "cursor.json", rejects_path=tmp_path / "rejects.jsonl", **kw
    )
    return LrsBridge(lrs, publisher or RecordingPublisher(), options, sleep=lambda s: None)


def _sent_ids(pub: RecordingPublisher) -> list[str]:
    return [s["id"] for _, s in pub.acked]


def test_producers_bridge_cursor_since_is_one_ms_early():
    c = BridgeCursor()
    assert c.since() is None and c.is_new(5, "a")
    c.advance([(T0, "a"), (T0, "b"), (T0 - 3, "c")])
    assert c.stored_ms == T0 and c.ids == {"a", "b"}
    assert c.since() == format_ms(T0 - 1)
    assert not c.is_new(T0, "a") and c.is_new(T0, "z") and not c.is_new(T0 - 1, "q") and c.is_new(T0 + 1, "a")
    c.advance([(T0, "z")])
    assert c.ids == {"a", "b", "z"}
    c.advance([(T0 + 5, "y")])
    assert (c.stored_ms, c.ids) == (T0 + 5, {"y"})
    assert BridgeCursor.from_json(c.to_json()) == c


@pytest.mark.parametrize("honour_since", [True, False])
def test_producers_bridge_same_stored_time_across_pages_and_restarts(tmp_path, honour_since):
    lrs = FakeLRS(honour_since)
    # One POSTed batch: 30 statements in the same millisecond, then a few later ones.
    lrs.statements = [_stmt(i, T0, micro=i) for i in range(30)] + [_stmt(30 + i, T0 + 10 + i) for i in range(5)]
    pub = RecordingPublisher()
    bridge = _bridge(tmp_path, lrs, pub, page_size=7, use_since=honour_since)
    counts = bridge.run(once=True)
    bridge.close()
    assert sorted(_sent_ids(pub)) == sorted(s["id"] for s in lrs.statements)
    assert counts.sent == 35 and counts.pages == 5
    assert len(set(_sent_ids(pub))) == 35

    # Restart: nothing new, nothing re-sent.
    again = RecordingPublisher()
    b2 = _bridge(tmp_path, lrs, again, page_size=7, use_since=honour_since)
    assert b2.run(once=True).sent == 0 and again.acked == []
    # More arrive, one of them in the cursor's very millisecond: delivered exactly once.
    lrs.statements += [_stmt(100, T0 + 14, micro=999), _stmt(101, T0 + 20)]
    assert b2.run(once=True).sent == 2
    assert sorted(_sent_ids(again)) == [_stmt(100, 0)["id"], _stmt(101, 0)["id"]]
    b2.close()
    if honour_since:
        assert lrs.requests[-1]["since"] == format_ms(T0 + 14 - 1)


def test_producers_bridge_kafka_failure_mid_run_resends_only_the_unacknowledged_page(tmp_path):
    lrs = FakeLRS()
    lrs.statements = [_stmt(i, T0 + i // 4) for i in range(40)]  # 4 per millisecond

    class FailsThirdFlush(RecordingPublisher):
        flushes = 0

        def flush(self) -> None:
            self.flushes += 1
            self.fail_flush = self.flushes == 3
            super().flush()

    first = FailsThirdFlush()
    bridge = _bridge(tmp_path, lrs, first, page_size=5, max_attempts=1)
    with pytest.raises(BridgeError, match="giving up"):
        bridge.run(once=True)
    bridge.close()
    # Two pages acknowledged (the second ends inside a millisecond); the third was lost with the broker.
    assert len(first.acked) == 10
    second = RecordingPublisher()
    b2 = _bridge(tmp_path, lrs, second, page_size=5)
    b2.run(once=True)
    b2.close()
    assert not set(_sent_ids(first)) & set(_sent_ids(second))
    assert sorted(_sent_ids(first) + _sent_ids(second)) == sorted(s["id"] for s in lrs.statements)


def test_producers_bridge_backs_off_then_recovers_and_fails_fast_on_auth(tmp_path):
    lrs = FakeLRS()
    lrs.statements = [_stmt(i, T0 + i) for i in range(3)]
    lrs.failures = [LrsUnavailable("connection refused"), LrsUnavailable("503")]
    sleeps: list[float] = []
    options = BridgeOptions(
        school="s", cursor_path=tmp_path / "c.json", rejects_path=tmp_path / "r.jsonl", backoff_initial_s=1.0
    )
    pub = RecordingPublisher()
    bridge = LrsBridge(lrs, pub, options, sleep=sleeps.append)
    assert bridge.run(once=True).sent == 3
    assert len(sleeps) == 2 and 0.5 <= sleeps[0] <= 1.0 and 1.0 <= sleeps[1] <= 2.0
    lrs.failures = [LrsError(401, "bad credentials")]
    with pytest.raises(BridgeError, match="401"):
        bridge.run(once=True)
    bridge.close()

    class Broken(RecordingPublisher):
        def flush(self) -> None:
            raise DeliveryFailed("no broker")

    lrs.statements.append(_stmt(9, T0 + 50))
    b = LrsBridge(lrs, Broken(), options, sleep=sleeps.append)
    with pytest.raises(BridgeError, match="giving up after 8"):
        b.run(once=True)
    b.close()


def test_producers_bridge_rejects_invalid_statements_with_reason_and_moves_on(tmp_path):
    lrs = FakeLRS()
    bad = _stmt(1, T0 + 1)
    bad["verb"] = {"id": "not an iri"}
    lrs.statements = [_stmt(0, T0), bad, _stmt(2, T0 + 2)]
    pub = RecordingPublisher()
    bridge = _bridge(tmp_path, lrs, pub)
    counts = bridge.run(once=True)
    bridge.close()
    assert (counts.sent, counts.rejected) == (2, 1)
    (rej,) = [orjson.loads(x) for x in (tmp_path / "rejects.jsonl").read_bytes().splitlines()]
    assert rej["rule"].startswith("verb") and rej["original"]["id"] == bad["id"] and rej["path"].startswith("$.verb")
    # The rejected statement is behind the cursor: not re-read, not re-rejected.
    b2 = _bridge(tmp_path, lrs)
    assert b2.run(once=True).rejected == 0
    b2.close()
    assert len((tmp_path / "rejects.jsonl").read_bytes().splitlines()) == 1
