"""Alerts as large as the alerts topic allows (``schemas.topics.WORKER_RECORD_MAX_BYTES``:
one naming every disengaged learner of a cohort of up to ~100,000) on the real broker: the
alerts sink and the notifier read them whole, and when one must be dead-lettered (a webhook
refuses it, it breaks the contract) the dead letter holds it whole too and the records
after it go on.

Fetch sizes: the sinks fetch 4 MiB a partition and the notifier's rebuild reader 1 MiB
(kafka-python's default), yet a larger record reaches them whole: brokers answering Fetch
v3+ (KIP-74) return the first record batch of a fetch whole past those limits, and return
nothing rather than a truncated batch for a later partition (which the next fetch, with
that partition first, gets). Only a truncated batch would make aiokafka record
RecordTooLargeError and step past the offset. The first two tests keep that true here.
"""

from __future__ import annotations

import dataclasses
import random

import orjson
import pytest
from kafka import KafkaProducer

from learnpulse.settings import NotifierSettings, WebhookSettings
from schemas.records import AlertRecord
from schemas.topics import WORKER_RECORD_MAX_BYTES, WORKER_TOPIC_MAX_MESSAGE_BYTES, Topic
from tests.conftest import wait_for
from tests.integration.test_notifier_webhook import (  # noqa: F401 (receiver: a fixture)
    SECRET,
    alive,
    deadletters,
    notifier_settings,
    receiver,
)
from tests.integration.test_sinks_statements import running_sinks, wait_committed

T0 = 1_767_225_600_000
SINK_PARTITION_FETCH = 4 * 1024 * 1024  # sinks/kafkaloop.py's max_partition_fetch_bytes
PSEUDONYM_BYTES = 67  # 64 hex digits, quotes and a comma in the record's JSON


