"""librdkafka's statistics of the gateway's lanes as Prometheus metrics (producers.gateway.rdkafka_stats),
on a statistics JSON captured from a real producer (data/rdkafka-stats.json, see data/README.md)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from producers.gateway.rdkafka import RdKafkaTransactionalProducer, rdkafka_config
from producers.gateway.rdkafka_stats import LaneStats, RdKafkaCollector, parse
from producers.gateway.sender import TransactionalParameters, TransactionalSender

from .fakes import FakeRdProducer

STATS = (Path(__file__).parent / "data" / "rdkafka-stats.json").read_text()
BROKER = "127.0.0.1:22038/1"


def _scrape(collector: RdKafkaCollector) -> dict[tuple[str, tuple], float]:
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples, text


def test_the_captured_statistics_give_the_figures_librdkafka_reported():
    s = parse(STATS)
    assert (s.queued_messages, s.queued_bytes, s.messages_sent, s.sent_bytes) == (0, 0, 900, 271800)
    assert (s.txn_state, s.idemp_state, s.epoch_count) == ("Ready", "Assigned", 1)
    by_name = {b.name: b for b in s.brokers}
    assert set(by_name) == {BROKER, "TxnCoordinator"}
    b = by_name[BROKER]
    assert b.up and (b.requests, b.retries, b.tx_errors, b.rx_errors, b.timeouts, b.disconnects) == (545, 0, 0, 0, 0, 0)
    assert (b.rtt_avg_s, b.rtt_p99_s) == (0.002427, 0.008703)  # microseconds in the JSON
    assert by_name["TxnCoordinator"].requests == 459


def test_an_interval_without_requests_has_no_round_trip_and_a_down_broker_is_0():
    quiet = STATS.replace('"cnt": 30', '"cnt": 0').replace('"state": "UP"', '"state": "DOWN"')
    s = parse(quiet)
    b = next(b for b in s.brokers if b.name == BROKER)
    assert b.rtt_avg_s is None and not b.up
    c = RdKafkaCollector()
    LaneStats("gw-0", c).receive(quiet)
    samples, _ = _scrape(c)
    assert ("learnpulse_gateway_kafka_broker_rtt_avg_seconds", (("broker", BROKER), ("lane", "gw-0"))) not in samples
    assert samples[("learnpulse_gateway_kafka_broker_up", (("broker", BROKER), ("lane", "gw-0")))] == 0


def test_a_quiet_interval_keeps_the_last_round_trip_measured_by_the_same_producer():
    # librdkafka measures round trips per statistics interval: a lane idle through the
    # last one would lose its series until its next request (a gauge that flickers, and
    # that a scrape after a quiet moment never sees). The last measured one stays.
    quiet = STATS.replace('"cnt": 30', '"cnt": 0')
    c = RdKafkaCollector()
    lane = LaneStats("gw-0", c)
    lane.receive(STATS)
    lane.receive(quiet)
    samples, _ = _scrape(c)
    on_broker = (("broker", BROKER), ("lane", "gw-0"))
    assert samples[("learnpulse_gateway_kafka_broker_rtt_avg_seconds", on_broker)] == 0.002427
    assert samples[("learnpulse_gateway_kafka_broker_rtt_p99_seconds", on_broker)] == 0.008703
    # A re-created producer of the lane has measured nothing yet: no round trip.
    LaneStats("gw-0", c).receive(quiet)
    samples, _ = _scrape(c)
    assert ("learnpulse_gateway_kafka_broker_rtt_avg_seconds", on_broker) not in samples


def test_the_exposition_types_totals_as_counters_labelled_by_lane_and_broker():
    c = RdKafkaCollector()
    LaneStats("gw-0", c).receive(STATS)
    samples, text = _scrape(c)
    lane = (("lane", "gw-0"),)
    on_broker = (("broker", BROKER), ("lane", "gw-0"))
    assert "# TYPE learnpulse_gateway_kafka_requests_total counter" in text
    assert "# TYPE learnpulse_gateway_kafka_queued_messages gauge" in text
    assert samples[("learnpulse_gateway_kafka_messages_sent_total", lane)] == 900
    assert samples[("learnpulse_gateway_kafka_sent_bytes_total", lane)] == 271800
    assert samples[("learnpulse_gateway_kafka_queued_messages", lane)] == 0
    assert samples[("learnpulse_gateway_kafka_queued_bytes", lane)] == 0
    assert samples[("learnpulse_gateway_kafka_requests_total", on_broker)] == 545
    assert samples[("learnpulse_gateway_kafka_request_retries_total", on_broker)] == 0
    assert samples[("learnpulse_gateway_kafka_broker_errors_total", (("broker", BROKER), ("kind", "timeout"),
                                                                     ("lane", "gw-0")))] == 0  # fmt: skip
    assert samples[("learnpulse_gateway_kafka_broker_up", on_broker)] == 1
    assert samples[("learnpulse_gateway_kafka_broker_rtt_avg_seconds", on_broker)] == 0.002427
    assert samples[("learnpulse_gateway_kafka_broker_rtt_p99_seconds", on_broker)] == 0.008703
    assert samples[("learnpulse_gateway_kafka_transaction_state", (("lane", "gw-0"), ("state", "Ready")))] == 1
    assert samples[("learnpulse_gateway_kafka_idempotence_state", (("lane", "gw-0"), ("state", "Assigned")))] == 1
    assert samples[("learnpulse_gateway_kafka_producer_epochs_total", lane)] == 1


def test_a_bad_statistics_json_is_skipped_at_debug_and_the_last_good_one_kept(caplog):
    c = RdKafkaCollector()
    stats = LaneStats("gw-0", c)
    stats.receive(STATS)
    with caplog.at_level(logging.DEBUG, logger="learnpulse.gateway.librdkafka"):
        stats.receive("{not json")
        stats.receive('{"brokers": {}}')  # no msg_cnt
    assert len([r for r in caplog.records if "not read" in r.getMessage()]) == 2
    assert all(r.levelno == logging.DEBUG for r in caplog.records)
    assert c.lanes()["gw-0"].messages_sent == 900


def test_a_lane_keeps_one_series_set_across_producers_and_loses_it_when_closed():
    c = RdKafkaCollector()
    old = LaneStats("gw-0", c)
    old.receive(STATS)
    new = LaneStats("gw-0", c)  # the lane's producer re-created: same label, overwritten
    new.receive(STATS.replace('"txmsgs": 900', '"txmsgs": 3'))
    old.close()  # the discarded producer closes after its successor reported: the lane stays
    old.receive(STATS)  # a late report of the closed one is ignored
    assert list(c.lanes()) == ["gw-0"] and c.lanes()["gw-0"].messages_sent == 3
    new.close()
    assert c.lanes() == {}
    samples, _ = _scrape(c)
    assert not [k for k in samples if ("lane", "gw-0") in k[1]]


def test_the_adapter_sets_the_callback_only_with_an_interval():
    confs = []

    def inner(conf):
        confs.append(conf)
        return FakeRdProducer(conf, lambda _r: None)

    conf = rdkafka_config("k:9092", "gw-0", 60_000, 1 << 20, 10, statistics_interval_ms=15_000)
    assert conf["statistics.interval.ms"] == 15_000
    p = RdKafkaTransactionalProducer(conf, "t", init_timeout_s=1, commit_timeout_s=1, producer_class=inner)
    assert confs[-1]["stats_cb"] == p._stats.receive
    p.close(1)
    assert p._stats.closed
    RdKafkaTransactionalProducer(rdkafka_config("k:9092", "gw-0", 60_000, 1 << 20, 10), "t", init_timeout_s=1,
                                 commit_timeout_s=1, producer_class=inner)  # fmt: skip
    assert "stats_cb" not in confs[-1] and confs[-1]["statistics.interval.ms"] == 0


def test_an_idle_lane_serves_its_producers_callbacks():
    polled = threading.Event()

    class Polled(FakeRdProducer):
        def poll(self, timeout=None):
            polled.set()
            return 0

    def factory(_tid):
        return RdKafkaTransactionalProducer({}, "t", init_timeout_s=1, commit_timeout_s=1,
                                            producer_class=lambda conf: Polled(conf, lambda _r: None))  # fmt: skip

    sender = TransactionalSender(TransactionalParameters("k:9092", "t", "gw"), producer_factory=factory, lanes=1)
    sender.start()
    try:
        assert polled.wait(60)  # no request at all: librdkafka's queue is still served
    finally:
        sender.close()
