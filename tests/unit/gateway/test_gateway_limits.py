"""Size limits that agree from HTTP to Kafka, failures that stay with the request that caused
them, and slow clients cut off (issue 11, items 2 and 7). The same on real Kafka:
tests/integration/test_gateway_isolation.py.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import orjson
import pytest
from kafka.errors import MessageSizeTooLargeError

from learnpulse.settings import GatewaySettings
from producers.gateway.app import ENVELOPE_MARGIN, GatewayConfig, check_limits_agree
from producers.gateway.sender import (
    KafkaUnavailable,
    RecordRefused,
    TransactionalParameters,
    TransactionalSender,
)
from schemas.envelope import StatementEntry, StatementEnvelope
from schemas.topics import Topic
from tests.conftest import wait_for

from .fakes import CLIENTS, FakeProducer, fake_factory
from .harness import Harness, new_id, statement


# -- limits agree ---------------------------------------------------------------------------
def test_default_limits_agree_from_http_body_to_the_kafka_topic():
    g = GatewaySettings()
    topic_max = int(Topic.STATEMENTS.spec.configs["max.message.bytes"])
    producer_max = TransactionalParameters("x", "t", "i").max_request_bytes
    assert producer_max == topic_max  # the producer never sends what the topic refuses
    assert g.max_statement_bytes + ENVELOPE_MARGIN <= producer_max  # a statement always fits a message
    assert g.max_statement_bytes <= g.max_body_bytes
    check_limits_agree(GatewayConfig(max_statement_bytes=g.max_statement_bytes), topic_max)
    with pytest.raises(ValueError, match="Kafka message limit"):
        check_limits_agree(GatewayConfig(max_statement_bytes=topic_max), topic_max)


def test_statement_over_its_limit_is_413_naming_that_limit_and_nothing_is_written():
    with Harness(GatewayConfig(max_statement_bytes=20_000)) as h:
        big = statement(result={"response": "x" * 30_000})
        r = h.post([statement(), big])
        assert r.status_code == 413, r.text
        err = r.json()["error"]
        assert err["rule"] == "statement.too-large"
        assert err["path"] == "$[1]"
        assert "20000 bytes per statement" in err["message"]
        assert h.committed == []
        r = h.post(statement(), key="key-a")
        assert r.status_code == 200


def test_request_body_413_names_the_body_limit():
    with Harness(GatewayConfig(max_body_bytes=5_000)) as h:
        r = h.post([statement() for _ in range(20)])
        assert r.status_code == 413
        assert r.json()["error"]["rule"] == "request.too-large"
        assert "5000 bytes per request" in r.json()["error"]["message"]


def test_chunked_body_without_length_is_held_to_the_body_limit_too():
    """A chunked body (no Content-Length) small enough to arrive with its headers is read at
    once, without the slow-client timer: over the limit it is still 413, under it accepted."""
    with Harness(GatewayConfig(max_body_bytes=5_000)) as h:
        headers = {**h.headers(), "Content-Type": "application/json"}
        big = orjson.dumps([statement() for _ in range(20)])
        r = h.http.post(h.url, data=iter([big]), headers=headers)  # an iterator: sent chunked
        assert r.status_code == 413
        assert r.json()["error"]["rule"] == "request.too-large"
        r = h.http.post(h.url, data=iter([orjson.dumps(statement())]), headers=headers)
        assert r.status_code == 200, r.text


# -- one request's records never fail another's ----------------------------------------------
def _env(learner: str, size: int = 10) -> tuple[StatementEnvelope, bytes]:
    env = StatementEnvelope("s", learner, 0, (StatementEntry("c", "c", {"id": learner, "pad": "x" * size}),))
    return env, env.encode()


def _sender(producers, max_request_bytes=4 * 1024 * 1024, client="kafka-python", timeout_s=2, **kw):
    committed: list = []
    factory = fake_factory(client, producers, committed.append, **kw)

    params = TransactionalParameters("x:1", "t", "txn", timeout_s=timeout_s, outcome_timeout_s=timeout_s + 3,
                                     max_request_bytes=max_request_bytes)  # fmt: skip
    return TransactionalSender(params, factory, lanes=1), committed


@pytest.mark.parametrize("client", CLIENTS)
def test_a_record_kafka_refuses_fails_only_its_own_request_in_a_group(client):
    producers: list[FakeProducer] = []
    gate = threading.Event()
    poison = b"poison-learner"

    def refuse(value: bytes):
        return MessageSizeTooLargeError("The request included a message larger than the max") if poison in value else None

    sender, committed = _sender(producers, block=gate, refuse=refuse, client=client)

    async def main():
        sender.start()
        first = sender.submit([_env("warm-up")])
        await asyncio.sleep(0.05)  # the first transaction now waits in flush: the rest queue up together
        good = [sender.submit([_env(f"school-b-{i}")]) for i in range(5)]
        bad = sender.submit([_env("poison-learner", 1000)])
        more = [sender.submit([_env(f"school-b-late-{i}")]) for i in range(5)]
        gate.set()
        await sender.wait(first)
        results = await asyncio.gather(*(sender.wait(j) for j in [*good, bad, *more]), return_exceptions=True)
        return results

    results = asyncio.run(main())
    sender.close()
    *fine, refused = results[:6]
    assert all(r is None for r in fine + results[6:]), results
    assert isinstance(refused, RecordRefused) and refused.too_large
    learners = {orjson.loads(v)["learner"] for t in committed for _, _, v in t}
    assert learners == {"warm-up", *(f"school-b-{i}" for i in range(5)), *(f"school-b-late-{i}" for i in range(5))}


def _refuse_poison(value: bytes):
    return MessageSizeTooLargeError("larger than the max") if b"poison" in value else None


def _group_with_a_poison(sender, producers: list, gate: threading.Event, count: int, poison: int) -> list:
    """A warm-up transaction held in flush by ``gate`` while ``count`` requests queue behind it (one
    group), the one at ``poison`` with a record Kafka refuses; each request's outcome."""

    async def main():
        sender.start()
        first = sender.submit([_env("warm-up")])
        deadline = time.monotonic() + 30
        while not any(p.begun for p in producers):  # the lane took the warm-up alone: the rest queue up together
            assert time.monotonic() < deadline, "the lane never began the warm-up's transaction"
            await asyncio.sleep(0.01)
        jobs = [sender.submit([_env("poison" if i == poison else f"school-b-{i}")]) for i in range(count)]
        gate.set()
        await sender.wait(first)
        return await asyncio.gather(*(sender.wait(j) for j in jobs), return_exceptions=True)

    try:
        return asyncio.run(main())
    finally:
        sender.close()


