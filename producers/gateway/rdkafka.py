"""The gateway's transactional producer on librdkafka (confluent-kafka), for the lanes of
:mod:`producers.gateway.sender`.

kafka-python encodes record batches, the protocol and its I/O in Python threads that hold
the GIL: about a fifth of the gateway's CPU on single-statement POSTs, competing with the
event loop. librdkafka does all of it in C threads, and confluent-kafka releases the GIL
in its blocking calls (flush, commit, init). :class:`RdKafkaTransactionalProducer` offers
the few calls of kafka-python's ``KafkaProducer`` that a lane makes, with the same
meaning, so the lanes' group commit, deadlines, refusals and fencing stay one code:

- ``send`` returns an outcome with ``succeeded()``/``exception``; every delivery report
  comes to the producer-wide delivery callback: a failed one fails the transaction's
  outcome, and the first successful one of a transaction gives ``first_written`` (partition,
  offset), which the lanes read back when ``commit_transaction`` fails (whether Kafka
  committed it after all). That is one Python call per record on the lane thread, during
  flush (``delivery.report.only.error`` spared it, but gives no offset);
- librdkafka errors become kafka-python's exception classes, so a record Kafka refuses
  (``MSG_SIZE_TOO_LARGE``, ``INVALID_RECORD``...) is still told from a broken Kafka;
- ``init_transactions`` after a timeout is resumed by the next call on the same producer
  (as in kafka-python 3.0): :class:`KafkaTimeoutError`;
- ``flush`` ends at the first failed delivery (librdkafka then holds the transaction's other
  records back; waiting for them cost the whole timeout);
- ``commit_transaction`` retries a retriable error up to ``commit_timeout_s``; an abortable
  one is aborted before it is raised: :class:`~producers.gateway.sender.TransactionAborted`
  if the abort succeeded (nothing of it is committed), else the error itself, like any other
  (the commit may have landed: the lane answers "outcome unknown");
- ``_metadata.partitions_for_topic`` gives the topic's partitions for
  :class:`producers.kafka.KeyPartitioner`, so each envelope is produced to the same explicit
  partition kafka-python chose (``murmur2_random`` is the same hash for the fallback);
- ``close`` never blocks longer than its timeout (librdkafka's close has none);
- ``poll`` serves librdkafka's callbacks while the lane is idle;
- with ``statistics.interval.ms`` set, librdkafka's statistics become Prometheus metrics
  of the lane (:mod:`producers.gateway.rdkafka_stats`).

librdkafka's own log lines go to the ``learnpulse.gateway.librdkafka`` logger (warnings
and above), served from the lane thread's calls.
"""

from __future__ import annotations

import logging
import threading
import time

from confluent_kafka import KafkaError as RdError
from confluent_kafka import KafkaException, Producer
from kafka.errors import (
    CorruptRecordError,
    InvalidRecordError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
)

from schemas import metrics

from .rdkafka_stats import LaneStats
from .sender import TransactionAborted

log = logging.getLogger("learnpulse.gateway.librdkafka")

# How often the topic's partitions are looked up again (kafka-python: metadata.max.age 5 min).
_METADATA_MAX_AGE_S = 60.0
# How long a flush waits before it looks whether a delivery failed (see ``flush``).
_FLUSH_SLICE_S = 0.1

# Reports of records librdkafka dropped from its queues (after a failure, or on abort).
_PURGED = frozenset({RdError._PURGE_QUEUE, RdError._PURGE_INFLIGHT})

_BY_CODE: dict[int, type[KafkaError]] = {
    RdError.MSG_SIZE_TOO_LARGE: MessageSizeTooLargeError,
    RdError.RECORD_LIST_TOO_LARGE: RecordListTooLargeError,
    RdError.INVALID_MSG: CorruptRecordError,
    RdError.INVALID_RECORD: InvalidRecordError,
    RdError._TIMED_OUT: KafkaTimeoutError,
    RdError._MSG_TIMED_OUT: KafkaTimeoutError,
    RdError.REQUEST_TIMED_OUT: KafkaTimeoutError,
}


def kafka_python_error(err: RdError | BaseException) -> BaseException:
    """The kafka-python exception for a librdkafka error (the lanes classify those)."""
    if isinstance(err, KafkaException) and err.args and isinstance(err.args[0], RdError):
        err = err.args[0]
    if not isinstance(err, RdError):
        return err
    return _BY_CODE.get(err.code(), KafkaError)(f"{err.name()}: {err.str()}")


