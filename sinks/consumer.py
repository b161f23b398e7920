"""A Kafka → ClickHouse sink: poll → to_rows → batch → insert → dead-letter flush → commit.

Offsets are committed only after ClickHouse accepted every row of the batch and the
dead-letter producer confirmed every rejected record, so a crash at any point replays
from the last commit; the tables are keyed so the replay changes nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata

from schemas import metrics
from schemas.clickhouse.engine import ClickHouse, ClickHouseUnavailable
from schemas.errors import InvalidStatement

from .errors import DeadLetterStorm

log = logging.getLogger("learnpulse.sink")

Rows = dict[str, list[tuple[Any, ...]]]


@dataclass(frozen=True)
class SinkConfig:
    """What one sink consumes and how it batches.

    Defaults keep freshness under 2 s at low volume (a batch closes 1 s after its first
    record) and make batches of 20k rows at high volume.
    """

    name: str
    bootstrap: str
    topic: str
    group_id: str
    deadletter_topic: str
    max_rows: int = 20_000
    max_wait_s: float = 1.0
    max_poll_records: int = 2_000
    retry_initial_s: float = 0.5
    retry_max_s: float = 15.0
    # Stop (instead of dead-lettering everything) when more than this share of the last
    # `storm_window` records was rejected.
    storm_share: float = 0.5
    storm_window: int = 1_000


@dataclass
class _Batch:
    rows: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    count: int = 0
    messages: int = 0
    first_at: float = 0.0
    newest_received_ms: int = 0

    def add(self, rows: Rows) -> None:
        for table, rs in rows.items():
            self.rows.setdefault(table, []).extend(rs)
            self.count += len(rs)


CommitHook = Callable[[dict[TopicPartition, int], bool], None]


class KafkaClickHouseSink:
    """Consumes one topic into one or more ClickHouse tables.

    ``to_rows`` is pure (see :mod:`sinks.rows`); it raises
    :class:`~schemas.errors.InvalidStatement` for a record that can never be written,
    which then goes to the dead-letter topic with the reason and its original bytes.
    ``on_commit(offsets, caught_up)`` is called after every successful commit.
    """

    def __init__(
        self,
        config: SinkConfig,
        engine: ClickHouse,
        to_rows: Callable[[bytes | None], Rows],
        columns: dict[str, tuple[str, ...]],
        on_commit: CommitHook | None = None,
    ) -> None:
        self.config = config
        self.engine = engine
        self.to_rows = to_rows
        self.columns = columns
        self.on_commit = on_commit
        self._recent_rejects: deque[bool] = deque(maxlen=config.storm_window)
        self._batch = _Batch()
        # Created in run(): constructing them connects to Kafka.
        self._consumer: KafkaConsumer = None  # type: ignore[assignment]
        self._dlq: KafkaProducer = None  # type: ignore[assignment]

    # -- lifecycle -------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop`` is set; flushes and commits what it holds on the way out."""
        c = self.config
        self._consumer = KafkaConsumer(
            bootstrap_servers=c.bootstrap,
            group_id=c.group_id,
            client_id=f"learnpulse-sink-{c.name}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_poll_records=c.max_poll_records,
            max_poll_interval_ms=600_000,
        )
        self._dlq = KafkaProducer(
            bootstrap_servers=c.bootstrap, acks="all", enable_idempotence=True, linger_ms=20
        )
        self._consumer.subscribe([c.topic], listener=_FlushOnRevoke(self))
        try:
            while not stop.is_set():
                polled = self._consumer.poll(timeout_ms=100)
                for tp, msgs in polled.items():
                    self._take(tp, msgs)
                if self._due():
                    self._flush()
            self._flush()
        finally:
            self._consumer.close(autocommit=False)
            self._dlq.close(timeout=10)

    # -- steps -----------------------------------------------------------------------
    def _take(self, tp: TopicPartition, msgs: list) -> None:
        b = self._batch
        if not b.messages:
            b.first_at = time.monotonic()
        metrics.MESSAGES_IN.labels("sink", tp.topic).inc(len(msgs))
        for m in msgs:
            try:
                rows = self.to_rows(m.value)
            except InvalidStatement as err:
                self._deadletter(m, err)
            else:
                b.add(rows)
                self._recent_rejects.append(False)
            b.offsets[tp] = m.offset + 1
            b.messages += 1
            if m.timestamp and m.timestamp > b.newest_received_ms:
                b.newest_received_ms = m.timestamp

    def _deadletter(self, m: Any, err: InvalidStatement) -> None:
        self._recent_rejects.append(True)
        rejects = sum(self._recent_rejects)
        if rejects >= 100 and rejects > self.config.storm_share * len(self._recent_rejects):
            raise DeadLetterStorm(
                f"{rejects} of the last {len(self._recent_rejects)} records were rejected "
                f"(last: {err}); stopping instead of dead-lettering the stream"
            )
        headers = [
            ("rule", err.rule.encode()),
            ("reason", str(err).encode()),
            ("source", f"{m.topic}/{m.partition}/{m.offset}".encode()),
            ("stage", f"sink:{self.config.name}".encode()),
        ]
        self._dlq.send(self.config.deadletter_topic, key=m.key, value=m.value or b"", headers=headers)
        metrics.DEADLETTERS.labels("sink", err.rule).inc()
        log.warning("dead-lettered %s/%s/%s: %s", m.topic, m.partition, m.offset, err)

    def _due(self) -> bool:
        b = self._batch
        return b.messages > 0 and (
            b.count >= self.config.max_rows or time.monotonic() - b.first_at >= self.config.max_wait_s
        )

    def _flush(self, in_rebalance: bool = False) -> None:
        b = self._batch
        if not b.messages:
            return
        for table, rows in b.rows.items():
            if rows:
                self._insert_with_retry(table, rows, in_rebalance)
        self._dlq.flush(timeout=30)
        offsets = {tp: OffsetAndMetadata(off, "", -1) for tp, off in b.offsets.items()}
        try:
            self._consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as err:
            # A rebalance took partitions away mid-batch; their new owner re-reads from
            # the last commit and re-inserts rows the tables already deduplicate.
            metrics.ERRORS.labels("sink", "commit_failed").inc()
            log.warning("commit failed after insert (rows will be replayed, not doubled): %s", err)
        else:
            if b.newest_received_ms:
                metrics.FRESHNESS.labels(self.config.name).set(max(0.0, time.time() - b.newest_received_ms / 1000))
            caught_up = self._report_lag()
            if self.on_commit:
                self.on_commit(dict(b.offsets), caught_up)
        self._batch = _Batch()

    def _insert_with_retry(self, table: str, rows: list[tuple[Any, ...]], in_rebalance: bool) -> None:
        columns = self.columns[table]
        data = [list(col) for col in zip(*rows)]
        delay = self.config.retry_initial_s
        paused = False
        while True:
            started = time.perf_counter()
            try:
                self.engine.insert(f"{self.engine.database}.{table}", columns, data)
            except ClickHouseUnavailable as err:
                metrics.ERRORS.labels("sink", "clickhouse_unavailable").inc()
                log.warning("insert into %s failed, retrying in %.1fs: %s", table, delay, err)
                if in_rebalance:
                    # Called from inside poll(): poll may not be re-entered.
                    time.sleep(delay)
                    delay = min(delay * 2, self.config.retry_max_s)
                    continue
                if not paused:
                    # Hold the batch, stop fetching: lag grows, memory does not.
                    self._consumer.pause(*self._consumer.assignment())
                    paused = True
                deadline = time.monotonic() + delay
                while time.monotonic() < deadline:
                    self._consumer.poll(timeout_ms=100)  # keeps group membership alive
                delay = min(delay * 2, self.config.retry_max_s)
                continue
            break
        if paused:
            self._consumer.resume(*self._consumer.assignment())
        metrics.INSERT_SECONDS.labels(table).observe(time.perf_counter() - started)
        metrics.BATCH_ROWS.labels(table).observe(len(rows))
        metrics.ROWS_WRITTEN.labels(table).inc(len(rows))

    def _report_lag(self) -> bool:
        """Export lag per partition; True when every assigned partition is caught up."""
        caught_up = True
        for tp in self._consumer.assignment():
            high = self._consumer.highwater(tp)
            pos = self._batch.offsets.get(tp)
            if pos is None:
                try:
                    pos = self._consumer.position(tp)
                except KafkaError:
                    continue
            if high is None:
                continue
            lag = max(0, high - pos)
            caught_up = caught_up and lag == 0
            metrics.CONSUMER_LAG.labels(self.config.group_id, tp.topic, str(tp.partition)).set(lag)
        return caught_up


class _FlushOnRevoke(ConsumerRebalanceListener):
    """Write and commit what we hold before partitions move to another consumer."""

    def __init__(self, sink: KafkaClickHouseSink) -> None:
        self.sink = sink

    def on_partitions_revoked(self, revoked):  # noqa: D102
        if self.sink._batch.messages:
            self.sink._flush(in_rebalance=True)

    def on_partitions_assigned(self, assigned):  # noqa: D102
        pass
