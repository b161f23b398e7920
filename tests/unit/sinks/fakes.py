"""In-memory stand-ins for the Kafka clients of sinks.kafkaloop and the ClickHouse engine (pure-logic tests only).

One set for every user of the loop (the loop itself, the ClickHouse sink, the alert
notifier). The real clients are exercised by tests/integration/test_sinks_*.py and
test_notifier_*.py against the real broker, both real ClickHouse engines and real receivers.
"""

from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass, field
from typing import Any

from kafka import TopicPartition
from kafka.errors import CommitFailedError, KafkaError, KafkaTimeoutError

from schemas.clickhouse.engine import ClickHouseError, ClickHouseUnavailable

Record = namedtuple("Record", "topic partition offset timestamp key value")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Committed(dict):
    """Committed offsets by partition; also callable as KafkaConsumer.committed(tp)."""

    def __call__(self, tp: TopicPartition) -> int | None:
        return self.get(tp)


class FakeConsumer:
    """Partitions with logs; poll returns records from unpaused assigned partitions in order."""

    def __init__(self, topic: str, partitions: int, listener: Any) -> None:
        self.topic = topic
        self.listener = listener
        self.logs: dict[TopicPartition, list[Record]] = {TopicPartition(topic, p): [] for p in range(partitions)}
        self.assigned: set[TopicPartition] = set(self.logs)
        self.positions = {tp: 0 for tp in self.logs}
        self.committed = Committed()
        self.polls: list[int] = []  # the timeout of every poll
        self.commits: list[dict[TopicPartition, int]] = []
        self.paused_set: set[TopicPartition] = set()
        self.pending_rebalance: tuple[set[TopicPartition], set[TopicPartition]] | None = None
        self.commit_error: Exception | None = None
        self.seeks: list[tuple[TopicPartition, int]] = []
        self.closed = False
        # Offsets of transaction markers (never returned; a read_committed consumer's
        # position passes them) and, per partition, where its open transaction starts
        # (nothing from there on is returned until commit_open()).
        self.markers: dict[TopicPartition, set[int]] = {tp: set() for tp in self.logs}
        self.open_from: dict[TopicPartition, int] = {}

    def produce(self, partition: int, value: bytes | None, key: bytes | None = None, timestamp: int = 1) -> None:
        tp = TopicPartition(self.topic, partition)
        log = self.logs[tp]
        log.append(Record(self.topic, partition, len(log), timestamp, key, value))

    def marker(self, partition: int) -> None:
        """A transaction's commit marker: takes an offset, is never returned."""
        tp = TopicPartition(self.topic, partition)
        self.markers[tp].add(len(self.logs[tp]))
        self.produce(partition, None)

    def open_transaction(self, partition: int) -> None:
        """Records produced from now on stay unreadable until commit_open()."""
        tp = TopicPartition(self.topic, partition)
        self.open_from.setdefault(tp, len(self.logs[tp]))

    def commit_open(self, partition: int) -> None:
        self.open_from.pop(TopicPartition(self.topic, partition), None)
        self.marker(partition)

    # -- the KafkaConsumer surface the sink uses --
    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[TopicPartition, list[Record]]:
        self.polls.append(timeout_ms)
        if self.pending_rebalance is not None:
            revoked, added = self.pending_rebalance
            self.pending_rebalance = None
            self.assigned -= revoked
            self.listener.on_partitions_revoked(revoked)
            for tp in added:
                self.positions[tp] = self.committed.get(tp, 0)
                self.paused_set.discard(tp)
            self.assigned |= added
            self.listener.on_partitions_assigned(added)
        out: dict[TopicPartition, list[Record]] = {}
        budget = max_records or 10**9
        for tp in sorted(self.assigned):
            if tp in self.paused_set or budget <= 0:
                continue
            pos = self.positions[tp]
            stable = self.open_from.get(tp, len(self.logs[tp]))
            msgs = []
            while pos < stable and len(msgs) < budget:
                if pos not in self.markers[tp]:
                    msgs.append(self.logs[tp][pos])
                pos += 1
            self.positions[tp] = pos
            if msgs:
                out[tp] = msgs
                budget -= len(msgs)
        return out

    def pause(self, *tps: TopicPartition) -> None:
        self.paused_set.update(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.paused_set.difference_update(tps)

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def commit(self, offsets) -> None:
        if self.commit_error is not None:
            err, self.commit_error = self.commit_error, None
            raise err
        plain = {tp: om.offset for tp, om in offsets.items()}
        self.commits.append(plain)
        self.committed.update(plain)

    def end_offsets(self, tps, timeout_ms=None) -> dict[TopicPartition, int]:
        return {tp: len(self.logs[tp]) for tp in tps}

    def position(self, tp, timeout_ms=None) -> int:
        return self.positions[tp]

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {tp.partition for tp in self.logs}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        if tp not in self.assigned:
            raise ValueError("Unassigned partition")  # as kafka-python's
        self.seeks.append((tp, offset))
        self.positions[tp] = offset

    def close(self, autocommit: bool = False, timeout_ms: int | None = None) -> None:
        self.closed = True


class FakeFuture:
    def __init__(self, ok: bool) -> None:
        self.is_done = True
        self._ok = ok

    def failed(self) -> bool:
        return not self._ok

    def get(self, timeout=None):
        if not self._ok:
            raise KafkaTimeoutError("dead-letter topic unavailable")


class FakeProducer:
    """``fail_next``: that many next sends fail; ``fail``: every send fails while set."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes, list]] = []
        self.fail_next = 0
        self.fail = False

    def send(self, topic, key=None, value=None, headers=None):
        ok = self.fail_next <= 0 and not self.fail
        self.fail_next -= 1
        if ok:
            self.sent.append((topic, key, value, headers))
        return FakeFuture(ok)

    def flush(self, timeout=None) -> None:
        pass

    def close(self, timeout=None) -> None:
        pass


@dataclass
class FakeEngine:
    """Records inserts; scripted failures (ClickHouseUnavailable / ClickHouseError)."""

    database: str = "db"
    inserts: list[tuple[str, tuple[str, ...], list[list[Any]]]] = field(default_factory=list)
    down: bool = False
    # Reject any insert whose first column contains this value.
    poison: Any = None
    error_code: int = 27
    # Inserts that are written but whose answer is lost (the client sees a network error).
    lose_answers: int = 0
    # Tokens seen per table, as a table with a deduplication window keeps them.
    tokens: dict[str, set[str]] = field(default_factory=dict)
    # A server without insert deduplication tokens (18.16): every insert is written.
    ignores_tokens: bool = False

    closed: bool = False

    def server_version(self) -> tuple[int, ...]:
        return (26, 9, 2)

    def insert(self, table, columns, data, dedup_token=None) -> int:
        if self.down:
            raise ClickHouseUnavailable("connection refused")
        if self.poison is not None and self.poison in data[0]:
            raise ClickHouseError("Code: 27. cannot parse", self.error_code)
        seen = self.tokens.setdefault(table, set())
        if self.ignores_tokens or dedup_token is None or dedup_token not in seen:
            self.inserts.append((table, tuple(columns), [list(c) for c in data]))
        if dedup_token is not None:
            seen.add(dedup_token)
        if self.lose_answers > 0:
            self.lose_answers -= 1
            raise ClickHouseUnavailable("connection reset after the data was sent")
        return len(data[0])

    def execute(self, sql, params=None) -> None:
        if self.down:
            raise ClickHouseUnavailable("connection refused")

    def query(self, sql, params=None):
        if self.down:
            raise ClickHouseUnavailable("connection refused")
        return []

    def close(self) -> None:
        self.closed = True

    def rows(self, table: str) -> list[tuple[Any, ...]]:
        out = []
        for t, _cols, data in self.inserts:
            if t.endswith("." + table):
                out.extend(zip(*data))
        return out


__all__ = ["Clock", "CommitFailedError", "FakeConsumer", "FakeEngine", "FakeProducer", "KafkaError"]
