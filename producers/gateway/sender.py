"""All-or-nothing delivery of an HTTP request's envelopes: Kafka transactions with group commit.

One POST may hold statements of many learners, hence several envelopes on several
partitions. They are written in one Kafka transaction, so consumers reading with
``isolation_level=read_committed`` (the sinks, and any reader that promises exactness)
see every envelope of the request or none. The HTTP answer is given only once the
commit is acknowledged.

A transaction costs several round trips (~10-30 ms here, far more on a loaded machine),
so the requests that arrive while a commit is in flight are committed together in the
next one ("group commit"), and a few producers ("lanes") commit in parallel: throughput
grows with concurrency instead of being capped at one request per commit.
A failed transaction fails every request in it (each answered 503, none half-written),
with one exception: when Kafka refuses a *record* (too large, invalid), the failure is
one request's content, so the group is committed again in halves, halved again where the
refusal recurs, and only the request that holds the record fails (:class:`RecordRefused`).
Requests never share an error message: a group failure names only the kind of error.
A record larger than ``max_request_bytes`` is refused before it joins any transaction.

kafka-python's transactional calls block and ``commit_transaction`` has no timeout, so
they run on dedicated threads; the event loop only awaits asyncio futures. Timeouts:

- a job not yet picked up when its deadline passes is withdrawn (answer: 503, nothing
  written, certain);
- a job whose transaction already started is waited for until ``outcome_timeout_s``;
  after that its outcome is *unknown* (:class:`OutcomeUnknown`): Kafka may still commit
  it. The caller keeps its ids reserved until :attr:`Job.settled` resolves.

Which failures are certain "nothing written" (:class:`KafkaUnavailable`): any before
``commit_transaction`` was called (producer not ready, a send or flush error, the
transaction's deadline), and a commit error after which the producer itself aborted the
transaction successfully (:class:`TransactionAborted`: the librdkafka adapter does so for
an abortable error; an abort refused means the commit may have landed). Any other error
*raised by* ``commit_transaction`` (a timeout after its retries, fenced, the coordinator
lost mid-EndTxn, a fatal error; kafka-python's never aborts) may come after the
coordinator took EndTxn(COMMIT): Kafka then completes that commit, at the latest when the
lane's next producer re-initializes the same transactional id. So the lane re-initializes
it (:meth:`_Lane._recover`: once ``init_transactions`` returned, the transaction is
settled in Kafka, its markers written) and then *reads* the outcome
(:func:`was_committed`): the first record of the transaction, at the offset its send
acknowledged, looked up with a ``read_committed`` consumer. Returned: committed, and the
job is answered as any committed one. Skipped: aborted, nothing written (certain). Not
known within ``timeout_s`` (Kafka unreachable, the last stable offset held below it by
another producer's open transaction, or no offset: the producer gave none): the job is
answered :class:`OutcomeUnknown` and never settled, so its ids stay reserved until the
reservation is taken over as stale, the documented crash-after-commit window of
:mod:`producers.lrsstore.statement_index` (a retry is held meanwhile, then stored again if
the first copy did land, and the sinks collapse that copy).

The lanes' producer is kafka-python's ``KafkaProducer`` or, with ``client="librdkafka"``
(the gateway's default), :class:`producers.gateway.rdkafka.RdKafkaTransactionalProducer`,
which offers the same calls on confluent-kafka: the lanes below are one code for both.

After any failure the producer is discarded and a new one is created with the same
``transactional_id``: ``init_transactions`` fences the old one and aborts its open
transaction (the broker also aborts it after ``transaction_timeout_ms``).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import NamedTuple

from kafka import KafkaProducer
from kafka.errors import (
    CorruptRecordError,
    InvalidRecordError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
)

from schemas import metrics
from schemas.envelope import StatementEnvelope

from ..kafka import KeyPartitioner

log = logging.getLogger("learnpulse.gateway.kafka")

_PENDING, _RUNNING, _WITHDRAWN, _DONE = range(4)
# An idle lane serves its producer's callbacks this often (librdkafka's statistics and error
# reports wait in its queue for a call of the lane's thread; unserved, they pile up).
_IDLE_POLL_S = 1.0
# Room left in a Kafka record for its batch framing, headers and timestamp.
_RECORD_OVERHEAD = 1024


class KafkaUnavailable(Exception):
    """Kafka did not take the request; nothing of it was written (certain)."""


class OutcomeUnknown(Exception):
    """The commit was sent but not confirmed (in time, or it failed): Kafka may or may not have it."""


class TransactionAborted(Exception):
    """Raised by a lane producer's ``commit_transaction`` that aborted the transaction itself
    after an abortable error (``abort_transaction`` succeeded): nothing of it was committed
    (certain). ``error`` is what made the commit fail (classified as a send error would be).
    """

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class RecordRefused(Exception):
    """Kafka refused a record of this request (its own content); nothing of it was written.

    ``too_large``: the record exceeds the Kafka message limit ``limit`` (bytes).
    """

    def __init__(self, message: str, too_large: bool, limit: int) -> None:
        super().__init__(message)
        self.too_large = too_large
        self.limit = limit


# Broker or client refusals caused by what a record holds, not by the state of Kafka.
_RECORD_ERRORS = (MessageSizeTooLargeError, RecordListTooLargeError, CorruptRecordError, InvalidRecordError)


@dataclass(frozen=True)
class TransactionalParameters:
    bootstrap: str
    topic: str
    transactional_id: str
    # How long a request may wait for Kafka before it is answered 503.
    timeout_s: float = 10.0
    # How long to wait once its transaction started, before answering "outcome unknown".
    outcome_timeout_s: float = 30.0
    # Largest Kafka record (the producer's max_request_size; agrees with the topic's
    # max.message.bytes, see ``schemas.topics``).
    max_request_bytes: int = 4 * 1024 * 1024
    # Cap on record bytes per transaction (one request always fits alone): bounds the
    # memory and the send time of one commit, and the work a failure throws away.
    max_transaction_bytes: int = 16 * 1024 * 1024
    # Cap on envelopes per transaction (bounds the work a failure throws away).
    max_envelopes: int = 5_000
    transaction_timeout_ms: int = 60_000
    # The Kafka client of the lanes: "kafka-python" (pure Python) or "librdkafka"
    # (confluent-kafka: batches, protocol and I/O in C threads, see ``rdkafka``).
    client: str = "kafka-python"
    # librdkafka only: its statistics become the lanes' Prometheus metrics every this many
    # milliseconds (``rdkafka_stats``; 0: none).
    statistics_interval_ms: int = 0
    # How long a lane holds a transaction open for more requests after its first one was
    # queued (0: it commits whatever is queued at once). Every transaction costs the broker
    # a commit round with markers on each partition it touched, whatever its size: single-
    # statement requests in transactions of a few requests each cost Kafka and the lanes
    # more per statement than requests grouped by a few milliseconds.
    linger_s: float = 0.0


class Outgoing(NamedTuple):
    """One Kafka record of a job: all the sender needs of an envelope."""

    key: bytes
    value: bytes
    statements: int


@dataclass(eq=False)
class Job:
    """One request's envelopes. ``settled`` resolves (True committed / False not) when known."""

    # Key, encoded value and statement count of each envelope: not the envelopes, whose
    # parsed statements would otherwise stay alive (and be walked by every garbage
    # collection) for as long as the transaction takes.
    envelopes: list[Outgoing]
    deadline: float
    loop: asyncio.AbstractEventLoop
    result: asyncio.Future
    settled: asyncio.Future
    size: int = 0
    state: int = _PENDING
    lock: threading.Lock = field(default_factory=threading.Lock)
    # The waiter's pending time limit (see TransactionalSender.wait).
    timer: asyncio.TimerHandle | None = None

    def claim(self) -> bool:
        with self.lock:
            if self.state != _PENDING:
                return False
            self.state = _RUNNING
            return True

    def withdraw(self) -> bool:
        """Called by the waiter on timeout: True if the job never started (safe to answer 503)."""
        with self.lock:
            if self.state != _PENDING:
                return False
            self.state = _WITHDRAWN
            return True

    def finish(self, error: BaseException | None) -> None:
        finish_jobs([self], error)

    def resolve(self, error: BaseException | None) -> None:
        """On the job's event loop: answer the waiter (unless it gave up) and settle.

        An :class:`OutcomeUnknown` settles nothing: the commit may have landed, so the
        caller's reservations are left to be taken over as stale.
        """
        if not self.result.done():
            if error is None:
                self.result.set_result(None)
            else:
                self.result.set_exception(error)
        if not self.settled.done() and not isinstance(error, OutcomeUnknown):
            self.settled.set_result(error is None)


