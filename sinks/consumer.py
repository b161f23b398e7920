"""A Kafka → ClickHouse sink: poll → rows → batch → insert → after-insert steps → commit.

Delivery contract: *at-least-once into tables keyed for exactly-once*. Offsets are
committed only after ClickHouse acknowledged every row of the batch, every after-insert
step (void reconciliation) finished and Kafka acknowledged every dead letter. A crash at
any point (SIGKILL included) replays from the last commit; the tables are keyed so that
the replay rewrites identical keys (see ``schemas/clickhouse/migrations``).

How the usual ways of getting this wrong are avoided:

- **Throughput without reordering**: a due batch goes to a writer thread while the main
  thread keeps polling and building the next batch's rows (inserts overlap with
  decoding). At most one batch is in flight, so commits stay in offset order and memory
  at two batches; a batch that could not be written is put back in front of the newer
  records and retried first.
- **Rebalances** (kafka-python 3.0 runs the rebalance listener on its network thread,
  where blocking calls are forbidden): the group uses the cooperative-sticky assignor,
  so only partitions that actually move are revoked; the listener never inserts or
  commits, it only drops the uncommitted records of revoked/lost partitions from the
  batch. The new owner re-reads them from the committed offset. Partitions the consumer
  keeps keep their buffered records and positions. Under an eager assignor (not ours,
  but tolerated) a partition revoked and re-assigned to the same member keeps its
  fetch position, so the listener seeks it back to its first dropped offset.
- **ClickHouse down or overloaded**: the batch is kept, every assigned partition is
  paused (and partitions assigned meanwhile are paused on arrival), and the insert is
  retried with capped exponential backoff and jitter while ``poll()`` keeps the group
  membership alive. Lag grows; memory stays at the held batch plus the consumer's
  bounded fetch buffers; nothing is dropped. A partition revoked while its batch is
  being written is never committed by this member.
- **Bad records**: a record the row builder rejects (``InvalidStatement``) goes to the
  dead-letter topic with the rule, the reason and its original bytes. A batch ClickHouse
  rejects as a whole is split per record, so one bad record is dead-lettered
  (``clickhouse.rejected``) and the rest is written. Errors no record causes (missing
  table, no permission) stop the sink (:class:`SinkMisconfigured`), and so does a
  dead-letter storm (:class:`~sinks.errors.DeadLetterStorm`, :mod:`sinks.storm`): a bad deploy must not drain the topic
  into the dead-letter queue.
- **Commit failures**: a commit refused because the group moved on
  (``CommitFailedError``) drops the batch; its rows are already written and the new
  owner's replay rewrites the same keys. A transient commit failure is retried with the
  rows already written, without inserting them again.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import MemberState, OffsetAndMetadata

from schemas import metrics
from schemas.clickhouse.engine import ClickHouse, ClickHouseError, ClickHouseUnavailable
from schemas.deadletter import DeadLetter, source_of
from schemas.errors import InvalidStatement

from .errors import DeadLetterUndelivered, SinkMisconfigured
from .storm import StormGuard

log = logging.getLogger("learnpulse.sink")

Rows = dict[str, list[tuple[Any, ...]]]
# A step run after the batch's rows are in ClickHouse and before its offsets are
# committed; must be idempotent (it re-runs after a crash). May raise ClickHouseUnavailable.
AfterInsert = Callable[[ClickHouse, Rows], None]
# Removes rows that must not be written (erased learners, later copies of a statement);
# may read ClickHouse (its errors propagate, and the batch is retried later).
RowFilter = Callable[[Rows], Rows]
# (table, its rows of the batch) -> those rows not in the table yet.
RetryFilter = Callable[[str, list[tuple[Any, ...]]], list[tuple[Any, ...]]]

# ClickHouse error codes no single record can cause: stop rather than dead-letter.
MISCONFIGURED_CODES = frozenset(
    {
        16,  # NO_SUCH_COLUMN_IN_TABLE
        47,  # UNKNOWN_IDENTIFIER
        60,  # UNKNOWN_TABLE
        81,  # UNKNOWN_DATABASE
        164,  # READONLY
        192,  # UNKNOWN_USER
        193,  # WRONG_PASSWORD
        497,  # ACCESS_DENIED
        516,  # AUTHENTICATION_FAILED
    }
)


@dataclass(frozen=True)
class SinkConfig:
    """What one sink consumes and how it batches.

    Defaults keep freshness under 2 s at low volume (a batch closes ``max_wait_s`` after
    its first record, then one insert and one commit) and write batches of ``max_rows``
    rows of the first table at high volume (20k >= the 10k ClickHouse likes per insert).
    """

    name: str
    bootstrap: str
    topic: str
    group_id: str
    deadletter_topic: str
    # Insert order; the first table's rows count towards max_rows.
    tables: tuple[str, ...]
    max_rows: int = 20_000
    max_wait_s: float = 1.0
    max_poll_records: int = 2_000
    retry_initial_s: float = 0.5
    retry_max_s: float = 15.0
    # Stop (instead of dead-lettering everything) when at least storm_min of the last
    # storm_window records were rejected and they are more than storm_share of them.
    storm_share: float = 0.5
    storm_min: int = 100
    storm_window: int = 1_000
    # How often progress (sink_progress) is published when nothing is committed.
    progress_interval_s: float = 1.0
    # On shutdown, how long to keep retrying the last batch before leaving it to replay.
    shutdown_flush_s: float = 20.0
    # Cooperative rebalancing (see module docstring); eager only for compatibility tests.
    cooperative: bool = True
    # A SIGKILLed member keeps its partitions until the session times out; short, since
    # heartbeats run on kafka-python's own thread (a long insert does not delay them).
    session_timeout_ms: int = 10_000
    # A rebalance that has not completed after this long is abandoned: the consumer is
    # closed and a new one joins (kafka-python 3.0.12 can leave a leader's SyncGroup
    # hanging until the member is evicted; the known trigger, a rejoin right after the
    # first join, is avoided by subscribe_with_metadata: this is the safety net).
    rebalance_stall_s: float = 30.0
    # Static membership (KIP-345): a restarted process with the same id takes its
    # partitions back at once, without a rebalance. Unique per process; None: dynamic.
    group_instance_id: str | None = None


@dataclass
class _Entry:
    """One Kafka record of the batch; rows None once it was dead-lettered."""

    offset: int
    key: bytes | None
    value: bytes | None
    rows: Rows | None


@dataclass
class _Part:
    """The uncommitted records of one partition, in offset order."""

    first_offset: int
    next_offset: int = 0
    newest_ms: int = 0
    entries: list[_Entry] = field(default_factory=list)


@dataclass
class _DeadLetter:
    tp: TopicPartition
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    future: Any = None


@dataclass
class _Batch:
    parts: dict[TopicPartition, _Part] = field(default_factory=dict)
    deadletters: list[_DeadLetter] = field(default_factory=list)
    units: int = 0
    opened_at: float = 0.0
    # Progress of the current flush, reset whenever the batch changes.
    inserted: set[str] = field(default_factory=set)
    # Tables whose insert may have landed without our knowing (a lost answer, or rows
    # of a batch that changed since): a retry first drops the rows already there.
    uncertain: set[str] = field(default_factory=set)
    steps_done: bool = False
    _digest: str | None = None

    def __bool__(self) -> bool:
        return bool(self.parts) or bool(self.deadletters)

    def changed(self) -> None:
        self.uncertain |= self.inserted
        self.inserted.clear()
        self.steps_done = False
        self._digest = None

    def digest(self) -> str:
        """What the batch holds, by content: its records' partitions, offsets and bytes."""
        if self._digest is None:
            h = hashlib.blake2b(digest_size=16)
            for tp in sorted(self.parts):
                for e in self.parts[tp].entries:
                    if e.rows:
                        _feed_record(h, tp, e)
            self._digest = h.hexdigest()
        return self._digest


