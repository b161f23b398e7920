"""One Kafka consumer loop for the consumers of ``sinks/``: the ClickHouse sinks and the alert notifier.

Shaped like the processing strategies of getsentry/arroyo: :class:`KafkaLoop` owns
everything Kafka — the consumer (manual commits, ``read_committed``, cooperative
rebalancing), polling, pausing for backpressure, commits, rebalances, the dead-letter
producer with its storm limit, lag metrics, a stalled-membership watch and shutdown —
and hands the records to a pluggable :class:`Step` that does the work (the sink's
batching ClickHouse writer, the notifier's per-alert HTTP delivery). A step commits
the offsets it has finished through :meth:`KafkaLoop.commit`, as soon as they are
finished, and writes what it cannot process through :class:`DeadLetters`.

One round (:meth:`KafkaLoop.run_once`):

1. ``step.ready()``: False when the step is full (e.g. a batch is being written and the
   next one is due); the round then fetches nothing (memory stays bounded).
2. ``consumer.poll(step.timeout_s())``; each partition's records go to ``step.submit``.
3. the group-membership watch (a consumer stuck in a rebalance is replaced);
4. ``step.poll()``: the work that is due, committing what it finished;
5. backpressure: the partitions ``step.blocked()`` names are paused, the others resumed;
6. lag, every ``lag_interval_s`` (for steps that publish no progress of their own).

Rebalances: kafka-python 3.0 runs the listener on its network thread while ``poll()``
blocks the loop, and forbids blocking calls there, so nothing is committed in it. Offsets
are committed in the round that finishes them, so at a revocation a step holds no
finished-but-uncommitted records except a commit Kafka refused (that step's records are
already written and the new owner's replay rewrites or re-delivers them idempotently).
The listener tells the step which partitions it lost (``revoked``, also for ``lost``),
which it got (``assigned``; partitions of a blocked step are paused on arrival), and
seeks a partition handed straight back (an eager rebalance keeps its fetch position) to
the first offset the step had dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
from kafka.errors import KafkaError
from kafka.structs import MemberState, OffsetAndMetadata

from schemas import metrics
from schemas.deadletter import DeadLetter, source_of
from schemas.topics import DEADLETTER_MAX_MESSAGE_BYTES

from .errors import DeadLetterUndelivered
from .storm import StormGuard

log = logging.getLogger("learnpulse.kafkaloop")
# Least pause between polls while the broker cannot be reached (see KafkaLoop._fetch).
OUTAGE_PAUSE_S = 0.2


@dataclass(frozen=True)
class LoopConfig:
    """What one loop consumes and how its consumer behaves.

    ``component`` labels metrics (``sink``, ``notifier``); ``stage`` is the dead-letter
    ``stage`` header (``sink:<name>``, ``notifier``); ``name`` is for logs.
    """

    name: str
    component: str
    stage: str
    client_id: str
    bootstrap: str
    topic: str
    group_id: str
    deadletter_topic: str
    max_poll_records: int = 2_000
    # A SIGKILLed member keeps its partitions until the session times out; short, since
    # heartbeats run on kafka-python's own thread (long work does not delay them).
    session_timeout_ms: int = 10_000
    cooperative: bool = True
    # Static membership (KIP-345); None: dynamic.
    group_instance_id: str | None = None
    # A rebalance that has not completed after this long is abandoned: the consumer is
    # closed and a new one joins (kafka-python 3.0.12 can leave a leader's SyncGroup
    # hanging until the member is evicted; subscribe_with_metadata avoids the known
    # trigger: this is the safety net).
    rebalance_stall_s: float = 30.0
    # Dead-letter storm limit (see sinks.storm); ``storm_what`` names the outcomes counted.
    storm_share: float = 0.5
    storm_min: int = 100
    storm_window: int = 1_000
    storm_what: str = "records"
    # Consumer lag measured by the loop this often; None: the step measures its own.
    lag_interval_s: float | None = None
    # A fetch waits on the broker for this many bytes or this long. kafka-python asks for
    # 1 byte: on live traffic (a transaction and its marker per request) every fetch then
    # came back with a record or two, and a sink's network thread spent ~0.1 of a core
    # at 100 statements/s. A sink writes a batch a second (its wait is a fifth of its
    # batch window: SinkConfig.loop_config); the notifier's alerts are rare.
    fetch_min_bytes: int = 1024 * 1024
    fetch_max_wait_ms: int = 200


class Step(Protocol):
    """The work a :class:`KafkaLoop` drives (arroyo's ProcessingStrategy, for kafka-python)."""

    def ready(self) -> bool:
        """False while the step is full: the round fetches nothing."""
        ...

    def timeout_s(self) -> float:
        """How long ``poll`` may block: until the step's next due work, at most."""
        ...

    def submit(self, tp: TopicPartition, records: list[Any]) -> None:
        """Take one partition's polled records, in offset order."""
        ...

    def poll(self) -> None:
        """Do the work that is due; commit what is finished through the loop."""
        ...

    def blocked(self, assigned: set[TopicPartition]) -> set[TopicPartition]:
        """Partitions not to fetch from (backpressure)."""
        ...

    def held(self, tp: TopicPartition) -> int | None:
        """The first offset of ``tp`` the step holds uncommitted, if any."""
        ...

    def revoked(self, tps: set[TopicPartition]) -> None:
        """Drop what is held of ``tps`` (never commit it): runs on the network thread."""
        ...

    def assigned(self, tps: set[TopicPartition]) -> None:
        """New partitions (may be empty): runs on the network thread."""
        ...

    def join(self) -> None:
        """Shutdown: finish and commit what is held, within the step's own time budget."""
        ...


ConsumerFactory = Callable[[LoopConfig, ConsumerRebalanceListener], Any]
ProducerFactory = Callable[[LoopConfig], Any]
EndsFactory = Callable[[LoopConfig], Any]


class KafkaLoop:
    """Drives one :class:`Step` from one topic (see the module docstring).

    ``consumer_factory``/``producer_factory``/``ends_factory`` exist for tests; by default
    they build kafka-python clients from the config.
    """

    def __init__(
        self,
        config: LoopConfig,
        step: Step,
        *,
        clock: Callable[[], float] = time.monotonic,
        consumer_factory: ConsumerFactory | None = None,
        producer_factory: ProducerFactory | None = None,
        ends_factory: EndsFactory | None = None,
    ) -> None:
        self.config = config
        self.step = step
        self.clock = clock
        self._consumer_factory = consumer_factory or kafka_consumer
        self._producer_factory = producer_factory or kafka_producer
        self._ends_factory = ends_factory or kafka_end_reader
        self._ends_reader: Any = None
        self.consumer: Any = None
        self.deadletters: DeadLetters = None  # type: ignore[assignment]  # made in start()
        self.consumer_restarts = 0
        self._stop = threading.Event()
        self._paused: set[TopicPartition] = set()
        # First dropped offset of revoked partitions, sought to if they come straight back.
        self._rewind: dict[TopicPartition, int] = {}
        self._unstable_since: float | None = None
        self._next_lag = 0.0

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        """Create the clients (``run`` does; tests that drive ``run_once`` call it)."""
        c = self.config
        self.consumer = self._consumer_factory(c, _Listener(self))
        storm = StormGuard(c.storm_window, c.storm_min, c.storm_share, c.storm_what)
        self.deadletters = DeadLetters(self._producer_factory(c), c, storm)

    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop`` is set; then let the step finish what it holds, and close."""
        self._stop = stop
        self.start()
        try:
            while not stop.is_set():
                self.run_once()
            self.step.join()
        finally:
            self.consumer.close(autocommit=False)
            self.deadletters.close()
            if self._ends_reader is not None:
                self._ends_reader.close()

    def stopping(self) -> bool:
        """Whether the loop was asked to stop (a step ends long work early)."""
        return self._stop.is_set()

    def run_once(self) -> None:
        """One round (see the module docstring)."""
        if not self.step.ready():
            return
        self._apply_backpressure()  # before fetching: the step may have just become blocked
        polled = self._fetch()
        for tp, records in polled.items():
            if records:
                metrics.MESSAGES_IN.labels(self.config.component, tp.topic).inc(len(records))
                self.step.submit(tp, records)
        self._watch_membership(self.clock())
        self.step.poll()
        self._apply_backpressure()
        self._report_lag()

    def _fetch(self) -> dict[TopicPartition, list[Any]]:
        """``consumer.poll`` for at most the step's timeout. kafka-python 3 raises from it when
        the broker cannot be reached (the group coordinator's metadata refresh: connection
        refused, bootstrap timeout); that is an outage, not the sink's end: the round is empty,
        waits out its timeout and the next one polls again (the consumer reconnects). Errors
        that are not retriable (authorization, configuration) still end the sink."""
        timeout_s = self.step.timeout_s()
        try:
            return self.consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=self.config.max_poll_records)
        except KafkaError as err:
            if not getattr(err, "retriable", False):
                raise
            metrics.ERRORS.labels(self.config.component, "kafka_unreachable").inc()
            log.info("%s: Kafka not reachable, polling again: %s", self.config.name, err)
            # At least a moment: a step with work due asks for no wait, and an unreachable
            # broker refuses at once, so the loop would spin on the CPU for the whole outage.
            self._stop.wait(min(max(timeout_s, OUTAGE_PAUSE_S), 1.0))
            return {}

    # -- what steps call -------------------------------------------------------------
    def log_ends(self, tps: list[TopicPartition], timeout_ms: int) -> dict[TopicPartition, int]:
        """Each partition's high watermark: every record Kafka acknowledged is below it, those
        of transactions still open or whose markers are not yet written included.

        Not the consumer's ``end_offsets``: as a ``read_committed`` reader it gets the last
        stable offset, which stops at the first open transaction. A reader that reaches the
        stable offset has not read a transaction Kafka acknowledged before writing its markers
        (it does so for every commit), nor anything after a transaction left open (a producer
        killed mid-transaction, until its timeout). Having read up to the high watermark
        measured at a time, it has read everything acknowledged before that time.
        """
        if self._ends_reader is None:
            self._ends_reader = self._ends_factory(self.config)
        return self._ends_reader.end_offsets(tps, timeout_ms=timeout_ms)

    def commit(self, offsets: dict[TopicPartition, int]) -> KafkaError | None:
        """Commit ``offsets`` (next offset to read, per partition); the error if Kafka refused.

        ``CommitFailedError``: the group moved on (the partitions' next owner re-reads
        from the last commit). Any other KafkaError is transient (rebalance in progress,
        coordinator moving): the step may commit again after the next polls.
        """
        if not offsets:
            return None
        try:
            self.consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()})
        except KafkaError as err:
            return err
        return None

    def rewind(self, tp: TopicPartition, offset: int) -> None:
        """Fetch ``tp`` again from ``offset`` (now, or when it is assigned again)."""
        try:
            self.consumer.seek(tp, offset)
        except ValueError:  # no longer assigned: its next owner starts at the commit
            self._rewind[tp] = offset

    # -- backpressure and lag --------------------------------------------------------
    def _apply_backpressure(self) -> None:
        assigned = set(self.consumer.assignment())
        self._paused &= assigned
        want = self.step.blocked(assigned) & assigned
        if want == self._paused:
            return
        pause, resume = want - self._paused, self._paused - want
        if pause:
            self.consumer.pause(*pause)
        if resume:
            self.consumer.resume(*resume)
        self._paused = set(want)

    def _report_lag(self) -> None:
        interval = self.config.lag_interval_s
        now = self.clock()
        if interval is None or now < self._next_lag:
            return
        self._next_lag = now + interval
        tps = list(self.consumer.assignment())
        if not tps:
            return
        try:
            ends = self.consumer.end_offsets(tps)
        except KafkaError:
            return
        for tp in tps:
            pos = self.step.held(tp)
            if pos is None:
                try:
                    pos = self.consumer.position(tp)
                except KafkaError:
                    continue
            lag = max(0, ends.get(tp, pos) - pos)
            metrics.CONSUMER_LAG.labels(self.config.group_id, tp.topic, str(tp.partition)).set(lag)

    # -- rebalances (kafka-python's network thread, inside poll) ---------------------
    def revoked(self, tps: set[TopicPartition]) -> None:
        for tp in tps:
            held = self.step.held(tp)
            if held is not None:
                self._rewind[tp] = held
        self._paused -= tps
        self.step.revoked(tps)
        if tps:
            log.info("%s: partitions revoked %s", self.config.name, sorted(p.partition for p in tps))

    def assigned(self, tps: set[TopicPartition]) -> None:
        for tp in tps:
            offset = self._rewind.pop(tp, None)
            if offset is not None:
                try:
                    self.consumer.seek(tp, offset)
                except ValueError:
                    pass
        # A rewind is for a partition handed straight back; later it would be stale.
        self._rewind.clear()
        self.step.assigned(tps)
        # Paused on arrival while the step is blocked. The others are resumed: kafka-python
        # keeps the paused flag of a partition revoked and handed straight back.
        blocked = tps & self.step.blocked(tps)
        if blocked:
            self.consumer.pause(*blocked)
        if tps - blocked:
            self.consumer.resume(*(tps - blocked))
        self._paused = (self._paused - tps) | blocked
        log.info("%s: partitions assigned %s", self.config.name, sorted(p.partition for p in tps))

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
            "%s: group membership %s for %.0fs; replacing the consumer (uncommitted records are re-read)",
            self.config.name, state, now - self._unstable_since,
        )  # fmt: skip
        metrics.ERRORS.labels(self.config.component, "rebalance_stalled").inc()
        self.revoked(set(self.consumer.assignment()))
        self._rewind.clear()  # the new consumer starts from the committed offsets
        self._paused.clear()
        old = self.consumer
        try:
            old.close(autocommit=False, timeout_ms=5_000)
        except KafkaError as err:
            log.info("%s: closing the stalled consumer: %s", self.config.name, err)
        self.consumer = self._consumer_factory(self.config, _Listener(self))
        self.consumer_restarts += 1
        self._unstable_since = None


class _Listener(ConsumerRebalanceListener):
    """Non-blocking: runs on kafka-python's IO thread (no commits here)."""

    def __init__(self, loop: KafkaLoop) -> None:
        self.loop = loop

    def on_partitions_revoked(self, revoked):
        self.loop.revoked(set(revoked))

    def on_partitions_assigned(self, assigned):
        self.loop.assigned(set(assigned))

    def on_partitions_lost(self, lost):
        self.loop.revoked(set(lost))


# -- dead letters -------------------------------------------------------------------------
@dataclass
class Pending:
    """A dead letter sent, not yet known to be held by Kafka."""

    tp: TopicPartition
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    future: Any = field(default=None, repr=False)


class DeadLetters:
    """The dead-letter producer: records in the :class:`~schemas.deadletter.DeadLetter` contract,
    counted against the storm limit (:class:`~sinks.errors.DeadLetterStorm` stops the loop)."""

    def __init__(self, producer: Any, config: LoopConfig, storm: StormGuard) -> None:
        self.producer = producer
        self.config = config
        self.storm = storm

    def passed(self) -> None:
        """A record (or delivery) went through: counts against a storm."""
        self.storm.passed()

    def _send(self, tp: TopicPartition, offset: int, key: bytes | None, value: bytes | None,
              rule: str, reason: str, target: str | None) -> Pending:  # fmt: skip
        self.storm.dead_lettered(reason)
        c = self.config
        headers = DeadLetter(rule, reason, source_of(tp.topic, tp.partition, offset), c.stage, target).headers()
        dl = Pending(tp, key, value or b"", headers)
        dl.future = self.producer.send(c.deadletter_topic, key=key, value=dl.value, headers=headers)
        return dl

    def send(self, tp: TopicPartition, offset: int, key: bytes | None, value: bytes | None,
             rule: str, reason: str, target: str | None = None) -> Pending:  # fmt: skip
        """Send without waiting; :meth:`settle` before committing past the record."""
        dl = self._send(tp, offset, key, value, rule, reason, target)
        metrics.DEADLETTERS.labels(self.config.component, rule).inc()
        log.warning("dead-lettered %s/%s/%s: %s", tp.topic, tp.partition, offset, reason)
        return dl

    def settle(self, pending: list[Pending]) -> None:
        """Wait for Kafka to hold every one of ``pending``; resend those that failed and raise."""
        if not pending:
            return
        self.producer.flush(timeout=30)
        failed = [dl for dl in pending if not dl.future.is_done or dl.future.failed()]
        for dl in failed:
            dl.future = self.producer.send(self.config.deadletter_topic, key=dl.key, value=dl.value, headers=dl.headers)
        if failed:
            raise DeadLetterUndelivered(f"{len(failed)} dead letters not acknowledged by Kafka; resent")

    def write(self, tp: TopicPartition, offset: int, key: bytes | None, value: bytes | None,
              rule: str, reason: str, target: str | None = None) -> bool:  # fmt: skip
        """Send and wait for Kafka; False if Kafka failed (the caller holds the record and retries)."""
        dl = self._send(tp, offset, key, value, rule, reason, target)
        try:
            dl.future.get(timeout=30)
        except KafkaError as err:
            metrics.ERRORS.labels(self.config.component, "deadletter").inc()
            log.warning("dead-letter write failed, will retry: %s", err)
            return False
        metrics.DEADLETTERS.labels(self.config.component, rule).inc()
        log.warning("dead-lettered %s/%s/%s: %s", tp.topic, tp.partition, offset, reason)
        return True

    def close(self) -> None:
        self.producer.close(timeout=10)


# -- kafka-python clients ------------------------------------------------------------
def kafka_consumer(c: LoopConfig, listener: ConsumerRebalanceListener) -> KafkaConsumer:
    extra: dict[str, Any] = {}
    if c.cooperative:
        # Only partitions that actually move are revoked.
        extra["partition_assignment_strategy"] = (CooperativeStickyAssignor,)
    consumer = KafkaConsumer(
        bootstrap_servers=c.bootstrap,
        group_id=c.group_id,
        client_id=c.client_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        # Producers may be transactional (the LRS gateway, the stream processor): never
        # read records of aborted transactions.
        isolation_level="read_committed",
        max_poll_records=c.max_poll_records,
        # Bounded fetch buffers: this plus what the step holds is the consumer's memory.
        fetch_max_bytes=16 * 1024 * 1024,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_min_bytes=c.fetch_min_bytes,
        fetch_max_wait_ms=c.fetch_max_wait_ms,
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


def kafka_end_reader(c: LoopConfig) -> KafkaConsumer:
    """A group-less ``read_uncommitted`` client that only asks for end offsets (:meth:`KafkaLoop.log_ends`)."""
    return KafkaConsumer(
        bootstrap_servers=c.bootstrap, client_id=f"{c.client_id}-ends", group_id=None, enable_auto_commit=False,
        isolation_level="read_uncommitted", metadata_max_age_ms=15_000,
    )  # fmt: skip


def kafka_producer(c: LoopConfig) -> KafkaProducer:
    return KafkaProducer(
        bootstrap_servers=c.bootstrap,
        client_id=f"{c.client_id}-dlq",
        acks="all",
        enable_idempotence=True,
        linger_ms=20,
        # A dead letter holds the largest record any consumed topic allows (schemas.topics).
        max_request_size=int(DEADLETTER_MAX_MESSAGE_BYTES),
    )


__all__ = ["DeadLetters", "KafkaLoop", "LoopConfig", "Pending", "Step", "kafka_consumer", "subscribe_with_metadata"]
