"""`learnpulse notify` against the real broker and real HTTP receivers (aiohttp, loopback).

AlertRecords are produced to the test's own ``learnpulse.alerts`` topic, the notifier runs
as its own process, and the receivers record every request they get: the order, the
Idempotency-Key, the signature; failures (503, kill -9) must lose nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest
from aiohttp import web
from kafka import KafkaConsumer, KafkaProducer

from learnpulse.settings import KafkaSettings, NotifierSettings, Settings, WebhookSettings
from schemas.records import AlertRecord
from schemas.topics import Topic
from sinks.notifier import SIGNATURE_HEADER, verify_signature
from tests.conftest import free_port, wait_for, free_port_block

SECRET = "s3cret-for-tests"
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
HOUR = 3_600_000


# -- a real webhook receiver ---------------------------------------------------------------
@dataclass
class Received:
    at: float
    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class Receiver:
    """An aiohttp server on a free loopback port, in its own thread, recording every request.

    ``status`` decides the answer (settable while running); ``delay_s`` slows each answer;
    a body larger than ``max_body`` is refused with 413 (aiohttp's own limit, 1 MiB by default).
    """

    status: int = 200
    delay_s: float = 0.0
    max_body: int = 1024**2
    requests: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.port = free_port()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def _run(self) -> None:
        async def handle(request: web.Request) -> web.Response:
            body = await request.read()
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            status = self.status
            with self._lock:
                self.requests.append(Received(time.monotonic(), dict(request.headers), body, status))
            return web.Response(status=status, text="ok" if status < 300 else "unavailable")

        app = web.Application(client_max_size=self.max_body)
        app.router.add_post("/{tail:.*}", handle)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())

    def start(self) -> Receiver:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.requests)

    def accepted(self) -> list[Received]:
        return [r for r in self.snapshot() if 200 <= r.status < 300]

    def accepted_keys(self) -> list[str]:
        return [r.headers["Idempotency-Key"] for r in self.accepted()]


@pytest.fixture
def receiver():
    started: list[Receiver] = []

    def make(**kw) -> Receiver:
        r = Receiver(**kw).start()
        started.append(r)
        return r

    yield make
    for r in started:
        r.stop()


# -- helpers ---------------------------------------------------------------------------------
def notifier_settings(tmp_path: Path, kafka: KafkaSettings, notifier: NotifierSettings) -> Settings:
    return Settings(home=tmp_path / "home", kafka=kafka, metrics_port_base=free_port_block(16), notifier=notifier)


def alerts_for(cohorts: int, schools: int = 3) -> list[AlertRecord]:
    """A fired record per cohort, then a resolved record per cohort (same alert_id)."""
    fired = []
    for c in range(cohorts):
        at = T0 + c * HOUR
        fired.append(AlertRecord(f"{c:04d}" + "a" * 28, f"school-{c % schools:03d}", "Algebra I", f"C{c}", "fired",
                                 at, at, 30, 14, 0.466667, 0.4, ("p1", "p2"), at))  # fmt: skip
    resolved = [
        dataclasses.replace(
            f,
            state="resolved",
            at_ms=f.at_ms + 5 * HOUR,
            share=0.2,
            disengaged=6,
            threshold=0.25,
            version=f.at_ms + 5 * HOUR,
        )
        for f in fired
    ]
    return fired + resolved


def key_of(rec: AlertRecord) -> str:
    return f"{rec.alert_id}:{rec.state}"


def produce(kafka: KafkaSettings, values: list[tuple[bytes, bytes]]) -> None:
    p = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all", enable_idempotence=True)
    topic = Topic.ALERTS.physical(kafka.topic_prefix)
    for key, value in values:
        p.send(topic, key=key, value=value)
    p.flush(30)
    p.close()


def produce_alerts(kafka: KafkaSettings, recs: list[AlertRecord]) -> None:
    produce(kafka, [(f"{r.school}|{r.course}|{r.cohort}".encode(), r.encode()) for r in recs])


def deadletters(kafka: KafkaSettings) -> list:
    c = KafkaConsumer(
        Topic.DEADLETTER.physical(kafka.topic_prefix),
        bootstrap_servers=kafka.bootstrap_servers,
        auto_offset_reset="earliest",
        consumer_timeout_ms=3000,
        group_id=None,
    )
    try:
        return list(c)
    finally:
        c.close()


def scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            return resp.read().decode()
    except OSError:
        return ""


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")):
            series, value = line.rsplit(" ", 1)
            if all(f'{k}="{v}"' in series for k, v in labels.items()):
                total += float(value)
    return total


def alive(proc) -> bool:
    if proc.popen.poll() is not None:
        pytest.fail(f"notifier exited {proc.popen.returncode}:\n{proc.tail()}")
    return True


# -- tests -------------------------------------------------------------------------------------
@pytest.mark.kafka
def test_notifier_webhook_delivers_every_alert_in_order_signed_and_dead_letters_poison(
    kafka, spawn, receiver, tmp_path
):
    staff, school1 = receiver(), receiver()
    settings = notifier_settings(
        tmp_path,
        kafka,
        NotifierSettings(
            webhooks=[
                WebhookSettings(url=staff.url, secret=SECRET, name="staff"),
                WebhookSettings(url=school1.url, schools=["school-001"], name="school-001"),
            ],
            retry_initial_s=0.2,
            retry_max_s=1.0,
        ),
    )
    recs = alerts_for(6)
    poison = b'{"alert_id": "broken", "state": "fired"'
    values = [(f"{r.school}|{r.course}|{r.cohort}".encode(), r.encode()) for r in recs]
    # A poison record in the middle, and the stream processor's re-send of a record after a restart.
    values.insert(5, (b"school-000|Algebra I|C0", poison))
    values.insert(3, values[2])
    produce(kafka, values)

    proc = spawn(["notify"], settings, "notify")
    wait_for(lambda: alive(proc) and len(staff.accepted()) >= len(recs), 60, "every alert at the staff webhook")

    got = staff.accepted()
    assert [r.headers["Idempotency-Key"] for r in got] == [key_of(r) for r in recs]  # all, once, in order
    for r, rec in zip(got, recs, strict=True):
        assert verify_signature(SECRET.encode(), r.body, r.headers[SIGNATURE_HEADER])
        doc = orjson.loads(r.body)
        assert AlertRecord.decode(orjson.dumps(doc["alert"])) == rec
        assert doc["summary"].startswith(f"{rec.school} / Algebra I / cohort {rec.cohort}: ")
        assert r.headers["Content-Type"] == "application/json"
    # Per-school routing: the second webhook gets only school-001, unsigned.
    wanted = [key_of(r) for r in recs if r.school == "school-001"]
    wait_for(lambda: len(school1.accepted()) >= len(wanted), 30, "school-001 alerts at its webhook")
    assert school1.accepted_keys() == wanted
    assert all(SIGNATURE_HEADER not in r.headers for r in school1.accepted())

    dead = wait_for(lambda: [m for m in deadletters(kafka) if m.value == poison], 30, "the poison record dead-lettered")
    headers = {k: v.decode() for k, v in dead[0].headers}
    assert headers["stage"] == "notifier"
    assert headers["rule"] == "alert.json"
    assert "not JSON" in headers["reason"]
    assert dead[0].key == b"school-000|Algebra I|C0"

    text = wait_for(lambda: scrape(settings.metrics_port_for(6)), 10, "notifier /metrics")
    assert metric(text, "learnpulse_notifier_delivered_total", target="staff", state="fired") == 6
    assert metric(text, "learnpulse_notifier_delivered_total", target="staff", state="resolved") == 6
    assert metric(text, "learnpulse_notifier_skipped_total", reason="duplicate") == 1
    assert metric(text, "learnpulse_deadletter_total", stage="notifier", rule="alert.json") == 1
    # Nothing more arrives afterwards.
    time.sleep(1.5)
    assert len(staff.snapshot()) == len(recs)


@pytest.mark.kafka
def test_notifier_webhook_503_holds_alerts_with_backoff_then_delivers_all(kafka, spawn, receiver, tmp_path):
    hook = receiver(status=503)
    settings = notifier_settings(
        tmp_path,
        kafka,
        NotifierSettings(webhooks=[WebhookSettings(url=hook.url, secret=SECRET, name="staff")],
                         retry_initial_s=0.2, retry_max_s=1.0),
    )  # fmt: skip
    recs = alerts_for(4)
    produce_alerts(kafka, recs)
    proc = spawn(["notify"], settings, "notify")

    wait_for(lambda: alive(proc) and len(hook.snapshot()) >= 1, 60, "a first delivery attempt")
    first = hook.snapshot()[0].at
    time.sleep(5)
    attempts = hook.snapshot()
    assert hook.accepted() == []
    # Backoff 0.2, 0.4, 0.8, then 1 s: about 7 attempts in 5 s. A loop that did not wait
    # would make thousands; one that gave up would stop at 1.
    assert 3 <= len(attempts) <= 12, [round(a.at - first, 2) for a in attempts]
    # Always the same record (the first), never skipping ahead.
    assert {a.headers["Idempotency-Key"] for a in attempts} == {key_of(recs[0])}
    text = scrape(settings.metrics_port_for(6))
    assert metric(text, "learnpulse_notifier_retries_total", target="staff") >= 3
    assert metric(text, "learnpulse_consumer_lag", topic=Topic.ALERTS.physical(kafka.topic_prefix)) == len(recs)

    hook.status = 200
    wait_for(lambda: alive(proc) and len(hook.accepted()) >= len(recs), 30, "delivery resumed")
    assert hook.accepted_keys() == [key_of(r) for r in recs]
    for r in hook.accepted():
        assert verify_signature(SECRET.encode(), r.body, r.headers[SIGNATURE_HEADER])
    wait_for(lambda: metric(scrape(settings.metrics_port_for(6)), "learnpulse_consumer_lag") == 0, 20, "lag back to 0")


@pytest.mark.kafka
@pytest.mark.slow
def test_notifier_webhook_kill_9_mid_stream_loses_nothing_and_repeats_only_by_key(kafka, spawn, receiver, tmp_path):
    hook = receiver(delay_s=0.02)
    settings = notifier_settings(
        tmp_path, kafka, NotifierSettings(webhooks=[WebhookSettings(url=hook.url, secret=SECRET, name="staff")])
    )
    recs = alerts_for(100, schools=5)
    produce_alerts(kafka, recs)

    first = spawn(["notify"], settings, "notify-1")
    wait_for(lambda: alive(first) and len(hook.accepted()) >= 60, 60, "a third of the alerts delivered")
    first.kill()  # SIGKILL: no chance to finish or commit anything
    delivered_before = len(hook.accepted())
    assert delivered_before < len(recs)

    second = spawn(["notify"], settings, "notify-2")
    wait_for(lambda: alive(second) and len(set(hook.accepted_keys())) >= len(recs), 120, "every alert delivered")

    got = hook.accepted()
    keys = [r.headers["Idempotency-Key"] for r in got]
    assert set(keys) == {key_of(r) for r in recs}
    # First arrivals are in production order; a repeat is the same key with the same body.
    firsts: dict[str, bytes] = {}
    for r in got:
        firsts.setdefault(r.headers["Idempotency-Key"], r.body)
        assert r.body == firsts[r.headers["Idempotency-Key"]]
        assert verify_signature(SECRET.encode(), r.body, r.headers[SIGNATURE_HEADER])
    assert list(firsts) == [key_of(r) for r in recs]
    # At-least-once: repeats only around the kill (the records after the last commit).
    assert len(keys) - len(recs) <= 5, f"{len(keys) - len(recs)} repeats"
