"""A Kafka → ClickHouse sink: poll → rows → batch → insert → after-insert steps → commit.

The sink is a :class:`~sinks.kafkaloop.Step` of :class:`~sinks.kafkaloop.KafkaLoop`, which
owns the consumer, polling, pausing, commits, rebalances and the dead-letter producer;
this module is the batching ClickHouse writer.

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

from kafka import TopicPartition
from kafka.errors import CommitFailedError, KafkaError

from schemas import metrics
from schemas.clickhouse.engine import ClickHouse, ClickHouseError, ClickHouseUnavailable
from schemas.errors import InvalidStatement

from .errors import DeadLetterUndelivered, SinkMisconfigured
from .gcpause import collector_paused
from .inserts import TableInserts
from .kafkaloop import ConsumerFactory, EndsFactory, KafkaLoop, LoopConfig, Pending, ProducerFactory

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


# An idle sink's poll: until its next progress measurement, at most a second (the loop also
# watches its group membership and its stop event between polls), never zero (kafka-python
# finishes a rebalance only inside polls given time).
IDLE_POLL_MIN_S, IDLE_POLL_MAX_S = 0.01, 1.0


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
    # Tables whose inserts may run at the same time as their neighbours in this set (over the
    # sink's extra connections, sinks/inserts.py); the others keep their place in the order.
    side_by_side: tuple[str, ...] = ()
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
    # How often the partitions' ends are measured while records are held (None: as above).
    # Under continuous traffic the end measured at a commit is already past it, so only a
    # measurement taken while a batch is open can find that batch's records covered by its
    # own commit; measured once a second, most records wait for the next batch's commit.
    busy_progress_interval_s: float | None = None
    # When a batch falls due by time: measure the partitions' ends then, and keep reading for
    # up to this long until every assigned partition's position reaches them before closing it
    # (None: close at once). Its commit then covers every record Kafka acknowledged before it
    # fell due; closed at once, the records of a transaction still open at that instant (or
    # not fetched yet) would wait for the next batch's commit to count as written.
    closing_wait_s: float | None = None
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

    def loop_config(self) -> LoopConfig:
        return LoopConfig(
            name=f"sink {self.name}", component="sink", stage=f"sink:{self.name}",
            client_id=f"learnpulse-sink-{self.name}", bootstrap=self.bootstrap, topic=self.topic,
            group_id=self.group_id, deadletter_topic=self.deadletter_topic, max_poll_records=self.max_poll_records,
            session_timeout_ms=self.session_timeout_ms, cooperative=self.cooperative,
            group_instance_id=self.group_instance_id, rebalance_stall_s=self.rebalance_stall_s,
            storm_share=self.storm_share, storm_min=self.storm_min, storm_window=self.storm_window,
            # A fifth of the batch window at most: the wait for a fuller fetch stays small
            # beside the wait for a fuller batch.
            fetch_max_wait_ms=max(1, min(LoopConfig.fetch_max_wait_ms, int(self.max_wait_s * 200))),
        )  # fmt: skip


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
class _Batch:
    parts: dict[TopicPartition, _Part] = field(default_factory=dict)
    deadletters: list[Pending] = field(default_factory=list)
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


def _step_name(step: AfterInsert) -> str:
    """An after-insert step's phase name: a function's own name, a callable object's class."""
    return getattr(step, "__name__", None) or type(step).__name__


def _record_digest(tp: TopicPartition, e: _Entry) -> str:
    h = hashlib.blake2b(digest_size=16)
    _feed_record(h, tp, e)
    return h.hexdigest()