def _feed_record(h: Any, tp: TopicPartition, e: _Entry) -> None:
    value = e.value or b""
    h.update(f"{tp.topic}/{tp.partition}@{e.offset}:{len(value)}:".encode())
    h.update(value)


def _record_digest(tp: TopicPartition, e: _Entry) -> str:
    h = hashlib.blake2b(digest_size=16)
    _feed_record(h, tp, e)
    return h.hexdigest()


@dataclass
class _Job:
    """A batch handed to the writer thread. ``revoked``: partitions lost meanwhile (not committed)."""

    batch: _Batch
    revoked: set[TopicPartition] = field(default_factory=set)
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


Runner = Callable[[Callable[[], None]], None]


@dataclass
class PartitionProgress:
    """Committed progress of one partition, as published to ``sink_progress``."""

    committed: int | None = None
    end: int | None = None
    newest_ms: int = 0
    caught_up_ms: int | None = None
    # End offsets measured and the wall time just before each measurement, oldest first:
    # once ``committed`` reaches a measured end, everything Kafka acknowledged before that
    # time is written (how a partition that never runs dry still gets a caught_up_ms).
    ends: deque[tuple[int, int]] = field(default_factory=deque)

    def caught_up_by_ends(self) -> None:
        """Advance ``caught_up_ms`` to the newest measurement ``committed`` has reached."""
        if self.committed is None:
            return
        while self.ends and self.ends[0][1] <= self.committed:
            wall_ms, _end = self.ends.popleft()
            if self.caught_up_ms is None or wall_ms > self.caught_up_ms:
                self.caught_up_ms = wall_ms