@pytest.mark.parametrize("client", CLIENTS)
def test_a_refused_record_in_a_large_group_costs_a_few_transactions_not_one_per_request(client):
    """The group is halved until the refused request is alone: the others commit in a few
    transactions (each refusal also costs a new producer: an InitProducerId round trip)."""
    producers: list = []
    gate = threading.Event()
    sender, committed = _sender(producers, block=gate, refuse=_refuse_poison, client=client)
    results = _group_with_a_poison(sender, producers, gate, 16, poison=11)
    assert isinstance(results[11], RecordRefused) and results[11].too_large
    assert [r for i, r in enumerate(results) if i != 11] == [None] * 15
    learners = sorted(orjson.loads(v)["learner"] for t in committed for _, _, v in t)
    assert learners == sorted(["warm-up", *(f"school-b-{i}" for i in range(16) if i != 11)])
    begun = sum(p.begun for p in producers)
    # The warm-up, the group, then two halves at each of log2(16) = 4 levels: 10 (one each: 18).
    assert begun <= 10, begun


def test_a_refused_record_is_answered_without_waiting_for_the_records_librdkafka_holds_back():
    """Once a delivery failed, librdkafka sends none of the transaction's other records: a flush
    waiting for them waited the whole request timeout (10 s), longer than the requests queued
    behind it may wait."""
    producers: list = []
    sender, committed = _sender(producers, client="librdkafka", refuse=_refuse_poison, hold_after_failure=True,
                                timeout_s=30)  # fmt: skip

    async def main():
        sender.start()
        started = time.monotonic()
        with pytest.raises(RecordRefused):
            await sender.wait(sender.submit([_env("poison"), _env("school-a-other")]))
        refused_after = time.monotonic() - started
        await sender.wait(sender.submit([_env("school-b")]))
        return refused_after

    refused_after = asyncio.run(main())
    sender.close()
    assert refused_after < 10, f"the refusal took {refused_after:.1f} s (request timeout 30 s)"
    assert [orjson.loads(v)["learner"] for t in committed for _, _, v in t] == ["school-b"]


def test_a_refused_record_is_told_from_the_records_librdkafka_purged_because_of_it():
    """librdkafka may purge the transaction's other records as soon as one failed, and report them
    (``_PURGE_QUEUE``) before the failed record. The purge is the consequence: the request with the
    refused record is refused, the others commit, and none is answered as if Kafka were down."""
    producers: list = []
    gate = threading.Event()
    sender, committed = _sender(producers, client="librdkafka", refuse=_refuse_poison, purge_first=True, block=gate)
    results = _group_with_a_poison(sender, producers, gate, 4, poison=2)
    assert isinstance(results[2], RecordRefused) and results[2].too_large, results[2]
    assert [r for i, r in enumerate(results) if i != 2] == [None] * 3
    learners = sorted(orjson.loads(v)["learner"] for t in committed for _, _, v in t)
    assert learners == ["school-b-0", "school-b-1", "school-b-3", "warm-up"]


