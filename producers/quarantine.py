"""Keeps refused statements in the quarantine without ever holding up the caller.

:class:`QuarantineWriter.keep` only appends to a bounded in-memory queue and returns;
a background thread finds every violation of what was refused (``statement_violations``:
the caller already has the first one, and the rest costs time the caller must not pay),
and produces the record to ``xapi.quarantine``. Bounds, each counted in
``learnpulse_quarantine_dropped_total{reason}``:

- ``queue``: the queue is full (Kafka slow or down for long): the record is dropped;
- ``school-rate``: a school sent more than ``per_school_per_minute`` refused statements
  in the current minute: the rest of that minute is counted, not kept, so one broken
  producer cannot fill the quarantine (with the table's TTL, this bounds it per school);
- ``kafka``: Kafka refused the record.

Nothing here is on the path of a valid statement: the gateway calls :meth:`keep` only
for a request it answers 400.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson

from schemas import metrics
from schemas.errors import InvalidStatement
from schemas.quarantine import QuarantineRecord
from schemas.xapi.validate import statement_violations

log = logging.getLogger("learnpulse.quarantine")


def count_tolerated(stage: str, violations: list[tuple[str, ...]]) -> None:
    """One ``learnpulse_statements_tolerated_total`` per accepted statement and rule it breaks."""
    for rules in violations:
        for rule in rules:
            metrics.STATEMENTS_TOLERATED.labels(stage, rule).inc()


def all_violations(body: bytes, xapi_version: str, first: InvalidStatement | None) -> list[InvalidStatement]:
    """Every violation in a refused body: each statement's (``$[i]…`` paths in a batch).

    Falls back to ``first`` (what the caller refused it for) when the body is not a
    statement or a list of them, or when its statements are each valid (a batch rule).
    """
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        return [first or InvalidStatement("json.parse", f"not JSON: {err}")]
    found: list[InvalidStatement] = []
    try:
        if isinstance(doc, dict):
            found = statement_violations(doc, version=xapi_version)
        elif isinstance(doc, list):
            for i, item in enumerate(doc[:1000]):
                found.extend(statement_violations(item, version=xapi_version, path=f"$[{i}]"))
    except InvalidStatement as err:  # version.header
        found = [err]
    if first is not None and not any((v.rule, v.path) == (first.rule, first.path) for v in found):
        found.insert(0, first)
    return found or ([first] if first is not None else [])


class QuarantineWriter:
    """Bounded, non-blocking hand-off of refused statements to ``xapi.quarantine``.

    ``send(topic, key, value)`` is a Kafka producer's send (kafka-python: returns a
    future); ``clock_ms`` gives epoch ms.
    """

    def __init__(
        self,
        send: Callable[[bytes, bytes], Any],
        stage: str,
        max_queue: int = 10_000,
        per_school_per_minute: int = 6_000,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        flush: Callable[[], None] | None = None,
    ) -> None:
        self._send = send
        self._flush = flush
        self.stage = stage
        self.max_queue = max_queue
        self.per_school_per_minute = per_school_per_minute
        self.clock_ms = clock_ms
        self._queue: collections.deque = collections.deque()
        self._ready = threading.Condition()
        self._minute = -1
        self._per_school: dict[str, int] = {}
        self._closed = False
        self._busy = 0
        self.on_close: Callable[[], None] | None = None
        self._thread = threading.Thread(target=self._run, name=f"quarantine-{stage}", daemon=True)
        self._thread.start()

    def keep(
        self, school: str, credential: str, xapi_version: str, body: bytes, first: InvalidStatement | None,
        received_ms: int | None = None,
    ) -> bool:  # fmt: skip
        """Queue a refused body with the violation it was refused for; never blocks. False if dropped."""
        received = self.clock_ms() if received_ms is None else received_ms
        minute = received // 60_000
        with self._ready:
            if minute != self._minute:
                self._minute, self._per_school = minute, {}
            n = self._per_school.get(school, 0)
            if n >= self.per_school_per_minute:
                metrics.QUARANTINE_DROPPED.labels(self.stage, "school-rate").inc()
                return False
            if len(self._queue) >= self.max_queue or self._closed:
                metrics.QUARANTINE_DROPPED.labels(self.stage, "queue").inc()
                return False
            self._per_school[school] = n + 1
            self._queue.append((school, credential, xapi_version, bytes(body), first, received))
            self._ready.notify()
        return True

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._queue and not self._closed:
                    self._ready.wait()
                if not self._queue:
                    return
                item = self._queue.popleft()
                self._busy += 1
            try:
                self._produce(*item)
            finally:
                with self._ready:
                    self._busy -= 1
                    self._ready.notify_all()

    def _produce(
        self, school: str, credential: str, xapi_version: str, body: bytes, first: InvalidStatement | None,
        received: int,
    ) -> None:  # fmt: skip
        try:
            reasons = all_violations(body, xapi_version, first)
            record = QuarantineRecord.new(school, credential, self.stage, received, xapi_version, body, reasons)
            future = self._send(record.key, record.encode())
            if hasattr(future, "add_errback"):
                future.add_errback(self._failed)
            metrics.QUARANTINED.labels(self.stage, record.rules[0] if record.rules else "unknown").inc()
        except Exception as err:  # noqa: BLE001 - a broken record must not stop the thread
            self._failed(err)

    def _failed(self, err: BaseException) -> None:
        log.warning("quarantine record not kept: %r", err)
        metrics.QUARANTINE_DROPPED.labels(self.stage, "kafka").inc()

    def drain(self, timeout_s: float = 10.0) -> bool:
        """Wait until every queued record was handed to Kafka (and flushed); True if done."""
        deadline = time.monotonic() + timeout_s
        with self._ready:
            while self._queue or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._ready.wait(left)
        if self._flush is not None:
            self._flush()
        return True

    def close(self, timeout_s: float = 10.0) -> None:
        self.drain(timeout_s)
        with self._ready:
            self._closed = True
            self._ready.notify_all()
        self._thread.join(timeout_s)
        if self.on_close is not None:
            self.on_close()


def kafka_quarantine_writer(bootstrap: str, topic: str, stage: str, **kw: Any) -> tuple[QuarantineWriter, Any]:
    """A writer with its own kafka-python producer; (writer, holder of the producer).

    The producer is made on the first record, in the writer's thread: a process whose
    Kafka is down at start still starts (and its valid traffic never waits for this one).
    """
    from kafka import KafkaProducer

    holder: dict[str, Any] = {}

    def producer() -> Any:
        if "p" not in holder:
            holder["p"] = KafkaProducer(
                bootstrap_servers=bootstrap, acks="all", linger_ms=20, compression_type="lz4",
                # Only the writer's thread ever waits on Kafka; bounded so close() is too.
                max_block_ms=5_000, request_timeout_ms=10_000, max_request_size=1_048_576,
            )  # fmt: skip
        return holder["p"]

    def send(key: bytes, value: bytes) -> Any:
        return producer().send(topic, key=key, value=value)

    def flush() -> None:
        if "p" in holder:
            holder["p"].flush(10)

    writer = QuarantineWriter(send, stage, flush=flush, **kw)
    writer.on_close = lambda: holder["p"].close(5) if "p" in holder else None
    return writer, holder