ProgressHook = Callable[["KafkaClickHouseSink", dict[TopicPartition, PartitionProgress], int], None]


class KafkaClickHouseSink:
    """Consumes one topic into one or more ClickHouse tables (see module docstring).

    ``to_rows`` is pure (see :mod:`sinks.rows`). ``on_progress(sink, progress, partitions)``
    is called after every commit and every ``progress_interval_s``, with the progress of
    every assigned partition (used to publish ``sink_progress``).
    ``consumer_factory``/``producer_factory`` exist for tests; by default they build
    kafka-python clients from the config.
    """

    def __init__(
        self,
        config: SinkConfig,
        engine: ClickHouse,
        to_rows: Callable[[bytes | None], Rows],
        columns: dict[str, tuple[str, ...]],
        *,
        after_insert: Sequence[AfterInsert] = (),
        row_filter: RowFilter | None = None,
        insert_filter: RowFilter | None = None,
        retry_filter: RetryFilter | None = None,
        on_progress: ProgressHook | None = None,
        clock: Callable[[], float] = time.monotonic,
        consumer_factory: Callable[[SinkConfig, ConsumerRebalanceListener], Any] | None = None,
        producer_factory: Callable[[SinkConfig], Any] | None = None,
        runner: Runner | None = None,
    ) -> None:
        missing = [t for t in config.tables if t not in columns]
        if missing:
            raise ValueError(f"no column list for tables {missing}")
        if not config.tables:
            raise ValueError("a sink writes at least one table")
        self.config = config
        self.engine = engine
        self.to_rows = to_rows
        self.columns = columns
        self.after_insert = tuple(after_insert)
        self.row_filter = row_filter
        # Rows not to insert (already in ClickHouse) that the after-insert steps still see.
        self.insert_filter = insert_filter
        # Before re-inserting into a table whose last insert had an unknown outcome: the
        # rows not there yet (servers without deduplication tokens, e.g. 18.16).
        self.retry_filter = retry_filter
        self.on_progress = on_progress
        self.clock = clock
        self._consumer_factory = consumer_factory or _kafka_consumer
        self._producer_factory = producer_factory or _kafka_producer
        self._storm = StormGuard(config.storm_window, config.storm_min, config.storm_share, "records")
        self._batch = _Batch()
        # The batch being written (or written, its commit pending); at most one, so
        # commits stay in offset order and memory at two batches.
        self._job: _Job | None = None
        self._runner = runner or self._thread_runner
        self._unstable_since: float | None = None
        self.consumer_restarts = 0
        self._backoff_s = config.retry_initial_s
        self._retry_at = 0.0
        self._paused = False
        self._failures = 0
        self._rewind: dict[TopicPartition, int] = {}
        self.progress: dict[TopicPartition, PartitionProgress] = {}
        self._next_progress_at = 0.0
        self.partitions = 0  # partitions of the topic, from metadata
        self.consumer: Any = None
        self._dlq: Any = None

    # -- lifecycle -------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop`` is set; flush and commit what it holds on the way out."""
        self.consumer = self._consumer_factory(self.config, _Listener(self))
        self._dlq = self._producer_factory(self.config)
        try:
            while not stop.is_set():
                self.step()
            self._shutdown()
        finally:
            self.consumer.close(autocommit=False)
            self._dlq.close(timeout=10)

    def _thread_runner(self, fn: Callable[[], None]) -> None:
        threading.Thread(target=fn, name=f"sink-{self.config.name}-writer", daemon=True).start()

    def step(self) -> None:
        """One round: finish a written batch, poll, take records, hand a due batch to the writer.

        Writing overlaps with polling and building the next batch's rows; at most one
        batch is written at a time and a full next batch waits for it.
        """
        now = self.clock()
        job = self._job
        if job is not None and job.done.is_set() and now >= self._retry_at:
            self._complete(job)
            job = self._job
        if job is not None and not job.done.is_set() and self._batch and self._due(now):
            # Memory bound: one batch being written, one full. (A written batch whose
            # commit must be retried does not wait here: poll() has to run for the group
            # to finish a rebalance, e.g. after RebalanceInProgressError.)
            job.done.wait(0.05)
            return
        # Block in poll() until the next thing this loop can act on. Never spin with a zero
        # timeout while waiting for a retry: kafka-python finishes a rebalance (and
        # heartbeats its progress) only inside poll() calls that are given time.
        if self._retry_at > now:
            wait = min(0.1, self._retry_at - now)
        elif job is not None:
            wait = 0.02
        elif self._batch:
            wait = min(0.1, max(0.0, self._batch.opened_at + self.config.max_wait_s - now))
        else:
            wait = 0.1
        polled = self.consumer.poll(timeout_ms=int(wait * 1000), max_records=self.config.max_poll_records)
        for tp, msgs in polled.items():
            self._take(tp, msgs)
        now = self.clock()
        self._watch_membership(now)
        if self._job is None and self._batch and now >= self._retry_at and self._due(now):
            job = self._start()
            if job.done.is_set():  # written inline (or very fast): commit now
                self._complete(job)
        elif now >= self._next_progress_at:
            self._publish_progress()

    def _shutdown(self) -> None:
        deadline = self.clock() + self.config.shutdown_flush_s
        while (self._job is not None or self._batch) and self.clock() < deadline:
            job = self._job
            if job is not None:
                if job.done.wait(0.1) and self.clock() >= self._retry_at:
                    self._complete(job)
                elif job.done.is_set():
                    time.sleep(min(0.1, max(0.0, self._retry_at - self.clock())))
            elif self.clock() >= self._retry_at:
                job = self._start()
                job.done.wait(max(0.0, deadline - self.clock()))
            else:
                time.sleep(min(0.1, self._retry_at - self.clock()))
        if self._job is not None or self._batch:
            log.warning("sink %s stops with an unwritten batch; it is replayed on restart", self.config.name)

    def _watch_membership(self, now: float) -> None:
        """Replace the consumer when its group membership stays unsettled too long."""
        metadata = getattr(self.consumer, "group_metadata", None)
        state = getattr(metadata(), "state", None) if metadata else None
        if state is None or state == MemberState.STABLE:
            self._unstable_since = None
            return
        if self._unstable_since is None:
            self._unstable_since = now
            return
        if now - self._unstable_since < self.config.rebalance_stall_s:
            return
        log.warning(
            "sink %s: group membership %s for %.0fs; replacing the consumer (uncommitted records are re-read)",
            self.config.name, state, now - self._unstable_since,
        )  # fmt: skip
        metrics.ERRORS.labels("sink", "rebalance_stalled").inc()
        self.revoked(set(self.consumer.assignment()))
        self._rewind.clear()  # the new consumer starts from the committed offsets
        old = self.consumer
        self.consumer = None
        try:
            old.close(autocommit=False, timeout_ms=5_000)
        except KafkaError as err:
            log.info("sink %s: closing the stalled consumer: %s", self.config.name, err)
        self.consumer = self._consumer_factory(self.config, _Listener(self))
        self.consumer_restarts += 1
        self._unstable_since = None

    # -- taking records --------------------------------------------------------------
    def _take(self, tp: TopicPartition, msgs: list) -> None:
        if not msgs:
            return
        b = self._batch
        if not b:
            b.opened_at = self.clock()
        part = b.parts.get(tp)
        if part is None:
            part = b.parts[tp] = _Part(first_offset=msgs[0].offset)
        metrics.MESSAGES_IN.labels("sink", tp.topic).inc(len(msgs))
        first_table = self.config.tables[0]
        for m in msgs:
            try:
                rows = self.to_rows(m.value)
            except InvalidStatement as err:
                self._deadletter(b, tp, m.offset, m.key, m.value, err.rule, str(err))
                rows = None
            else:
                self._storm.passed()
                b.units += len(rows.get(first_table, ()))
            part.entries.append(_Entry(m.offset, m.key, m.value, rows))
            part.next_offset = m.offset + 1
            if m.timestamp and m.timestamp > part.newest_ms:
                part.newest_ms = m.timestamp
        b.changed()

    def _deadletter(self, b: _Batch, tp: TopicPartition, offset: int, key: bytes | None, value: bytes | None,
                    rule: str, reason: str) -> None:  # fmt: skip
        c = self.config
        self._storm.dead_lettered(reason)
        headers = DeadLetter(rule, reason, source_of(tp.topic, tp.partition, offset), f"sink:{c.name}").headers()
        dl = _DeadLetter(tp, key, value or b"", headers)
        dl.future = self._dlq.send(c.deadletter_topic, key=key, value=dl.value, headers=headers)
        b.deadletters.append(dl)
        metrics.DEADLETTERS.labels("sink", rule).inc()
        log.warning("dead-lettered %s/%s/%s: %s", tp.topic, tp.partition, offset, reason)

    def _due(self, now: float) -> bool:
        b = self._batch
        return b.units >= self.config.max_rows or now - b.opened_at >= self.config.max_wait_s

    # -- writing (on the writer thread, except where noted) --------------------------
    def _start(self) -> _Job:
        """Hand the current batch to the writer (main thread)."""
        job = _Job(self._batch)
        self._batch = _Batch()
        self._job = job
        self._runner(lambda: self._write(job))
        return job

    def _write(self, job: _Job) -> None:
        b = job.batch
        try:
            # Outside the next try: a failure to gather (e.g. reading the erasure ledger)
            # is never blamed on the records.
            rows = self._gather(b)
            try:
                self._insert_all(b, self._to_insert(rows))
            except ClickHouseError as err:
                if err.code in MISCONFIGURED_CODES:
                    raise SinkMisconfigured(f"sink {self.config.name}: {err}") from err
                log.warning("ClickHouse rejected a batch (%s); writing it record by record", err)
                self._isolate(b)
                rows = self._gather(b)
            if not b.steps_done:
                for step in self.after_insert:
                    step(self.engine, rows)
                b.steps_done = True
            self._settle_deadletters(b)
        except BaseException as err:  # noqa: BLE001 - handed to the main thread (_complete)
            job.error = err
        finally:
            job.done.set()

    def _gather(self, b: _Batch) -> Rows:
        """The batch's rows per table, in partition then offset order."""
        out: Rows = {t: [] for t in self.config.tables}
        for tp in sorted(b.parts):
            for e in b.parts[tp].entries:
                if e.rows:
                    for table, rows in e.rows.items():
                        out.setdefault(table, []).extend(rows)
        return self.row_filter(out) if self.row_filter else out

    def _to_insert(self, rows: Rows) -> Rows:
        return self.insert_filter(rows) if self.insert_filter else rows

    def _order(self, rows: Rows) -> list[str]:
        """Insert order: the configured tables, then any other table the builder filled."""
        return list(self.config.tables) + sorted(t for t in rows if t not in self.config.tables)

    def _insert_all(self, b: _Batch, rows: Rows) -> None:
        for table in self._order(rows):
            if table in b.inserted:
                continue
            data = rows.get(table) or []
            if data and table in b.uncertain and self.retry_filter is not None:
                data = self.retry_filter(table, data)
            if data:
                try:
                    self._insert(table, data, b.digest())
                except ClickHouseUnavailable:
                    b.uncertain.add(table)  # it may have been written all the same
                    raise
            b.inserted.add(table)
            b.uncertain.discard(table)

    def _insert(self, table: str, rows: list[tuple[Any, ...]], content: str) -> None:
        """Insert ``rows``; ``content`` (the digest of the records they came from) makes the
        deduplication token, so a retry of an insert whose outcome was unknown adds nothing
        (a replay in other batch boundaries gets other tokens: the table keys collapse it)."""
        columns = self.columns[table]
        token = f"{self.config.name}:{table}:{len(rows)}:{content}"
        started = time.perf_counter()
        self.engine.insert(f"{self.engine.database}.{table}", columns, [list(c) for c in zip(*rows)], token)
        metrics.INSERT_SECONDS.labels(table).observe(time.perf_counter() - started)
        metrics.BATCH_ROWS.labels(table).observe(len(rows))
        metrics.ROWS_WRITTEN.labels(table).inc(len(rows))

    def _isolate(self, b: _Batch) -> None:
        """Insert record by record; dead-letter the records ClickHouse rejects."""
        for tp in sorted(b.parts):
            for e in b.parts[tp].entries:
                if not e.rows:
                    continue
                rows = self._to_insert(self.row_filter(e.rows) if self.row_filter else e.rows)
                try:
                    for table in self._order(rows):
                        if rows.get(table):
                            self._insert(table, rows[table], _record_digest(tp, e))
                except ClickHouseError as err:
                    if err.code in MISCONFIGURED_CODES:
                        raise SinkMisconfigured(f"sink {self.config.name}: {err}") from err
                    self._deadletter(b, tp, e.offset, e.key, e.value, "clickhouse.rejected", str(err))
                    e.rows = None
        b.inserted.update(self._order(self._gather(b)))

    def _settle_deadletters(self, b: _Batch) -> None:
        """Wait for Kafka to hold every dead letter of the batch; resend those that failed."""
        if not b.deadletters:
            return
        self._dlq.flush(timeout=30)
        failed = [dl for dl in b.deadletters if not dl.future.is_done or dl.future.failed()]
        for dl in failed:
            dl.future = self._dlq.send(self.config.deadletter_topic, key=dl.key, value=dl.value, headers=dl.headers)
        if failed:
            raise DeadLetterUndelivered(f"{len(failed)} dead letters not acknowledged by Kafka; resent")

    # -- after the writer (main thread) ------------------------------------------------
    def _complete(self, job: _Job) -> None:
        """Commit a written batch, or take a failed one back to retry it first."""
        err = job.error
        if err is None:
            self._commit(job)
            return
        self._job = None
        if isinstance(err, (ClickHouseUnavailable, DeadLetterUndelivered)):
            self._requeue(job)
            self._backoff(err)
            return
        raise err

    def _requeue(self, job: _Job) -> None:
        """Put a batch that could not be written back in front of the one being filled."""
        old, new = job.batch, self._batch
        if not new and not (job.revoked & set(old.parts)):
            self._batch = old  # unchanged: keeps which tables are already written
            return
        merged = _Batch(opened_at=old.opened_at if old else new.opened_at)
        for tp in sorted(set(old.parts) | set(new.parts)):
            if tp in job.revoked:
                if tp in new.parts:  # re-assigned since: only the records read after that
                    merged.parts[tp] = new.parts[tp]
                continue
            a, b = old.parts.get(tp), new.parts.get(tp)
            if a and b:
                merged.parts[tp] = _Part(
                    a.first_offset, b.next_offset, max(a.newest_ms, b.newest_ms), a.entries + b.entries
                )
            else:
                merged.parts[tp] = a or b  # type: ignore[assignment]
        merged.deadletters = [dl for dl in old.deadletters if dl.tp not in job.revoked] + new.deadletters
        merged.uncertain = old.inserted | old.uncertain
        first = self.config.tables[0]
        merged.units = sum(len(e.rows.get(first, ())) for part in merged.parts.values() for e in part.entries if e.rows)
        self._batch = merged

    def _backoff(self, err: Exception) -> None:
        self._failures += 1
        kind = (
            "clickhouse_unavailable" if isinstance(err, ClickHouseUnavailable)
            else "deadletter_undelivered" if isinstance(err, DeadLetterUndelivered)
            else "commit_retry"
        )  # fmt: skip
        metrics.ERRORS.labels("sink", kind).inc()
        if self._failures == 1 or self._failures % 10 == 0:
            log.warning(
                "sink %s: %s (attempt %d); holding the batch, retrying in %.1fs",
                self.config.name, err, self._failures, self._backoff_s,
            )  # fmt: skip
        if not self._paused:
            # Stop fetching: lag grows in Kafka, not in memory.
            self.consumer.pause(*self.consumer.assignment())
            self._paused = True
        jitter = 1 + random.uniform(-0.2, 0.2)
        self._retry_at = self.clock() + self._backoff_s * jitter
        self._backoff_s = min(self._backoff_s * 2, self.config.retry_max_s)

    def _commit(self, job: _Job) -> None:
        parts = {tp: p for tp, p in job.batch.parts.items() if tp not in job.revoked}
        offsets = {tp: OffsetAndMetadata(p.next_offset, "", -1) for tp, p in parts.items()}
        try:
            if offsets:
                self.consumer.commit(offsets)
        except CommitFailedError as err:
            # The group moved on: the partitions belong to someone else now (or again to
            # us, from the committed offset). Rows are written; the replay rewrites them.
            metrics.ERRORS.labels("sink", "commit_failed").inc()
            log.warning("sink %s: commit refused after insert (%s); rows will be replayed, not doubled",
                        self.config.name, err)  # fmt: skip
            self._job = None
            self._recovered()
            return
        except KafkaError as err:
            # Transient (rebalance in progress, coordinator moving, timeout): keep the
            # written batch and commit it after the next polls; fetch nothing meanwhile.
            self._backoff(err)
            return
        self._job = None
        newest = 0
        for tp, p in parts.items():
            prog = self.progress.setdefault(tp, PartitionProgress())
            prog.committed = p.next_offset
            prog.newest_ms = max(prog.newest_ms, p.newest_ms)
            newest = max(newest, p.newest_ms)
        if newest:
            metrics.FRESHNESS.labels(self.config.name).set(max(0.0, time.time() - newest / 1000))
        self._recovered()
        self._publish_progress()

    def _recovered(self) -> None:
        self._failures = 0
        self._backoff_s = self.config.retry_initial_s
        self._retry_at = 0.0
        if self._paused:
            self.consumer.resume(*self.consumer.assignment())
            self._paused = False

    # -- progress --------------------------------------------------------------------
    def _publish_progress(self) -> None:
        """Measure how far each assigned partition is caught up; hand progress to the hook.

        A partition is caught up to wall time W once its committed offset reaches the end
        offset Kafka reported when asked at W (W taken *before* asking): every record Kafka
        acknowledged before W is then in ClickHouse. Ends are measured every
        ``progress_interval_s`` whatever the batch holds, and kept until a commit reaches
        them, so a partition under continuous traffic (never empty between batches)
        advances by about a batch interval, not only when traffic pauses. Partitions not in
        any batch are committed up to their position.
        """
        self._next_progress_at = self.clock() + self.config.progress_interval_s
        busy = set(self._batch.parts) | (set(self._job.batch.parts) if self._job is not None else set())
        assigned = list(self.consumer.assignment())
        if not assigned:
            return
        measured_ms = int(time.time() * 1000)
        try:
            ends = self.consumer.end_offsets(assigned, timeout_ms=5_000)
            if not self.partitions:
                self.partitions = len(self.consumer.partitions_for_topic(self.config.topic) or ())
            for tp in assigned:
                prog = self.progress.setdefault(tp, PartitionProgress())
                if tp not in busy:
                    # Not in a batch: everything before the position is written (or was
                    # dead-lettered), so the position is the partition's committed progress.
                    prog.committed = self.consumer.position(tp, timeout_ms=1_000)
                end = prog.end = ends.get(tp)
                if end is not None:
                    if len(prog.ends) >= 256:  # a partition far behind: keep the newest
                        prog.ends.popleft()
                    prog.ends.append((measured_ms, end))
                prog.caught_up_by_ends()
                if prog.committed is not None and end is not None:
                    metrics.CONSUMER_LAG.labels(self.config.group_id, tp.topic, str(tp.partition)).set(
                        max(0, end - prog.committed)
                    )
        except KafkaError as err:
            log.info("sink %s: progress not measured: %s", self.config.name, err)
            return
        if self.on_progress:
            try:
                self.on_progress(self, {tp: self.progress[tp] for tp in assigned}, self.partitions)
            except (ClickHouseUnavailable, ClickHouseError) as err:
                log.info("sink %s: progress not published: %s", self.config.name, err)

    # -- rebalances (called on kafka-python's network thread, during poll) -------------
    def revoked(self, partitions: set[TopicPartition]) -> None:
        """Drop the uncommitted records of partitions we no longer own."""
        b = self._batch
        job = self._job
        for tp in partitions:
            firsts = []
            part = b.parts.pop(tp, None)
            if part is not None:
                b.units -= sum(len(e.rows.get(self.config.tables[0], ())) for e in part.entries if e.rows)
                firsts.append(part.first_offset)
            if job is not None and tp in job.batch.parts:
                # Being written on the writer thread: left alone, but never committed.
                job.revoked.add(tp)
                firsts.append(job.batch.parts[tp].first_offset)
            if firsts and not self.config.cooperative:
                self._rewind[tp] = min(firsts)
            b.deadletters = [dl for dl in b.deadletters if dl.tp != tp]
            self.progress.pop(tp, None)
        if partitions:
            b.changed()
            log.info("sink %s: partitions revoked %s", self.config.name, sorted(p.partition for p in partitions))

    def assigned(self, partitions: set[TopicPartition]) -> None:
        for tp in partitions:
            offset = self._rewind.pop(tp, None)
            if offset is not None:
                self.consumer.seek(tp, offset)
        self._rewind.clear()
        if self._paused and partitions:
            self.consumer.pause(*partitions)
        log.info("sink %s: partitions assigned %s", self.config.name, sorted(p.partition for p in partitions))


