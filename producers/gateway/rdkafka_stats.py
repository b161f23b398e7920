"""librdkafka's statistics of the gateway's lanes as Prometheus metrics.

Each lane's producer emits librdkafka's statistics JSON every ``statistics.interval.ms``
(setting ``gateway.kafka_statistics_interval_ms``, 0: none) to :meth:`LaneStats.receive`,
on the lane's thread inside a librdkafka call (flush, commit, or the idle poll of the
lane): it parses the few figures below into a :class:`Snapshot` and replaces the lane's
previous one (keeping the last round trip measured where the new interval had no request).
:class:`RdKafkaCollector` builds the metric families from the latest snapshot of each lane
when ``/metrics`` is scraped.

Why a collector and not ``Counter``/``Gauge`` objects: librdkafka reports cumulative
totals (requests, retries, errors since the producer was created). A ``Counter`` can only
be incremented, and a ``Gauge`` named ``*_total`` would be typed wrong for Prometheus, so
the totals are exposed as counters built at scrape time from the figures as reported. When
a lane's producer is discarded and re-created (after a failure) its totals start again at
zero: a counter reset, which ``rate()``/``increase()`` handle.

Labels: ``lane`` is the lane's transactional id (fixed for the life of the gateway, so a
re-created producer overwrites its predecessor's series), ``broker`` librdkafka's broker
name (``host:port/id``, or ``TxnCoordinator`` for the transaction coordinator's
connection). A lane's series are dropped when its producer closes and no other took its
place, so nothing grows without bound.
"""

from __future__ import annotations

import logging
import threading
from typing import NamedTuple

import orjson
from prometheus_client.core import REGISTRY, CounterMetricFamily, GaugeMetricFamily

log = logging.getLogger("learnpulse.gateway.librdkafka")


class BrokerFigures(NamedTuple):
    name: str
    up: bool
    requests: int  # tx: requests sent
    retries: int  # txretries
    tx_errors: int  # txerrs
    rx_errors: int  # rxerrs
    timeouts: int  # req_timeouts
    disconnects: int
    # Round trip of the requests of the interval (seconds); None: no request in it (the
    # collector then keeps the lane's last measured one).
    rtt_avg_s: float | None
    rtt_p99_s: float | None


class Snapshot(NamedTuple):
    queued_messages: int  # msg_cnt: produced, not yet acknowledged
    queued_bytes: int  # msg_size
    messages_sent: int  # txmsgs: records transmitted to brokers
    sent_bytes: int  # txmsg_bytes
    brokers: tuple[BrokerFigures, ...]
    # eos: present only for a transactional/idempotent producer.
    # (txn_stateage is not exported: librdkafka 2.x reports its monotonic clock's whole
    # reading, ts/1000, not the time since the state changed: 11,961 s at 5 s of age.)
    txn_state: str | None
    idemp_state: str | None
    epoch_count: int | None


def _rtt(b: dict) -> tuple[float | None, float | None]:
    rtt = b.get("rtt") or {}
    if not rtt.get("cnt"):
        return None, None  # librdkafka reports 0 for an interval without requests: not a round trip
    return rtt.get("avg", 0) / 1e6, rtt.get("p99", 0) / 1e6  # microseconds


def parse(stats: str | bytes) -> Snapshot:
    """The figures we export of one statistics JSON (raises on a malformed one)."""
    d = orjson.loads(stats)
    brokers = []
    for b in (d.get("brokers") or {}).values():
        avg, p99 = _rtt(b)
        brokers.append(BrokerFigures(
            name=str(b["name"]), up=b.get("state") == "UP", requests=int(b.get("tx", 0)),
            retries=int(b.get("txretries", 0)), tx_errors=int(b.get("txerrs", 0)), rx_errors=int(b.get("rxerrs", 0)),
            timeouts=int(b.get("req_timeouts", 0)), disconnects=int(b.get("disconnects", 0)), rtt_avg_s=avg,
            rtt_p99_s=p99,
        ))  # fmt: skip
    eos = d.get("eos") or {}
    return Snapshot(
        queued_messages=int(d["msg_cnt"]),
        queued_bytes=int(d["msg_size"]),
        messages_sent=int(d.get("txmsgs", 0)),
        sent_bytes=int(d.get("txmsg_bytes", 0)),
        brokers=tuple(sorted(brokers)),
        txn_state=eos.get("txn_state"),
        idemp_state=eos.get("idemp_state"),
        epoch_count=eos.get("epoch_cnt"),
    )


def _keep_measured_round_trips(snapshot: Snapshot, previous: Snapshot) -> Snapshot:
    """``snapshot`` with each broker's round trip of ``previous`` where its own interval had
    no request: the gauge is the last round trip measured, not absent whenever the lane
    was idle through the last statistics interval."""
    measured = {b.name: b for b in previous.brokers if b.rtt_avg_s is not None}
    if not measured:
        return snapshot
    brokers = tuple(
        b._replace(rtt_avg_s=measured[b.name].rtt_avg_s, rtt_p99_s=measured[b.name].rtt_p99_s)
        if b.rtt_avg_s is None and b.name in measured else b
        for b in snapshot.brokers
    )  # fmt: skip
    return snapshot._replace(brokers=brokers)