def finish_jobs(jobs: list[Job], error: BaseException | None) -> None:
    """Mark ``jobs`` done and resolve them with one call into each event loop they came from.

    One ``call_soon_threadsafe`` per job woke the event loop (a write to its wake-up fd,
    then a loop iteration) once per request of a transaction of a hundred.
    """
    by_loop: dict[asyncio.AbstractEventLoop, list[Job]] = {}
    for job in jobs:
        with job.lock:
            job.state = _DONE
        by_loop.setdefault(job.loop, []).append(job)

    def resolver(done: list[Job]):
        def resolve_all() -> None:
            for job in done:
                job.resolve(error)

        return resolve_all

    for loop, done in by_loop.items():
        loop.call_soon_threadsafe(resolver(done))


class TransactionalSender:
    """Commits groups of jobs through ``lanes`` transactional producers, one thread each.

    Each lane has its own ``transactional_id`` (``<id>-<n>``): a producer has at most one
    open transaction, so several lanes keep several commits in flight while each still
    groups whatever queued up behind it. Lanes share one queue; requests in flight at
    the same time have no order between them anyway, and one request's envelopes always
    travel together in one transaction.
    """

    def __init__(self, params: TransactionalParameters, producer_factory=None, lanes: int = 2,
                 read_committed=None) -> None:  # fmt: skip
        self.params = params
        self._factory = producer_factory or self._make_producer
        # ``(topic, partition, offset, timeout_s) -> bool | None``: see :func:`was_committed`.
        self._read_committed = read_committed or (
            lambda topic, partition, offset, timeout_s: was_committed(params.bootstrap, topic, partition, offset,
                                                                       timeout_s)  # fmt: skip
        )
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._lanes = [_Lane(self, f"{params.transactional_id}-{n}") for n in range(lanes)]
        self._stopped = threading.Event()
        self.healthy = threading.Event()

    def _make_producer(self, transactional_id: str) -> KafkaProducer:
        p = self.params
        if p.client == "librdkafka":
            from .rdkafka import RdKafkaTransactionalProducer, rdkafka_config

            conf = rdkafka_config(p.bootstrap, transactional_id, p.transaction_timeout_ms, p.max_request_bytes,
                                  p.timeout_s, p.statistics_interval_ms)  # fmt: skip
            return RdKafkaTransactionalProducer(conf, p.topic, init_timeout_s=p.timeout_s,
                                                commit_timeout_s=p.transaction_timeout_ms / 1000)  # fmt: skip
        if p.client != "kafka-python":
            raise ValueError(f"unknown Kafka client {p.client!r} (kafka-python or librdkafka)")
        return KafkaProducer(
            bootstrap_servers=p.bootstrap,
            client_id=f"learnpulse-gateway-{transactional_id}",
            transactional_id=transactional_id,
            transaction_timeout_ms=p.transaction_timeout_ms,
            acks="all",
            enable_idempotence=True,
            compression_type="lz4",
            linger_ms=0,  # group commit already batches; flush() sends at commit time
            batch_size=512 * 1024,
            max_request_size=p.max_request_bytes,
            # Short backoff: after a commit the coordinator answers the next
            # AddPartitionsToTxn with CONCURRENT_TRANSACTIONS until its markers are
            # written; the default 100 ms retry made every transaction cost ~100 ms here.
            retry_backoff_ms=5,
            max_block_ms=int(p.timeout_s * 1000),
            bootstrap_timeout_ms=int(p.timeout_s * 1000),  # the constructor waits this long for a broker
            request_timeout_ms=int(p.timeout_s * 1000),
            delivery_timeout_ms=int(p.timeout_s * 1000) + 1000,
        )

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        for lane in self._lanes:
            lane.thread.start()

    def initialized(self) -> bool:
        """Every lane's producer ran ``init_transactions``: a previous run's are fenced."""
        return all(lane.producer is not None for lane in self._lanes)

    def close(self, timeout: float = 10) -> None:
        self._stopped.set()
        for _ in self._lanes:
            self._queue.put(None)
        for lane in self._lanes:
            lane.thread.join(timeout)
            lane.close()

    # -- asyncio side ----------------------------------------------------------------
    def submit(self, envelopes: list[tuple[StatementEnvelope, bytes]]) -> Job:
        """Queue one request's envelopes (each with its encoded value) for the next transaction."""
        loop = asyncio.get_running_loop()
        records = [Outgoing(env.key, value, len(env.entries)) for env, value in envelopes]
        job = Job(records, time.monotonic() + self.params.timeout_s, loop, loop.create_future(), loop.create_future())
        sizes = [len(r.key) + len(r.value) for r in records]
        largest = max(sizes, default=0)
        job.size = sum(sizes)
        limit = self.params.max_request_bytes - _RECORD_OVERHEAD
        if largest > limit:
            # Kafka would refuse it (and with it the whole transaction): refused alone, now.
            metrics.GATEWAY_KAFKA_FAILURES.labels("record_refused").inc()
            job.claim()
            job.finish(RecordRefused(f"a Kafka record of this request is {largest} bytes; Kafka takes at most "
                                     f"{limit} bytes per record", too_large=True, limit=limit))  # fmt: skip
            return job
        self._queue.put(job)
        return job

    async def wait(self, job: Job) -> None:
        """Wait for ``job``; raises :class:`KafkaUnavailable` or :class:`OutcomeUnknown`.

        The time limits are two loop timers that answer ``job.result`` themselves
        (:meth:`_expire`): an ``asyncio.timeout`` around a shielded future cost a timeout
        context, a second future and two callbacks per request, ~4 % of the event loop's
        CPU on single-statement POSTs. ``job.result`` only ever answers this waiter (the
        outcome is ``job.settled``), so it need not be shielded.
        """
        job.timer = job.loop.call_later(self.params.timeout_s, self._expire, job)
        try:
            await job.result
        finally:
            job.timer.cancel()

    def _expire(self, job: Job) -> None:
        """The waiter's first limit passed: 503 if the job never started, else wait for its outcome."""
        if job.result.done():
            return
        if job.withdraw():
            job.settled.set_result(False)
            metrics.GATEWAY_KAFKA_FAILURES.labels("timeout").inc()
            job.result.set_exception(
                KafkaUnavailable(f"Kafka did not take the request within {self.params.timeout_s:.0f}s")
            )
            return
        job.timer = job.loop.call_later(self.params.outcome_timeout_s, self._give_up, job)

    @staticmethod
    def _give_up(job: Job) -> None:
        if not job.result.done():
            metrics.GATEWAY_KAFKA_FAILURES.labels("outcome_unknown").inc()
            job.result.set_exception(OutcomeUnknown("Kafka did not confirm the commit in time"))

    async def send(self, envelopes: list[tuple[StatementEnvelope, bytes]]) -> None:
        await self.wait(self.submit(envelopes))

    def _take_group(self, first: Job) -> list[Job]:
        jobs = [first]
        n = len(first.envelopes)
        size = first.size
        while n < self.params.max_envelopes:
            try:
                j = self._queue.get_nowait()
            except queue.Empty:
                break
            if j is None:
                self._queue.put(None)
                break
            if size + j.size > self.params.max_transaction_bytes:
                self._queue.put(j)  # first in the next transaction (order between requests is free)
                break
            jobs.append(j)
            n += len(j.envelopes)
            size += j.size
        return jobs