class _Outcome:
    """The delivery outcome of one transaction's records (kafka-python's future, shared).

    ``cause`` is the first failure of a record itself; ``purged`` the first record librdkafka
    purged from its queue. Once a record failed, librdkafka may purge the transaction's other
    queued records, and their reports can arrive before the failed record's own: a purge is
    then a consequence, not the reason, and must not hide a refused record behind it.
    """

    __slots__ = ("cause", "purged")

    def __init__(self) -> None:
        self.cause: BaseException | None = None
        self.purged: BaseException | None = None

    @property
    def exception(self) -> BaseException | None:
        return self.cause or self.purged

    @exception.setter
    def exception(self, error: BaseException | None) -> None:
        self.cause = error

    def failed(self, err: RdError) -> None:
        if err.code() in _PURGED:
            self.purged = self.purged or kafka_python_error(err)
        elif self.cause is None:
            self.cause = kafka_python_error(err)

    def succeeded(self) -> bool:
        return self.exception is None


class _Partitions:
    def __init__(self) -> None:
        self.by_topic: dict[str, set[int]] = {}

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return self.by_topic.get(topic)


class RdKafkaTransactionalProducer:
    """The calls a lane makes of kafka-python's transactional ``KafkaProducer``, on librdkafka."""

    def __init__(self, conf: dict, topic: str, init_timeout_s: float, commit_timeout_s: float,
                 producer_class=Producer) -> None:  # fmt: skip
        self.topic = topic
        self.init_timeout_s = init_timeout_s
        self.commit_timeout_s = commit_timeout_s
        self._outcome = _Outcome()
        # (partition, offset) of the current transaction's first delivered record.
        self.first_written: tuple[int, int] | None = None
        self._metadata = _Partitions()
        self._metadata_at = -_METADATA_MAX_AGE_S
        conf = {**conf, "delivery.report.only.error": False, "on_delivery": self._delivered,
                "error_cb": self._error, "logger": log}  # fmt: skip
        self._stats: LaneStats | None = None
        if conf.get("statistics.interval.ms"):
            self._stats = LaneStats(conf["transactional.id"])
            conf["stats_cb"] = self._stats.receive
        self._p = producer_class(conf)

    # -- callbacks (on the lane thread, from flush/commit) ----------------------------------
    def _delivered(self, err, msg) -> None:
        if err is not None:
            self._outcome.failed(err)
        elif self.first_written is None:
            self.first_written = (msg.partition(), msg.offset())

    @staticmethod
    def _error(err) -> None:
        # Broker connections down etc.: the lanes log the failures that cost a request.
        log.debug("librdkafka: %s", err)
        try:
            metrics.GATEWAY_KAFKA_CLIENT_ERRORS.labels(err.name()).inc()
        except Exception:  # noqa: BLE001 - never raise into librdkafka
            metrics.GATEWAY_KAFKA_CLIENT_ERRORS.labels("unknown").inc()

    # -- kafka-python's calls ---------------------------------------------------------------
    def init_transactions(self) -> None:
        try:
            self._p.init_transactions(self.init_timeout_s)
        except KafkaException as e:
            err = e.args[0]
            if err.retriable() or err.code() == RdError._TIMED_OUT:
                raise KafkaTimeoutError(f"{err.name()}: {err.str()}") from None  # resumed by the next call
            raise kafka_python_error(err) from None
        self._refresh_partitions()

    def begin_transaction(self) -> None:
        if time.monotonic() - self._metadata_at > _METADATA_MAX_AGE_S:
            self._refresh_partitions()
        self._outcome = _Outcome()
        self.first_written = None
        try:
            self._p.begin_transaction()
        except KafkaException as e:
            raise kafka_python_error(e) from None

    def send(self, topic: str, key: bytes | None = None, value: bytes | None = None,
             partition: int | None = None) -> _Outcome:  # fmt: skip
        outcome = self._outcome
        try:
            if partition is None:
                self._p.produce(topic, value, key)
            else:
                self._p.produce(topic, value, key, partition)
        except KafkaException as e:  # refused here: larger than message.max.bytes, ...
            if outcome.exception is None:
                outcome.exception = kafka_python_error(e)
        except BufferError as e:
            if outcome.exception is None:
                outcome.exception = KafkaTimeoutError(f"librdkafka's queue is full: {e}")
        return outcome

    def flush(self, timeout: float | None = None) -> None:
        """Wait for the transaction's delivery reports, until ``timeout`` or the first failure.

        Once a delivery failed the transaction must be aborted, and librdkafka sends none of its
        other records: waiting for them cost the whole timeout, while requests queued behind
        this transaction ran out of theirs. Waited in slices so that a failure ends the wait.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = _FLUSH_SLICE_S if deadline is None else min(_FLUSH_SLICE_S, max(0.0, deadline - time.monotonic()))
            left = self._p.flush(wait)
            if not left or self._outcome.cause is not None:
                return
            if deadline is not None and time.monotonic() >= deadline:
                self._outcome.exception = KafkaTimeoutError(f"{left} records not delivered in time")
                return

    def commit_transaction(self) -> None:
        deadline = time.monotonic() + self.commit_timeout_s
        while True:
            try:
                self._p.commit_transaction(max(0.1, deadline - time.monotonic()))
                return
            except KafkaException as e:
                err = e.args[0]
                if err.txn_requires_abort():
                    cause = self._outcome.exception or kafka_python_error(err)
                    if self._abort():
                        raise TransactionAborted(cause) from None
                    raise cause from None  # not aborted: the commit may have landed
                if err.retriable() and time.monotonic() < deadline:
                    continue  # librdkafka resumes the commit where it was
                raise kafka_python_error(err) from None

    def poll(self, timeout: float = 0.0) -> None:
        """Serve librdkafka's callbacks (statistics, errors, logs) while the lane has no work."""
        if self._p is not None:
            self._p.poll(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Drop what is queued, then close on a helper thread waited for ``timeout`` at most."""
        if self._stats is not None:
            self._stats.close()  # its series go, unless a newer producer of the lane replaced them
        p, self._p = self._p, None
        if p is None:
            return
        try:
            p.purge()
            p.flush(0)
        except Exception as err:  # noqa: BLE001 - a fenced or fatal producer is dropped anyway
            log.debug("purging a producer raised %r", err)

        def close() -> None:
            try:
                p.close()
            except Exception as err:  # noqa: BLE001
                log.debug("closing a producer raised %r", err)

        t = threading.Thread(target=close, name="gateway-librdkafka-close", daemon=True)
        t.start()
        t.join(timeout if timeout else 0.0)

    # -- helpers ----------------------------------------------------------------------------
    def _abort(self) -> bool:
        """True if the transaction was aborted (certain: nothing of it is committed)."""
        try:
            self._p.abort_transaction(self.init_timeout_s)
        except KafkaException as e:  # the lane discards this producer; a new one fences it
            log.debug("abort_transaction raised %r", e)
            return False
        return True

    def _refresh_partitions(self) -> None:
        self._metadata_at = time.monotonic()
        try:
            md = self._p.list_topics(self.topic, timeout=self.init_timeout_s)
        except KafkaException as e:  # kept: the partitioner falls back to librdkafka's (same hash)
            log.debug("partitions of %s not known: %r", self.topic, e)
            return
        t = md.topics.get(self.topic)
        if t is not None and t.error is None and t.partitions:
            self._metadata.by_topic[self.topic] = set(t.partitions)


def rdkafka_config(bootstrap: str, transactional_id: str, transaction_timeout_ms: int, max_request_bytes: int,
                   timeout_s: float, statistics_interval_ms: int = 0) -> dict:  # fmt: skip
    """librdkafka's settings equal to the kafka-python producer's of the sender.

    ``statistics_interval_ms``: how often librdkafka's statistics are exported as the lane's
    Prometheus metrics (0: never).
    """
    timeout_ms = int(timeout_s * 1000)
    return {
        "bootstrap.servers": bootstrap,
        "client.id": f"learnpulse-gateway-{transactional_id}",
        "transactional.id": transactional_id,
        "transaction.timeout.ms": transaction_timeout_ms,
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": "lz4",
        # flush() sends at once whatever lingers: group commit already batches.
        "linger.ms": 5,
        "batch.size": 512 * 1024,
        "message.max.bytes": max_request_bytes,
        # Short backoff: the coordinator answers CONCURRENT_TRANSACTIONS just after a commit.
        "retry.backoff.ms": 5,
        "request.timeout.ms": timeout_ms,
        # A record not delivered by then fails its transaction (<= transaction.timeout.ms).
        "message.timeout.ms": min(timeout_ms + 1000, transaction_timeout_ms),
        # Java's (and kafka-python's) key hash: the fallback when the partitions are not known.
        "partitioner": "murmur2_random",
        "log_level": 4,
        "statistics.interval.ms": statistics_interval_ms,
    }