class RdKafkaCollector:
    """The latest snapshot of each lane, exposed as metric families at scrape time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # lane -> (owner, snapshot): owner is the LaneStats of the producer that sent it.
        self._lanes: dict[str, tuple[object, Snapshot]] = {}

    def put(self, lane: str, owner: object, snapshot: Snapshot) -> None:
        with self._lock:
            previous = self._lanes.get(lane)
            if previous is not None and previous[0] is owner:
                snapshot = _keep_measured_round_trips(snapshot, previous[1])
            self._lanes[lane] = (owner, snapshot)

    def forget(self, lane: str, owner: object) -> None:
        """Drop the lane's series if ``owner`` sent them (not a newer producer of the lane)."""
        with self._lock:
            if lane in self._lanes and self._lanes[lane][0] is owner:
                del self._lanes[lane]

    def lanes(self) -> dict[str, Snapshot]:
        with self._lock:
            return {lane: s for lane, (_owner, s) in self._lanes.items()}

    def describe(self):
        return list(self._families({}))

    def collect(self):
        return self._families(self.lanes())

    @staticmethod
    def _families(lanes: dict[str, Snapshot]):
        p = "learnpulse_gateway_kafka_"
        queued = GaugeMetricFamily(p + "queued_messages", "Records produced by a lane, not yet acknowledged by Kafka",
                                   labels=["lane"])  # fmt: skip
        queued_bytes = GaugeMetricFamily(p + "queued_bytes", "Bytes of the records a lane has queued", labels=["lane"])
        sent = CounterMetricFamily(p + "messages_sent", "Records a lane's producer sent to Kafka", labels=["lane"])
        sent_bytes = CounterMetricFamily(p + "sent_bytes", "Record bytes a lane's producer sent to Kafka",
                                         labels=["lane"])  # fmt: skip
        requests = CounterMetricFamily(p + "requests", "Requests a lane's producer sent to a broker",
                                       labels=["lane", "broker"])  # fmt: skip
        retries = CounterMetricFamily(p + "request_retries", "Requests a lane's producer sent to a broker again",
                                      labels=["lane", "broker"])  # fmt: skip
        errors = CounterMetricFamily(p + "broker_errors", "Errors of a lane's connection to a broker: "
                                     "tx (sending), rx (receiving), timeout (no answer in time)",
                                     labels=["lane", "broker", "kind"])  # fmt: skip
        disconnects = CounterMetricFamily(p + "broker_disconnects", "Connections of a lane to a broker that were lost",
                                          labels=["lane", "broker"])  # fmt: skip
        up = GaugeMetricFamily(p + "broker_up", "1 while a lane's connection to a broker is up",
                               labels=["lane", "broker"])  # fmt: skip
        rtt_avg = GaugeMetricFamily(p + "broker_rtt_avg_seconds", "Mean round trip of a lane's requests to a broker "
                                    "over the last statistics interval that had any",
                                    labels=["lane", "broker"])  # fmt: skip
        rtt_p99 = GaugeMetricFamily(p + "broker_rtt_p99_seconds", "99th percentile round trip of a lane's "
                                    "requests to a broker over the last statistics interval that had any",
                                    labels=["lane", "broker"])  # fmt: skip
        txn = GaugeMetricFamily(p + "transaction_state", "1 for a lane's current transaction state (librdkafka's)",
                                labels=["lane", "state"])  # fmt: skip
        idemp = GaugeMetricFamily(p + "idempotence_state", "1 for a lane's current idempotent producer state "
                                  "(librdkafka's)", labels=["lane", "state"])  # fmt: skip
        epochs = CounterMetricFamily(p + "producer_epochs", "Producer epochs a lane's producer was given (bumps "
                                     "after an abortable error)", labels=["lane"])  # fmt: skip
        for lane, s in sorted(lanes.items()):
            queued.add_metric([lane], s.queued_messages)
            queued_bytes.add_metric([lane], s.queued_bytes)
            sent.add_metric([lane], s.messages_sent)
            sent_bytes.add_metric([lane], s.sent_bytes)
            for b in s.brokers:
                requests.add_metric([lane, b.name], b.requests)
                retries.add_metric([lane, b.name], b.retries)
                errors.add_metric([lane, b.name, "tx"], b.tx_errors)
                errors.add_metric([lane, b.name, "rx"], b.rx_errors)
                errors.add_metric([lane, b.name, "timeout"], b.timeouts)
                disconnects.add_metric([lane, b.name], b.disconnects)
                up.add_metric([lane, b.name], 1 if b.up else 0)
                if b.rtt_avg_s is not None:
                    rtt_avg.add_metric([lane, b.name], b.rtt_avg_s)
                    rtt_p99.add_metric([lane, b.name], b.rtt_p99_s)
            if s.txn_state is not None:
                txn.add_metric([lane, s.txn_state], 1)
            if s.idemp_state is not None:
                idemp.add_metric([lane, s.idemp_state], 1)
            if s.epoch_count is not None:
                epochs.add_metric([lane], s.epoch_count)
        return [queued, queued_bytes, sent, sent_bytes, requests, retries, errors, disconnects, up, rtt_avg, rtt_p99,
                txn, idemp, epochs]  # fmt: skip


COLLECTOR = RdKafkaCollector()
REGISTRY.register(COLLECTOR)


class LaneStats:
    """The ``stats_cb`` of one lane's producer: keeps its latest snapshot in ``collector``."""

    __slots__ = ("lane", "collector", "closed")

    def __init__(self, lane: str, collector: RdKafkaCollector = COLLECTOR) -> None:
        self.lane = lane
        self.collector = collector
        self.closed = False

    def receive(self, stats: str) -> None:
        # On the lane's thread, inside a librdkafka call: never raises.
        if self.closed:
            return  # served by a discarded producer's last flush: a newer one may own the lane
        try:
            snapshot = parse(stats)
        except Exception as err:  # noqa: BLE001 - a statistics JSON we cannot read is skipped
            log.debug("librdkafka statistics of %s not read: %r", self.lane, err)
            return
        self.collector.put(self.lane, self, snapshot)

    def close(self) -> None:
        self.closed = True
        self.collector.forget(self.lane, self)