class _Listener(ConsumerRebalanceListener):
    """Non-blocking: runs on kafka-python's IO thread (no inserts, no commits here)."""

    def __init__(self, sink: KafkaClickHouseSink) -> None:
        self.sink = sink

    def on_partitions_revoked(self, revoked):
        self.sink.revoked(set(revoked))

    def on_partitions_assigned(self, assigned):
        self.sink.assigned(set(assigned))

    def on_partitions_lost(self, lost):
        self.sink.revoked(set(lost))


def _kafka_consumer(c: SinkConfig, listener: ConsumerRebalanceListener) -> KafkaConsumer:
    extra: dict[str, Any] = {}
    if c.cooperative:
        extra["partition_assignment_strategy"] = (CooperativeStickyAssignor,)
    consumer = KafkaConsumer(
        bootstrap_servers=c.bootstrap,
        group_id=c.group_id,
        client_id=f"learnpulse-sink-{c.name}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        # Producers of xapi.statements may be transactional (the LRS gateway): never read
        # records of aborted transactions.
        isolation_level="read_committed",
        max_poll_records=c.max_poll_records,
        # Bounded fetch buffers: this plus one batch is the sink's memory.
        fetch_max_bytes=16 * 1024 * 1024,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        max_poll_interval_ms=300_000,
        session_timeout_ms=c.session_timeout_ms,
        heartbeat_interval_ms=max(1_000, c.session_timeout_ms // 4),
        group_instance_id=c.group_instance_id,
        # The group leader assigns only partitions it has metadata for: refresh often
        # enough that a topic it did not know yet is assigned within seconds, not minutes.
        metadata_max_age_ms=15_000,
        **extra,
    )
    subscribe_with_metadata(consumer, c.topic, listener)
    return consumer


def subscribe_with_metadata(consumer: KafkaConsumer, topic: str, listener: ConsumerRebalanceListener) -> None:
    """Subscribe, then fetch metadata before the first poll joins the group.

    kafka-python's group leader remembers the subscribed topics' partitions it assigned
    with (its metadata snapshot, taken from metadata *responses*) and rejoins whenever
    a later response differs. Joining before any response arrived after subscribe()
    assigns with an empty snapshot, so the next metadata response forces a second
    rebalance at once — and kafka-python 3.0.12 can leave that one's SyncGroup hanging
    until the member is evicted (measured: the bench's sink stalled 30 s each time).
    ``topics()`` is a blocking metadata request: once it returns, the snapshot holds
    the topic's partitions and the first join is also the last.
    """
    consumer.subscribe([topic], listener=listener)
    consumer.topics()


def _kafka_producer(c: SinkConfig) -> KafkaProducer:
    return KafkaProducer(
        bootstrap_servers=c.bootstrap,
        client_id=f"learnpulse-sink-{c.name}-dlq",
        acks="all",
        enable_idempotence=True,
        linger_ms=20,
        max_request_size=8 * 1024 * 1024,
    )