def test_a_record_over_the_producer_limit_is_refused_before_any_transaction():
    producers: list[FakeProducer] = []
    sender, committed = _sender(producers, max_request_bytes=8_000)

    async def main():
        sender.start()
        big = sender.submit([_env("big", 20_000)])
        small = sender.submit([_env("small")])
        with pytest.raises(RecordRefused) as err:
            await sender.wait(big)
        await sender.wait(small)
        return err.value

    err = asyncio.run(main())
    sender.close()
    assert err.too_large and err.limit < 8_000
    assert [[orjson.loads(v)["learner"] for _, _, v in t] for t in committed] == [["small"]]


@pytest.mark.parametrize("client", CLIENTS)
def test_a_failed_group_tells_each_request_only_the_kind_of_error(client):
    producers: list[FakeProducer] = []
    sender, _ = _sender(producers, fail_send=RuntimeError("record of learner poison-learner, 5242970 bytes"),
                        client=client)  # fmt: skip

    async def main():
        sender.start()
        with pytest.raises(KafkaUnavailable) as err:
            await sender.wait(sender.submit([_env("b")]))
        return str(err.value)

    message = asyncio.run(main())
    sender.close()
    assert ("RuntimeError" if client == "kafka-python" else "KafkaError") in message
    assert "poison" not in message and "5242970" not in message


def test_gateway_answers_413_for_a_request_whose_record_kafka_refuses():
    def refuse(value: bytes):
        return MessageSizeTooLargeError("too large") if b"poison" in value else None

    with Harness(refuse=refuse) as h:
        r = h.post(statement(result={"response": "poison"}))
        assert r.status_code == 413, r.text
        assert r.json()["error"]["rule"] == "kafka.message-too-large"
        sid = new_id()
        assert h.put(statement(), sid).status_code == 204


# -- slow clients ---------------------------------------------------------------------------
def _trickle(port: int, head: bytes, stop: threading.Event, closed: list[float], started: float) -> None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
            for i in range(len(head)):
                if stop.is_set():
                    return
                s.sendall(head[i : i + 1])
                time.sleep(0.5)
    except OSError:
        pass
    closed.append(time.monotonic() - started)


@pytest.mark.parametrize("part", ["headers", "body"])
def test_trickling_connections_are_cut_off_and_others_are_served(part):
    config = GatewayConfig(header_timeout_s=2.0, body_grace_s=2.0, body_min_rate=1024)
    with Harness(config) as h:
        auth = h.headers()["Authorization"].encode()
        head = (b"POST /xapi/statements HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Experience-API-Version: 1.0.3\r\n"
                b"Authorization: " + auth + b"\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n")  # fmt: skip
        stop = threading.Event()
        closed: list[float] = []
        started = time.monotonic()
        threads = []
        for _ in range(150):
            if part == "headers":
                t = threading.Thread(target=_trickle, args=(h.port, head + b"{" * 500, stop, closed, started))
            else:
                t = threading.Thread(target=_body_trickle, args=(h.port, head, stop, closed, started))
            t.start()
            threads.append(t)
        try:
            assert h.post(statement()).status_code == 200  # others are served meanwhile
            # Each would trickle for minutes: all are cut off after a few seconds (generous on a busy machine).
            wait_for(lambda: len(closed) == 150, 60, "every trickling connection closed by the gateway")
        finally:
            stop.set()
            for t in threads:
                t.join(70)
        assert max(closed) < 60


def _body_trickle(port: int, head: bytes, stop: threading.Event, closed: list[float], started: float) -> None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
            s.sendall(head)
            for _ in range(5000):
                if stop.is_set():
                    return
                s.sendall(b" ")
                time.sleep(0.5)
    except OSError:
        pass
    closed.append(time.monotonic() - started)


def test_the_lrs_mounted_in_a_web_thread_cuts_off_unfinished_headers_too():
    """``learnpulse demo`` serves the gateway from a WebThread, not ``learnpulse gateway``'s runner."""
    from learnpulse.web import start_web_thread
    from tests.conftest import free_port

    h = Harness(GatewayConfig(header_timeout_s=1.0))
    port = free_port()
    served = start_web_thread(h.app, port)
    try:
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
            s.sendall(b"POST /xapi/statements HTTP/1.1\r\nHost: x\r\n")
            try:
                for _ in range(120):
                    s.sendall(b"X-Slow: 1\r\n")
                    time.sleep(0.5)
            except OSError:
                pass
        assert time.monotonic() - started < 50  # closed by the server, not after the two minutes of trickle
    finally:
        served.stop()
