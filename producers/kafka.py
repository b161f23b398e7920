"""The one kafka-python producer set-up every producer uses.

Idempotent, ``acks=all``, lz4-compressed, keyed per learner. Delivery failures are
surfaced: :meth:`StatementProducer.flush` raises if any send failed, so no caller can
report success for a statement Kafka did not acknowledge.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from kafka import KafkaProducer
from kafka.errors import KafkaError
from kafka.partitioner.default import murmur2

from schemas import metrics
from schemas.envelope import StatementEnvelope

log = logging.getLogger("learnpulse.producer")


class DeliveryFailed(Exception):
    """Kafka did not acknowledge one or more messages."""


@dataclass(frozen=True)
class ProducerParameters:
    bootstrap: str
    topic: str
    stage: str
    linger_ms: int = 10
    batch_bytes: int = 512 * 1024
    compression: str = "lz4"


class KeyPartitioner:
    """The partition kafka-python's default partitioner gives a key, with each key's hash remembered.

    The default partitioner hashes the key (pure-Python murmur2) and sorts the topic's
    partitions on every send: a sixth of a producer thread's CPU for our ~13 KB envelopes.
    Learners recur, so the hash is kept per key; the result is the same partition
    (``murmur2(key) & 0x7fffffff`` modulo the partition count, over the sorted ids), which
    the streams app and any other client of the topic also compute.
    """

    def __init__(self, max_keys: int = 200_000) -> None:
        self.max_keys = max_keys
        self._hashes: dict[bytes, int] = {}
        self._known: set[int] | None = None
        self._sorted: list[int] = []

    def partition(self, producer: KafkaProducer, topic: str, key: bytes) -> int | None:
        """The key's partition, or None when the topic's partitions are not known yet (then
        ``send`` without a partition: kafka-python waits for metadata its own way)."""
        # kafka-python's cluster metadata: known partitions without waiting (a producer
        # without it, or a topic not known yet, is left to kafka-python's own partitioner).
        metadata = getattr(producer, "_metadata", None)
        parts = metadata.partitions_for_topic(topic) if metadata is not None else None
        if not parts:
            return None
        if parts != self._known:
            self._known = set(parts)
            self._sorted = sorted(parts)
        h = self._hashes.get(key)
        if h is None:
            if len(self._hashes) >= self.max_keys:
                self._hashes.clear()
            h = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
        return self._sorted[h % len(self._sorted)]


class StatementProducer:
    """Sends envelopes to ``xapi.statements`` and tracks their acknowledgements."""

    def __init__(self, params: ProducerParameters) -> None:
        self.params = params
        self._producer = KafkaProducer(
            bootstrap_servers=params.bootstrap,
            client_id=f"learnpulse-{params.stage}",
            acks="all",
            enable_idempotence=True,
            compression_type=params.compression,
            linger_ms=params.linger_ms,
            batch_size=params.batch_bytes,
            max_request_size=4 * 1024 * 1024,
            retries=2**31 - 1,  # with idempotence, retries cannot duplicate or reorder
            delivery_timeout_ms=120_000,
        )
        self._failures: list[BaseException] = []
        self._partitioner = KeyPartitioner()
        self._out = metrics.MESSAGES_OUT.labels(params.stage, params.topic)
        self._statements = metrics.STATEMENTS_OUT.labels(params.stage)
        self._failed_statements = metrics.STATEMENTS_FAILED.labels(params.stage)
        # Callbacks run on kafka-python's I/O thread.
        self._lock = threading.Lock()
        self.acked_statements = 0

    def send(self, envelope: StatementEnvelope):
        """Queue one envelope; returns the kafka-python future (see :meth:`send_encoded`)."""
        return self.send_encoded(envelope, envelope.encode())

    def send_encoded(self, envelope: StatementEnvelope, value: bytes):
        """Queue ``envelope`` whose encoding is ``value``; returns the kafka-python future.

        Raises :class:`DeliveryFailed` first if an earlier message already failed, so a
        long-running producer stops at the first loss instead of at its final flush.
        """
        self.check()
        key = envelope.key
        partition = self._partitioner.partition(self._producer, self.params.topic, key)
        if partition is None:
            future = self._producer.send(self.params.topic, key=key, value=value)
        else:
            future = self._producer.send(self.params.topic, key=key, value=value, partition=partition)
        n = len(envelope.entries)
        future.add_callback(self._acked, n)
        future.add_errback(self._failed, n)
        return future

    def _acked(self, n: int, _metadata) -> None:
        with self._lock:
            self.acked_statements += n
        self._out.inc()
        self._statements.inc(n)

    def _failed(self, n: int, err: BaseException) -> None:
        log.error("Kafka did not acknowledge a message of %d statements: %r", n, err)
        metrics.ERRORS.labels(self.params.stage, "delivery").inc()
        self._failed_statements.inc(n)
        with self._lock:
            self._failures.append(err)

    def check(self) -> None:
        """Raise :class:`DeliveryFailed` if any message sent so far was not acknowledged."""
        if self._failures:
            with self._lock:
                failures, self._failures = self._failures, []
            raise DeliveryFailed(f"{len(failures)} messages not acknowledged by Kafka; first: {failures[0]!r}")

    def flush(self, timeout: float | None = 60) -> None:
        """Wait for every queued message; raise :class:`DeliveryFailed` if any failed."""
        try:
            self._producer.flush(timeout=timeout)
        except KafkaError as err:
            raise DeliveryFailed(f"Kafka did not acknowledge in {timeout}s: {err}") from err
        self.check()

    def close(self) -> None:
        self._producer.close(timeout=30)