def large_alert(approx_bytes: int, alert_id: str = "big-" + "b" * 28) -> AlertRecord:
    """A fired alert naming enough random pseudonyms to weigh about ``approx_bytes``."""
    rng = random.Random(29)
    names = [f"{rng.getrandbits(256):064x}" for _ in range(approx_bytes // PSEUDONYM_BYTES)]
    return AlertRecord(alert_id, "s-1", "c-1", "k-big", "fired", T0, T0, len(names), len(names), 1.0, 0.4,
                       names, 1)  # fmt: skip


def small_alert() -> AlertRecord:
    return AlertRecord("small-" + "a" * 26, "s-1", "c-1", "k-small", "fired", T0, T0, 4, 2, 0.5, 0.4,
                       [f"{1:064x}", f"{2:064x}"], 1)  # fmt: skip


def publish(kafka, recs: list[AlertRecord]) -> list[int]:
    """Uncompressed, one record a request (the batch on the broker weighs the record); sizes."""
    p = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all", linger_ms=0,
                      max_request_size=int(WORKER_TOPIC_MAX_MESSAGE_BYTES))  # fmt: skip
    topic = Topic.ALERTS.physical(kafka.topic_prefix)
    try:
        for r in recs:
            p.send(topic, key=f"{r.school}|{r.course}|{r.cohort}".encode(), value=r.encode()).get(timeout=60)
    finally:
        p.close(10)
    return [len(r.encode()) for r in recs]


@pytest.mark.kafka
def test_alerts_sink_writes_an_alert_larger_than_its_partition_fetch(settings):
    big = large_alert(5 * 1024 * 1024)
    sizes = publish(settings.kafka, [big, small_alert()])
    assert SINK_PARTITION_FETCH < sizes[0] < WORKER_RECORD_MAX_BYTES
    with running_sinks(settings, ["alerts"]) as (ch, sinks):
        wait_committed(settings, sinks, "alerts", topic=Topic.ALERTS)
        assert ch.query(
            "SELECT alert_id, length(disengaged_learners) FROM {db}.alerts FINAL ORDER BY alert_id"
        ) == [(big.alert_id, big.learners), (small_alert().alert_id, 2)]


@pytest.mark.kafka
def test_notifier_delivers_an_alert_larger_than_a_fetch(kafka, spawn, receiver, tmp_path):  # noqa: F811
    hook = receiver(max_body=2 * WORKER_RECORD_MAX_BYTES)
    whole = WebhookSettings(url=hook.url, secret=SECRET, name="staff", max_learners=None)
    settings = notifier_settings(tmp_path, kafka, NotifierSettings(webhooks=[whole]))
    big = large_alert(5 * 1024 * 1024)
    assert publish(kafka, [big, small_alert()])[0] > SINK_PARTITION_FETCH
    proc = spawn(["notify"], settings, "notify")
    try:
        wait_for(lambda: alive(proc) and len(hook.accepted()) >= 2, 120, "both alerts delivered")
        alerts = [orjson.loads(r.body)["alert"] for r in hook.accepted()]
        assert [a["alert_id"] for a in alerts] == [big.alert_id, small_alert().alert_id]
        assert len(alerts[0]["disengaged_learners"]) == big.learners
    finally:
        assert proc.stop() == 0, proc.tail()


@pytest.mark.kafka
def test_notifier_names_a_thousand_learners_so_a_common_receiver_takes_a_large_alert(kafka, spawn, receiver, tmp_path):  # noqa: F811
    """A receiver with aiohttp's 1 MiB body limit and a 5 MiB alert: with the whole list the
    body is refused (413) and the alert dead-lettered, so staff hear nothing; by default a
    webhook body names the first 1,000 learners and counts the rest."""
    hook = receiver()
    settings = notifier_settings(
        tmp_path, kafka, NotifierSettings(webhooks=[WebhookSettings(url=hook.url, secret=SECRET, name="staff")])
    )
    big = large_alert(5 * 1024 * 1024)
    publish(kafka, [big, small_alert()])
    proc = spawn(["notify"], settings, "notify")
    try:
        wait_for(lambda: alive(proc) and len(hook.accepted()) >= 2, 120, "both alerts delivered")
        first = orjson.loads(hook.accepted()[0].body)
        assert first["alert"]["alert_id"] == big.alert_id
        assert first["alert"]["disengaged_learners"] == list(big.disengaged_learners[:1000])
        assert first["disengaged_learners_omitted"] == big.learners - 1000
        assert first["alert"]["disengaged"] == big.disengaged  # the figures stay whole
        assert deadletters(kafka) == []
    finally:
        assert proc.stop() == 0, proc.tail()


@pytest.mark.kafka
def test_notifier_dead_letters_a_refused_alert_of_the_largest_size_and_goes_on(kafka, spawn, receiver, tmp_path):  # noqa: F811
    """A webhook refuses a 15 MiB alert (413: its body limit is aiohttp's 1 MiB): the dead
    letter holds it whole and the next alert is delivered. Without room for it in the
    dead-letter topic and producer (8 MiB before), the notifier retried the dead letter for
    ever and delivered nothing after it."""
    hook = receiver()
    whole = WebhookSettings(url=hook.url, secret=SECRET, name="staff", max_learners=None)  # every name: 15 MiB
    settings = notifier_settings(tmp_path, kafka, NotifierSettings(webhooks=[whole]))
    big = large_alert(15 * 1024 * 1024)
    assert 8 * 1024 * 1024 < publish(kafka, [big, small_alert()])[0] < WORKER_RECORD_MAX_BYTES
    proc = spawn(["notify"], settings, "notify")
    try:
        wait_for(lambda: alive(proc) and len(hook.accepted()) >= 1, 120, "the alert after the refused one delivered")
        assert [orjson.loads(r.body)["alert"]["alert_id"] for r in hook.accepted()] == [small_alert().alert_id]
        (dead,) = deadletters(kafka)
        assert dead.value == big.encode()
        assert any(b"413" in value for _, value in dead.headers)  # the webhook's refusal, in the reason
    finally:
        assert proc.stop() == 0, proc.tail()


@pytest.mark.kafka
def test_alerts_sink_dead_letters_a_broken_alert_of_the_largest_size_and_goes_on(settings):
    broken = dataclasses.replace(large_alert(15 * 1024 * 1024), state="smouldering")
    assert 8 * 1024 * 1024 < publish(settings.kafka, [broken, small_alert()])[0] < WORKER_RECORD_MAX_BYTES
    with running_sinks(settings, ["alerts"]) as (ch, sinks):
        wait_committed(settings, sinks, "alerts", topic=Topic.ALERTS)
        assert ch.query("SELECT alert_id FROM {db}.alerts FINAL") == [(small_alert().alert_id,)]
    (dead,) = deadletters(settings.kafka)
    assert dead.value == broken.encode()