@dataclass
class _Closing:
    """A due batch reading up to the ends measured when it fell due (SinkConfig.closing_wait_s)."""

    deadline: float
    ends: dict[TopicPartition, int]


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
    ``consumer_factory``/``producer_factory``/``ends_factory`` (of :class:`~sinks.kafkaloop.KafkaLoop`)
    exist for tests; by default they build kafka-python clients from the config.
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
        consumer_factory: ConsumerFactory | None = None,
        ends_factory: EndsFactory | None = None,
        producer_factory: ProducerFactory | None = None,
        runner: Runner | None = None,
        owns_engine: bool = False,
        extra_engines: Sequence[ClickHouse] = (),
    ) -> None:
        """``owns_engine``: ``engine`` is this sink's own connection, closed when it stops.
        ``extra_engines``: more connections of its own, for the side-by-side tables (closed too)."""
        missing = [t for t in config.tables if t not in columns]
        if missing:
            raise ValueError(f"no column list for tables {missing}")
        if not config.tables:
            raise ValueError("a sink writes at least one table")
        self.config = config
        self.engine = engine
        self._owns_engine = owns_engine
        self.to_rows = to_rows
        self.inserts = TableInserts(config.name, engine, columns, config.tables, config.side_by_side, extra_engines)
        self.after_insert = tuple(after_insert)
        self.row_filter = row_filter
        # Rows not to insert (already in ClickHouse) that the after-insert steps still see.
        self.insert_filter = insert_filter
        # Before re-inserting into a table whose last insert had an unknown outcome: the
        # rows not there yet (servers without deduplication tokens, e.g. 18.16).
        self.retry_filter = retry_filter
        self.on_progress = on_progress
        self.clock = clock
        self.loop = KafkaLoop(
            config.loop_config(), self, clock=clock,
            consumer_factory=consumer_factory, producer_factory=producer_factory, ends_factory=ends_factory,
        )  # fmt: skip
        self._batch = _Batch()
        # The batch being written (or written, its commit pending); at most one, so
        # commits stay in offset order and memory at two batches.
        self._job: _Job | None = None
        self._runner = runner or self._thread_runner
        self._backoff_s = config.retry_initial_s
        self._retry_at = 0.0
        self._paused = False
        self._failures = 0
        self.progress: dict[TopicPartition, PartitionProgress] = {}
        self._next_progress_at = 0.0
        self._closing: _Closing | None = None
        self.partitions = 0  # partitions of the topic, from metadata

    # -- lifecycle -------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop`` is set; flush and commit what it holds on the way out."""
        try:
            self.loop.run(stop)
        finally:
            self.inserts.close()
            if self._owns_engine:
                self.engine.close()

    @property
    def consumer(self) -> Any:
        return self.loop.consumer

    def _thread_runner(self, fn: Callable[[], None]) -> None:
        threading.Thread(target=fn, name=f"sink-{self.config.name}-writer", daemon=True).start()

    # -- the loop's step: one round is ready() → poll(timeout_s()) → submit() → poll() ---
    # Writing overlaps with polling and building the next batch's rows; at most one
    # batch is written at a time and a full next batch waits for it.
    def ready(self) -> bool:
        """Finish a written batch; False (fetch nothing) while the next batch is full."""
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
            return False
        return True

    def timeout_s(self) -> float:
        """Block in poll() until the next thing the sink can act on.

        Never a zero timeout while waiting for a retry: kafka-python finishes a rebalance
        (and heartbeats its progress) only inside poll() calls that are given time.
        """
        now = self.clock()
        if self._retry_at > now:
            return min(0.1, self._retry_at - now)
        if self._job is not None:
            return 0.02
        if self._closing is not None:
            return 0.01  # a transaction's commit marker ends no poll: look again soon
        if self._batch:
            return min(0.1, max(0.0, self._batch.opened_at + self.config.max_wait_s - now))
        # Nothing held: records end a poll as soon as they arrive, so block until the
        # progress measurement is due. kafka-python wakes its network thread at every poll:
        # ten empty rounds a second cost an idle sink ~6 ms of CPU a second, as much as its fetches.
        return min(IDLE_POLL_MAX_S, max(IDLE_POLL_MIN_S, self._next_progress_at - now))

    def poll(self) -> None:
        """Hand a due batch to the writer (committing it at once if written inline), or publish progress."""
        now = self.clock()
        if self._job is None and self._batch and now >= self._retry_at and self._due(now):
            if self._may_close(now):
                job = self._start()
                if job.done.is_set():  # written inline (or very fast): commit now
                    self._complete(job)
        elif now >= self._next_progress_at:
            self._publish_progress()

    def _may_close(self, now: float) -> bool:
        """Whether the due batch closes now: at once, or (``closing_wait_s``, due by time, and
        what is left to read fits in it) once it has read up to the ends measured when it fell
        due, or when the wait is over (a transaction left open stays below its end)."""
        wait = self.config.closing_wait_s
        if wait is None or self._batch.units >= self.config.max_rows:
            return True
        if self._closing is None:
            ends = self._publish_progress()
            if not ends or self._to_read(ends) > self.config.max_rows - self._batch.units:
                return True
            self._closing = _Closing(now + wait, ends)
        behind = self._to_read(self._closing.ends)
        if now < self._closing.deadline and behind > 0:
            return False
        # Timed per outcome: a wait cut short leaves that instant to the next batch's commit.
        self._phase_took("closing" if behind == 0 else "closing_cut", max(0.0, now - self._closing.deadline + wait))
        self._closing = None
        return True

    def _to_read(self, ends: dict[TopicPartition, int]) -> int:
        """Offsets between the assigned partitions' positions and ``ends`` (markers included)."""
        assigned = self.consumer.assignment()
        return sum(max(0, end - self._position(tp, end)) for tp, end in ends.items() if tp in assigned)

    def _position(self, tp: TopicPartition, otherwise: int) -> int:
        try:
            return self.consumer.position(tp, timeout_ms=1_000)
        except KafkaError:
            return otherwise

    def blocked(self, assigned: set[TopicPartition]) -> set[TopicPartition]:
        """While ClickHouse (or Kafka) fails: every partition, so lag grows in Kafka, not in memory."""
        return set(assigned) if self._paused else set()

    def held(self, tp: TopicPartition) -> int | None:
        firsts = [b.parts[tp].first_offset for b in self._batches() if tp in b.parts]
        return min(firsts, default=None)

    def _batches(self) -> list[_Batch]:
        return [self._batch] if self._job is None else [self._batch, self._job.batch]

    def join(self) -> None:
        """Shutdown: keep writing what is held for up to ``shutdown_flush_s``."""
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

    # -- taking records --------------------------------------------------------------
    def submit(self, tp: TopicPartition, msgs: list) -> None:
        """Turn the records into rows (dead-lettering those the row builder rejects) and batch them."""
        b = self._batch
        if not b:
            b.opened_at = self.clock()
            self._measure_while_held(b.opened_at)
        part = b.parts.get(tp)
        if part is None:
            part = b.parts[tp] = _Part(first_offset=msgs[0].offset)
        first_table = self.config.tables[0]
        with collector_paused():  # the rows stay alive until written: nothing to find in them
            self._take(b, part, tp, msgs, first_table)
        b.changed()

    def _take(self, b: _Batch, part: _Part, tp: TopicPartition, msgs: list, first_table: str) -> None:
        for m in msgs:
            try:
                rows = self.to_rows(m.value)
            except InvalidStatement as err:
                self._deadletter(b, tp, m.offset, m.key, m.value, err.rule, str(err))
                rows = None
            else:
                self.loop.deadletters.passed()
                b.units += len(rows.get(first_table, ()))
            part.entries.append(_Entry(m.offset, m.key, m.value, rows))
            part.next_offset = m.offset + 1
            if m.timestamp and m.timestamp > part.newest_ms:
                part.newest_ms = m.timestamp

    def _deadletter(self, b: _Batch, tp: TopicPartition, offset: int, key: bytes | None, value: bytes | None,
                    rule: str, reason: str) -> None:  # fmt: skip
        b.deadletters.append(self.loop.deadletters.send(tp, offset, key, value, rule, reason))

    def _due(self, now: float) -> bool:
        b = self._batch
        return b.units >= self.config.max_rows or now - b.opened_at >= self.config.max_wait_s

    # -- writing (on the writer thread, except where noted) --------------------------
    def _start(self) -> _Job:
        """Hand the current batch to the writer (main thread)."""
        self._phase_took("filling", max(0.0, self.clock() - self._batch.opened_at))
        self._closing = None
        self._commit_past_markers(self._batch)
        job = _Job(self._batch)
        self._batch = _Batch()
        self._job = job
        self._runner(lambda: self._write(job))
        return job

    def _commit_past_markers(self, b: _Batch) -> None:
        """Commit up to the consumer's position, as Kafka's own clients do: every record it
        returned is in this batch, and a read_committed position also passes the transaction
        markers (and aborted records) after them, which the last record + 1 would leave behind."""
        assigned = self.consumer.assignment()
        for tp, part in b.parts.items():
            if tp in assigned:
                part.next_offset = max(part.next_offset, self._position(tp, part.next_offset))

    def _write(self, job: _Job) -> None:
        b = job.batch
        try:
            # Outside the next try: a failure to gather (e.g. reading the erasure ledger)
            # is never blamed on the records.
            started = time.perf_counter()
            rows = self._gather(b)
            try:
                # Inside: the first-copy look-up queries ClickHouse; its errors are handled as the inserts'.
                to_insert = self._to_insert(rows)
                started = self._phase_since("rows", started)
                self.inserts.insert_all(to_insert, b.digest(), b.inserted, b.uncertain, self.retry_filter)
            except ClickHouseError as err:
                if err.code in MISCONFIGURED_CODES:
                    raise SinkMisconfigured(f"sink {self.config.name}: {err}") from err
                log.warning("ClickHouse rejected a batch (%s); writing it record by record", err)
                self._isolate(b)
                rows = self._gather(b)
            started = self._phase_since("insert", started)
            if not b.steps_done:
                for step in self.after_insert:
                    step(self.engine, rows)
                    started = self._phase_since(_step_name(step), started)
                b.steps_done = True
            self.loop.deadletters.settle(b.deadletters)
        except BaseException as err:  # noqa: BLE001 - handed to the main thread (_complete)
            job.error = err
        finally:
            job.done.set()

    def _phase_took(self, phase: str, seconds: float) -> None:
        metrics.BATCH_PHASE_SECONDS.labels(self.config.name, phase).observe(seconds)

    def _phase_since(self, phase: str, started: float) -> float:
        """Record ``phase`` as having run since ``started`` (perf_counter); the time it ended."""
        now = time.perf_counter()
        self._phase_took(phase, now - started)
        return now

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

    def _isolate(self, b: _Batch) -> None:
        """Insert record by record; dead-letter the records ClickHouse rejects."""
        for tp in sorted(b.parts):
            for e in b.parts[tp].entries:
                if not e.rows:
                    continue
                rows = self._to_insert(self.row_filter(e.rows) if self.row_filter else e.rows)
                try:
                    for table in self.inserts.order(rows):
                        if rows.get(table):
                            self.inserts.insert(table, rows[table], _record_digest(tp, e))
                except ClickHouseError as err:
                    if err.code in MISCONFIGURED_CODES:
                        raise SinkMisconfigured(f"sink {self.config.name}: {err}") from err
                    self._deadletter(b, tp, e.offset, e.key, e.value, "clickhouse.rejected", str(err))
                    e.rows = None
        b.inserted.update(self.inserts.order(self._gather(b)))

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
        self._paused = True  # the loop stops fetching (see blocked())
        jitter = 1 + random.uniform(-0.2, 0.2)
        self._retry_at = self.clock() + self._backoff_s * jitter
        self._backoff_s = min(self._backoff_s * 2, self.config.retry_max_s)

    def _commit(self, job: _Job) -> None:
        parts = {tp: p for tp, p in job.batch.parts.items() if tp not in job.revoked}
        started = time.perf_counter()
        err = self.loop.commit({tp: p.next_offset for tp, p in parts.items()})
        started = self._phase_since("commit", started)
        if isinstance(err, CommitFailedError):
            # The group moved on: the partitions belong to someone else now (or again to
            # us, from the committed offset). Rows are written; the replay rewrites them.
            metrics.ERRORS.labels("sink", "commit_failed").inc()
            log.warning("sink %s: commit refused after insert (%s); rows will be replayed, not doubled",
                        self.config.name, err)  # fmt: skip
            self._job = None
            self._recovered()
            return
        if err is not None:
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
        self._phase_since("progress", started)

    def _recovered(self) -> None:
        self._failures = 0
        self._backoff_s = self.config.retry_initial_s
        self._retry_at = 0.0
        self._paused = False

    # -- progress --------------------------------------------------------------------
    def _progress_interval(self) -> float:
        busy = self.config.busy_progress_interval_s
        if busy is not None and (self._batch or self._job is not None):
            return busy
        return self.config.progress_interval_s

    def _measure_while_held(self, now: float) -> None:
        """A batch opens: its records are measured within the busy interval, not the idle one."""
        busy = self.config.busy_progress_interval_s
        if busy is not None:
            self._next_progress_at = min(self._next_progress_at, now + busy)

    def _publish_progress(self) -> dict[TopicPartition, int] | None:
        """Measure how far each assigned partition is caught up; hand progress to the hook.
        The ends measured (None: not measured).

        A partition is caught up to wall time W once its committed offset reaches the high
        watermark Kafka reported when asked at W (W taken *before* asking; not the last stable
        offset, see ``KafkaLoop.log_ends``): every record Kafka acknowledged before W is then
        in ClickHouse. Ends are measured every
        ``progress_interval_s`` whatever the batch holds (``busy_progress_interval_s`` while
        records are held), and kept until a commit reaches
        them, so a partition under continuous traffic (never empty between batches)
        advances by about a batch interval, not only when traffic pauses. Partitions not in
        any batch are committed up to their position.
        """
        self._next_progress_at = self.clock() + self._progress_interval()
        busy = set(self._batch.parts) | (set(self._job.batch.parts) if self._job is not None else set())
        assigned = list(self.consumer.assignment())
        if not assigned:
            return None
        measured_ms = int(time.time() * 1000)
        try:
            ends = self.loop.log_ends(assigned, timeout_ms=5_000)
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
            return None
        if self.on_progress:
            try:
                self.on_progress(self, {tp: self.progress[tp] for tp in assigned}, self.partitions)
            except (ClickHouseUnavailable, ClickHouseError) as err:
                log.info("sink %s: progress not published: %s", self.config.name, err)
        return {tp: end for tp in assigned if (end := ends.get(tp)) is not None}

    # -- rebalances (called on kafka-python's network thread, during poll) -------------
    def revoked(self, partitions: set[TopicPartition]) -> None:
        """Drop the uncommitted records of partitions we no longer own (the loop rewinds them
        if they come straight back)."""
        b = self._batch
        job = self._job
        for tp in partitions:
            part = b.parts.pop(tp, None)
            if part is not None:
                b.units -= sum(len(e.rows.get(self.config.tables[0], ())) for e in part.entries if e.rows)
            if job is not None and tp in job.batch.parts:
                # Being written on the writer thread: left alone, but never committed.
                job.revoked.add(tp)
            b.deadletters = [dl for dl in b.deadletters if dl.tp != tp]
            self.progress.pop(tp, None)
        if partitions:
            b.changed()
            self._closing = None

    def assigned(self, partitions: set[TopicPartition]) -> None:
        """Nothing to prepare: the loop pauses new partitions while the sink is blocked."""