class _Lane:
    """One transactional producer and the thread that commits through it."""

    def __init__(self, sender: TransactionalSender, transactional_id: str) -> None:
        self.sender = sender
        self.transactional_id = transactional_id
        self.producer: KafkaProducer | None = None
        self.initialized = False  # init_transactions of ``producer`` completed
        self.partitioner = KeyPartitioner()
        self.thread = threading.Thread(target=self._run, name=f"gateway-kafka-{transactional_id}", daemon=True)

    def close(self) -> None:
        if self.producer is not None:
            _discard(self.producer, timeout=5)
            self.producer = None

    def _run(self) -> None:
        sender = self.sender
        try:
            self._ensure_producer()  # ready before the first request (init_transactions takes a while)
        except Exception as err:  # noqa: BLE001 - Kafka down at start: retried on the first request
            log.warning("Kafka producer %s not ready yet: %r", self.transactional_id, err)
        while not sender._stopped.is_set():
            try:
                first = sender._queue.get(timeout=_IDLE_POLL_S)
            except queue.Empty:
                self._idle()
                continue
            if first is None:
                break
            self._linger(first)
            now = time.monotonic()
            group = [j for j in sender._take_group(first) if j.deadline > now and j.claim()]
            if group:
                self._commit(group)

    def _linger(self, first: Job) -> None:
        """Hold the transaction open until ``first`` was queued ``linger_s`` ago (see the parameter)."""
        params = self.sender.params
        if params.linger_s <= 0:
            return
        queued_at = first.deadline - params.timeout_s
        hold = queued_at + params.linger_s - time.monotonic()
        if hold > 0:
            self.sender._stopped.wait(hold)

    def _idle(self) -> None:
        poll = getattr(self.producer, "poll", None)  # librdkafka's; kafka-python has its own thread
        if poll is not None:
            try:
                poll(0)
            except Exception as err:  # noqa: BLE001 - a failed producer is dealt with by the next request
                log.debug("polling producer %s raised %r", self.transactional_id, err)

    def _ensure_producer(self) -> KafkaProducer:
        if self.producer is None:
            self.producer = self.sender._factory(self.transactional_id)
            self.initialized = False
        if not self.initialized:
            try:
                self.producer.init_transactions()
            except KafkaTimeoutError:
                # Kept: the next call goes on waiting for the same InitProducerId (kafka-python
                # 3.0: a retry after a timeout continues the prior request). Discarding it
                # started the handshake over at each request, so on a loaded machine, or while
                # a restarted broker loads its transaction state, an initialization that takes
                # longer than one request's budget never finished and every write got a 503.
                raise
            except BaseException:
                producer, self.producer = self.producer, None
                _discard(producer)
                raise
            self.initialized = True
        return self.producer

    def _recover(self) -> None:
        """Fence the failed producer and abort its open transaction.

        Records already sent stay in the log as an open transaction, which holds back
        every ``read_committed`` reader of those partitions until the broker aborts it
        (``transaction_timeout_ms``). A new producer with the same ``transactional_id``
        aborts it at once in ``init_transactions`` (and fences the old one, whose
        pending records are then refused).
        """
        old, self.producer = self.producer, None
        try:
            self._ensure_producer()
        except Exception as err:  # noqa: BLE001 - Kafka unreachable: the next request retries
            log.warning("Kafka producer %s not re-initialized yet: %r", self.transactional_id, err)
        if old is not None:
            # kafka-python's close flushes first and gives up (leaving its I/O thread
            # running) while records are pending; fenced or expired, they end in time.
            _discard(old, timeout=self.sender.params.timeout_s + 2)

    def _fail(self, group: list[Job], what: str, err: Exception) -> None:
        self.sender.healthy.clear()
        log.warning("Kafka %s for %d requests: %r", what, len(group), err)
        metrics.GATEWAY_KAFKA_FAILURES.labels("transaction").inc()
        # The kind of error only: details could describe another request's records.
        failure = KafkaUnavailable(f"Kafka refused the transaction ({type(err).__name__})")
        finish_jobs(group, failure)  # never committed: no producer of this epoch will commit it

    def _failed_commit(self, group: list[Job], err: Exception, at: tuple[int, int] | None, started: float,
                       records: int) -> None:  # fmt: skip
        """``commit_transaction`` raised: the coordinator may have the commit (see the module doc).

        Re-initializes the transactional id (which settles the transaction in Kafka), then
        reads whether the record at ``at`` (partition, offset) was committed.
        """
        self.sender.healthy.clear()
        params = self.sender.params
        self._recover()
        committed = None
        if at is not None and self.initialized:
            try:
                committed = self.sender._read_committed(params.topic, at[0], at[1], params.timeout_s)
            except Exception as e:  # noqa: BLE001 - Kafka unreachable: the outcome stays unknown
                log.warning("could not read the outcome of a failed Kafka commit: %r", e)
        if committed:
            log.warning("Kafka commit raised %r for %d requests, but the transaction was committed", err, len(group))
            metrics.GATEWAY_KAFKA_FAILURES.labels("commit_raised_committed").inc()
            self._committed(group, started, records)
        elif committed is False:
            log.warning("Kafka commit failed for %d requests, the transaction was aborted: %r", len(group), err)
            metrics.GATEWAY_KAFKA_FAILURES.labels("transaction").inc()
            finish_jobs(group, KafkaUnavailable(f"Kafka's commit failed ({type(err).__name__}) and the "
                                                "transaction was aborted"))  # fmt: skip
        else:
            log.warning("Kafka commit failed for %d requests, its outcome is unknown: %r", len(group), err)
            metrics.GATEWAY_KAFKA_FAILURES.labels("outcome_unknown").inc(len(group))
            finish_jobs(group, OutcomeUnknown(f"Kafka's commit failed ({type(err).__name__}); it may have been "
                                              "committed all the same"))  # fmt: skip

    def _committed(self, group: list[Job], started: float, records: int) -> None:
        params = self.sender.params
        self.sender.healthy.set()
        metrics.GATEWAY_COMMIT_SECONDS.observe(time.perf_counter() - started)
        metrics.GATEWAY_COMMIT_REQUESTS.observe(len(group))
        statements = sum(r.statements for job in group for r in job.envelopes)
        finish_jobs(group, None)
        metrics.STATEMENTS_OUT.labels("gateway").inc(statements)
        metrics.MESSAGES_OUT.labels("gateway", params.topic).inc(records)

    def _commit(self, group: list[Job]) -> None:
        started = time.perf_counter()
        params = self.sender.params
        # One budget for the whole transaction: each send may wait for metadata (up to
        # max_block_ms), so without it a dead broker cost that wait once per envelope.
        deadline = time.monotonic() + params.timeout_s
        futures = []
        committing = False  # commit_transaction called: the coordinator may have EndTxn(COMMIT)
        try:
            producer = self._ensure_producer()
        except Exception as err:  # noqa: BLE001 - no transaction began: nothing to fence or abort
            self._fail(group, "producer not ready", err)
            return
        try:
            producer.begin_transaction()
            for job in group:
                for key, value, _ in job.envelopes:
                    if time.monotonic() > deadline:
                        raise KafkaTimeoutError(f"transaction not written within {params.timeout_s:.0f}s")
                    partition = self.partitioner.partition(producer, params.topic, key)
                    if partition is None:
                        futures.append(producer.send(params.topic, key=key, value=value))
                    else:
                        futures.append(producer.send(params.topic, key=key, value=value, partition=partition))
            producer.flush(timeout=max(0.0, deadline - time.monotonic()))
            for f in futures:
                if not f.succeeded():
                    raise f.exception or KafkaError("send not acknowledged")
            committing = True
            producer.commit_transaction()
        except Exception as err:  # noqa: BLE001 - before the commit (or aborted by it): nothing committed
            if isinstance(err, TransactionAborted):
                err = err.error
            elif committing:
                self._failed_commit(group, err, _written_at(producer, futures), started, len(futures))
                return
            if isinstance(err, _RECORD_ERRORS):
                # A new producer aborts the open transaction before anything is retried. Aborting
                # and keeping this one would save an InitProducerId round trip, but librdkafka keeps
                # the refused record's sequence number: its next transaction then fails
                # (OUT_OF_ORDER_SEQUENCE_NUMBER, "skipped sequence numbers").
                self._recover()
                self._refused(group, err)
                return
            self._fail(group, "transaction failed", err)
            self._recover()
            return
        self._committed(group, started, len(futures))

    def _refused(self, group: list[Job], err: Exception) -> None:
        """Kafka refused a record: one request's content, so it must fail alone.

        The group is committed again in halves, and a half that fails again is halved in turn:
        one refused request among n costs about 2·log2(n) transactions, not n.
        """
        if len(group) > 1:
            log.warning("Kafka refused a record (%s) in a transaction of %d requests; committing each half apart",
                        type(err).__name__, len(group))  # fmt: skip
            half = len(group) // 2
            self._commit(group[:half])
            self._commit(group[half:])
            return
        metrics.GATEWAY_KAFKA_FAILURES.labels("record_refused").inc()
        too_large = isinstance(err, (MessageSizeTooLargeError, RecordListTooLargeError))
        limit = self.sender.params.max_request_bytes - _RECORD_OVERHEAD
        log.info("Kafka refused a request's record: %r", err)
        group[0].finish(RecordRefused(f"Kafka refused a record of this request ({type(err).__name__})",
                                      too_large=too_large, limit=limit))  # fmt: skip


