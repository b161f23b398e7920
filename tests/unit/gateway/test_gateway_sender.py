"""Transactional group commit (producers.gateway.sender) with a stand-in producer.

Every test runs on both clients of the lanes: kafka-python's producer (a stand-in), and the
librdkafka adapter (``producers.gateway.rdkafka``, real) over a stand-in confluent-kafka Producer.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from producers.gateway.sender import KafkaUnavailable, OutcomeUnknown, TransactionalParameters, TransactionalSender
from schemas.envelope import StatementEntry, StatementEnvelope

from .fakes import CLIENTS, FakeProducer, fake_factory

pytestmark = pytest.mark.parametrize("client", CLIENTS)


def _env(learner: str, n: int = 1) -> tuple[StatementEnvelope, bytes]:
    env = StatementEnvelope("s", learner, 0, tuple(StatementEntry("c", "c", {"id": str(i)}) for i in range(n)))
    return env, env.encode()


def _sender(producers, client, lanes=1, read_committed=None, **kw):
    committed = []
    factory = fake_factory(client, producers, committed.append, **kw)
    s = TransactionalSender(
        TransactionalParameters("x:1", "t", "txn", timeout_s=1, outcome_timeout_s=1), factory, lanes,
        read_committed=read_committed or (lambda *a: None),
    )
    return s, committed


def test_sender_group_commit_many_requests_one_transaction(client):
    producers: list[FakeProducer] = []
    gate = threading.Event()
    sender, committed = _sender(producers, client, block=gate)

    async def main():
        sender.start()
        first = sender.submit([_env("a")])
        await asyncio.sleep(0.05)  # the first transaction is now waiting in flush
        rest = [sender.submit([_env(f"l{i}"), _env(f"m{i}")]) for i in range(10)]
        gate.set()
        await sender.wait(first)
        await asyncio.gather(*(sender.wait(j) for j in rest))
        assert all(j.settled.result() for j in [first, *rest])

    asyncio.run(main())
    sender.close()
    assert [len(t) for t in committed] == [1, 20]  # the ten waiting requests shared one commit
    assert producers[0].transactions == 2


def test_sender_failed_transaction_fails_all_its_requests_and_replaces_producer(client):
    producers: list[FakeProducer] = []
    sender, committed = _sender(producers, client, fail_send=RuntimeError("not leader"))

    async def main():
        sender.start()
        jobs = [sender.submit([_env("a")]), sender.submit([_env("b")])]
        for j in jobs:
            with pytest.raises(KafkaUnavailable):
                await sender.wait(j)
            assert j.settled.result() is False

    asyncio.run(main())
    sender.close()
    assert committed == []
    assert producers and all(p.closed for p in producers)


def _replaced(producers: list, n: int = 2) -> None:
    """Wait until the lane made its ``n``-th producer (recovered from a failure)."""
    deadline = time.monotonic() + 30
    while len(producers) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(producers) >= n


@pytest.mark.parametrize("read", [True, False, None], ids=["committed", "aborted", "unknown"])
def test_sender_failed_commit_is_read_back_after_the_transactional_id_is_reinitialized(client, read):
    """commit_transaction raised after EndTxn(COMMIT) may have reached the coordinator: Kafka
    then completes the commit when the lane's next producer re-initializes the same
    transactional id. Only then the lane reads the transaction's first record back (at the
    offset its send acknowledged): committed -> answered as committed; skipped -> nothing
    written (certain); not known -> "outcome unknown", never settled (the ids stay reserved)."""
    from kafka.errors import KafkaTimeoutError

    producers: list = []
    asked = []

    def read_committed(topic, partition, offset, timeout_s):
        asked.append((topic, partition, offset, len(producers)))
        return read

    sender, committed = _sender(producers, client, read_committed=read_committed,
                                fail_commit=KafkaTimeoutError("EndTxn not answered"), commit_lands=bool(read))  # fmt: skip

    async def main():
        sender.start()
        job = sender.submit([_env("a"), _env("b")])
        if read is None:
            with pytest.raises(OutcomeUnknown):
                await sender.wait(job)
            await asyncio.sleep(0.05)
            assert not job.settled.done()  # the ids stay reserved (taken over as stale)
        elif read:
            await sender.wait(job)
            assert job.settled.result() is True
        else:
            with pytest.raises(KafkaUnavailable):
                await sender.wait(job)
            assert job.settled.result() is False

    asyncio.run(main())
    sender.close()
    # Asked once, for the first record, after the second producer was made (re-initialized).
    assert asked == [("t", 0, 0, 2)]
    assert len(committed) == (1 if read else 0)
    assert producers[0].closed


def test_sender_failed_commit_without_an_offset_is_outcome_unknown(client):
    """No offset to read back (the producer gave none): the outcome stays unknown."""
    from kafka.errors import KafkaTimeoutError

    producers: list = []
    asked = []
    sender, committed = _sender(producers, client, read_committed=lambda *a: asked.append(a) or True,
                                fail_commit=KafkaTimeoutError("EndTxn not answered"), commit_lands=True)  # fmt: skip

    async def main():
        sender.start()
        await asyncio.sleep(0.05)
        p = producers[0]
        if client == "kafka-python":
            real_send = p.send

            def send(*a, **kw):
                f = real_send(*a, **kw)
                f.value = None
                return f

            p.send = send
        else:
            p.only_errors = True  # librdkafka with delivery.report.only.error: no offsets
        job = sender.submit([_env("a")])
        with pytest.raises(OutcomeUnknown):
            await sender.wait(job)
        assert not job.settled.done()

    asyncio.run(main())
    sender.close()
    assert asked == [] and len(committed) == 1


def test_sender_abortable_commit_error_is_nothing_written_only_if_the_abort_succeeded(client):
    """librdkafka: a commit error that requires an abort is certain "nothing written" once
    abort_transaction succeeded; if the abort fails too, the outcome is unknown."""
    if client != "librdkafka":
        pytest.skip("kafka-python's commit_transaction does not abort")
    from confluent_kafka import KafkaError as RdError

    abortable = RdError(RdError._STATE, "EndTxn refused", txn_requires_abort=True)
    for fail_abort, expected in ((None, KafkaUnavailable), (RdError(RdError._TIMED_OUT, "abort timed out"),
                                                           OutcomeUnknown)):  # fmt: skip
        producers: list = []
        sender, committed = _sender(producers, client, fail_commit=abortable, fail_abort=fail_abort)

        async def main():
            sender.start()
            job = sender.submit([_env("a")])
            with pytest.raises(expected):
                await sender.wait(job)
            await asyncio.get_running_loop().run_in_executor(None, _replaced, producers)
            await asyncio.sleep(0.05)
            if expected is KafkaUnavailable:
                assert job.settled.result() is False
            else:
                assert not job.settled.done()

        asyncio.run(main())
        sender.close()
        assert committed == []


def test_sender_lanes_commit_in_parallel_while_one_is_slow(client):
    gate = threading.Event()
    committed = []
    made: list[FakeProducer] = []
    factories = [fake_factory(client, made, committed.append, block=gate), fake_factory(client, made, committed.append)]

    def factory(transactional_id):
        # The first producer hangs in flush until the gate opens; later ones are fast.
        return factories[min(len(made), 1)](transactional_id)

    params = TransactionalParameters("x:1", "t", "txn", timeout_s=2, outcome_timeout_s=2)
    sender = TransactionalSender(params, factory, lanes=2)

    async def main():
        sender.start()
        slow = sender.submit([_env("a")])
        await asyncio.sleep(0.1)
        fast = sender.submit([_env("b")])
        await sender.wait(fast)  # committed by the other lane
        assert not slow.result.done()
        gate.set()
        await sender.wait(slow)

    asyncio.run(main())
    sender.close()
    assert [[r[1] for r in t] for t in committed] == [[b"b"], [b"a"]]


def test_sender_keeps_waiting_for_a_slow_producer_initialization_across_requests(client):
    """An InitProducerId slower than a request's budget is waited for again, not restarted.

    Models kafka-python 3.0: ``init_transactions`` raises KafkaTimeoutError after
    ``max_block_ms`` while the request goes on, and a later call keeps waiting for it. Here
    the handshake needs three calls' worth of waiting; a sender that discarded the producer
    at each timeout would start it over every time and never get a request through.
    """
    from confluent_kafka import KafkaError as RdError
    from confluent_kafka import KafkaException
    from kafka.errors import KafkaTimeoutError

    def slow(base):
        class SlowInit(base):
            def init_transactions(self, timeout=None) -> None:
                self.calls = getattr(self, "calls", 0) + 1
                if self.calls < 3:
                    if base is FakeProducer:
                        raise KafkaTimeoutError("Timeout expired while initializing transactional state")
                    raise KafkaException(RdError(RdError._TIMED_OUT, "Transactional API operation timed out",
                                                 retriable=True))  # fmt: skip

        return SlowInit

    producers: list[FakeProducer] = []
    committed: list = []
    factory = fake_factory(client, producers, committed.append, make=slow)

    # Budgets far above what the stand-in takes: each answer comes from the lane, not a timer.
    sender = TransactionalSender(TransactionalParameters("x:1", "t", "txn", timeout_s=60, outcome_timeout_s=60),
                                 factory, lanes=1)

    async def main():
        sender.start()  # the lane's first init_transactions times out (call 1)
        first = sender.submit([_env("a")])  # call 2 times out: a 503, nothing written
        with pytest.raises(KafkaUnavailable):
            await sender.wait(first)
        await sender.wait(sender.submit([_env("b")]))  # call 3 completes on the same producer

    asyncio.run(main())
    sender.close()
    assert len(producers) == 1 and producers[0].calls == 3
    assert [[r[1] for r in t] for t in committed] == [[b"b"]]


def test_sender_linger_holds_the_transaction_open_for_requests_queued_meanwhile(client):
    """With ``linger_s`` a lane waits, after the first request was queued, for more to join
    its transaction; without it the first request is committed alone as soon as it is taken
    (test_sender_group_commit_many_requests_one_transaction shows that order)."""
    producers: list[FakeProducer] = []
    committed: list = []
    factory = fake_factory(client, producers, committed.append)
    sender = TransactionalSender(
        # A linger far beyond the 0.2 s between the two requests: a busy machine that delays the
        # second submit by seconds still queues it inside the first one's transaction.
        TransactionalParameters("x:1", "t", "txn", timeout_s=30, outcome_timeout_s=30, linger_s=6.0), factory, 1,
        read_committed=lambda *a: None,
    )

    async def main():
        sender.start()
        first = sender.submit([_env("a")])
        await asyncio.sleep(0.2)  # well inside the linger: the lane holds the transaction open
        second = sender.submit([_env("b"), _env("c")])
        await asyncio.gather(sender.wait(first), sender.wait(second))

    asyncio.run(main())
    sender.close()
    assert [len(t) for t in committed] == [3]  # one transaction: the request queued 0.2 s later joined it
