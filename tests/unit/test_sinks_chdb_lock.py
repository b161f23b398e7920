"""Every chDB object is used and released while the engine's lock is held (issue 12, part 4).

chDB results and streaming inserters hold engine memory; one read or freed while another
thread queries the same connection is a data race in native code. The fake session below
records, for every call on a chDB object and for its release, whether the lock was held.
"""

from __future__ import annotations

import gc
import threading

import pytest

from sinks import engines


class _Spy:
    """A chDB object that notes whether the engine's lock is held whenever it is touched."""

    def __init__(self, lock: threading.Lock, log: list[tuple[str, bool]], payload: bytes = b"") -> None:
        self._lock = lock
        self._log = log
        self._payload = payload

    def _note(self, what: str) -> None:
        self._log.append((what, self._lock.locked()))

    def bytes(self) -> bytes:
        self._note("result.bytes")
        return self._payload

    def append(self, _data: bytes) -> None:
        self._note("inserter.append")

    def finish(self) -> None:
        self._note("inserter.finish")

    def cancel(self) -> None:
        self._note("inserter.cancel")

    def __del__(self) -> None:
        self._note(f"{type(self).__name__} released")


class _FakeSession:
    def __init__(self, lock: threading.Lock, log: list[tuple[str, bool]]) -> None:
        self.lock, self.log = lock, log

    def query(self, sql: str, fmt: str, params=None) -> _Spy:
        self.log.append(("query", self.lock.locked()))
        return _Spy(self.lock, self.log, b'{"data": [[1]]}' if fmt == "JSONCompact" else b"")

    def send_insert(self, sql: str, fmt: str) -> _Spy:
        self.log.append(("send_insert", self.lock.locked()))
        return _Spy(self.lock, self.log)

    def close(self) -> None:
        pass


@pytest.fixture
def engine_and_log(monkeypatch: pytest.MonkeyPatch):
    log: list[tuple[str, bool]] = []
    lock = threading.Lock()

    class Shared:
        path = "/nonexistent"
        users = 1

    shared = Shared()
    shared.lock = lock
    shared.session = _FakeSession(lock, log)
    monkeypatch.setattr(engines, "_acquire_chdb", lambda path: shared)
    monkeypatch.setattr(engines, "_release_chdb", lambda s: None)
    engine = engines.ChdbEngine("/nonexistent", "db")
    engine._types["db.t"] = {"a": "UInt64"}
    return engine, log


def test_sinks_chdb_every_result_read_and_released_under_the_lock(engine_and_log) -> None:
    engine, log = engine_and_log
    assert engine.query("SELECT 1") == [(1,)]
    engine.execute("SELECT 1")
    gc.collect()
    touched = [what for what, _ in log]
    assert "result.bytes" in touched and "_Spy released" in touched
    outside = [what for what, held in log if not held]
    assert outside == [], f"chDB objects touched without the lock: {outside}"


def test_sinks_chdb_arrow_inserter_used_and_released_under_the_lock(engine_and_log) -> None:
    engine, log = engine_and_log
    assert engine.insert("db.t", ["a"], [[1, 2, 3]]) == 3
    gc.collect()
    touched = [what for what, _ in log]
    assert "inserter.finish" in touched and "_Spy released" in touched
    outside = [what for what, held in log if not held]
    assert outside == [], f"chDB objects touched without the lock: {outside}"