def _written_at(producer, futures: list) -> tuple[int, int] | None:
    """(partition, offset) of the transaction's first record, if its producer told it."""
    first = getattr(producer, "first_written", None)  # the librdkafka adapter
    if first is not None:
        return first
    meta = getattr(futures[0], "value", None) if futures else None  # kafka-python: RecordMetadata
    offset = getattr(meta, "offset", None)
    return (meta.partition, offset) if isinstance(offset, int) and offset >= 0 else None


def was_committed(bootstrap: str, topic: str, partition: int, offset: int, timeout_s: float) -> bool | None:
    """Was the record at ``offset`` committed? Read as a ``read_committed`` consumer reads.

    Call it once the transaction is settled (its producer's transactional id re-initialized):
    True if the record is returned, False if the consumer passes its offset without it
    (aborted records are skipped), None if neither happens within ``timeout_s`` (an older
    open transaction holds the last stable offset below it, or Kafka is unreachable).
    """
    from kafka import KafkaConsumer, TopicPartition

    tp = TopicPartition(topic, partition)
    timeout_ms = int(timeout_s * 1000)
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, client_id="learnpulse-gateway-outcome", group_id=None,
        enable_auto_commit=False, isolation_level="read_committed", fetch_max_wait_ms=100,
        auto_offset_reset="none",  # the record gone (retention): an error, the outcome unknown, never "aborted"
        request_timeout_ms=max(timeout_ms, 1000), bootstrap_timeout_ms=timeout_ms,
    )  # fmt: skip
    try:
        consumer.assign([tp])
        consumer.seek(tp, offset)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            records = consumer.poll(timeout_ms=200, max_records=1).get(tp)
            if records:
                return records[0].offset == offset  # the first record at or after it: ours if committed
            if consumer.position(tp, timeout_ms=timeout_ms) > offset:
                return False
        return None
    finally:
        consumer.close()


def _discard(producer: KafkaProducer, timeout: float = 0) -> None:
    try:
        producer.close(timeout=timeout)
    except Exception as err:  # noqa: BLE001 - a producer in a failed state may raise on close; dropped anyway
        log.debug("closing a failed producer raised %r", err)
