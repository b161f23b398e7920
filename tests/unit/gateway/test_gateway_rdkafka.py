"""The librdkafka adapter of the gateway's lanes (producers.gateway.rdkafka) over a stand-in
confluent-kafka Producer: what librdkafka's transactional errors become for the lanes."""

from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import KafkaError as RdError
from confluent_kafka import KafkaException
from kafka.errors import KafkaError, KafkaTimeoutError, MessageSizeTooLargeError

from producers.gateway.rdkafka import RdKafkaTransactionalProducer, rdkafka_config
from producers.gateway.sender import TransactionAborted

from .fakes import FakeRdProducer


def _adapter(committed: list, cls=FakeRdProducer, **kw) -> tuple[RdKafkaTransactionalProducer, list]:
    made: list = []

    def inner(conf):
        made.append(cls(conf, committed.append, **kw))
        return made[-1]

    return RdKafkaTransactionalProducer({}, "t", init_timeout_s=1, commit_timeout_s=5, producer_class=inner), made


def test_a_retriable_commit_error_is_retried_on_the_same_transaction():
    class Flaky(FakeRdProducer):
        attempts = 0

        def commit_transaction(self, timeout=None):
            Flaky.attempts += 1
            if Flaky.attempts == 1:
                raise KafkaException(RdError(RdError._TIMED_OUT, "commit timed out", retriable=True))
            super().commit_transaction(timeout)

    committed: list = []
    p, _ = _adapter(committed, Flaky)
    p.init_transactions()
    p.begin_transaction()
    assert p.send("t", b"k", b"v").succeeded()
    p.flush(1)
    p.commit_transaction()
    assert Flaky.attempts == 2 and committed == [[("t", b"k", b"v")]]


def test_a_record_the_broker_refuses_aborts_the_transaction_and_names_the_record_error():
    aborted = []

    class Abort(FakeRdProducer):
        def abort_transaction(self, timeout=None):
            aborted.append(True)
            super().abort_transaction(timeout)

    committed: list = []
    p, _ = _adapter(committed, Abort, refuse=lambda v: MessageSizeTooLargeError("big") if v == b"big" else None)
    p.init_transactions()
    p.begin_transaction()
    outcomes = [p.send("t", b"a", b"small"), p.send("t", b"b", b"big")]
    with pytest.raises(TransactionAborted) as raised:  # aborted: nothing committed, certain
        p.commit_transaction()
    assert isinstance(raised.value.error, MessageSizeTooLargeError)  # the delivery error, not only "abort"
    assert aborted and committed == []
    assert not outcomes[1].succeeded()


def test_an_abortable_commit_error_whose_abort_fails_is_not_said_aborted():
    """The abort refused (e.g. INVALID_TXN_STATE: the coordinator has the commit): the error
    is raised as is, which the lanes answer as "outcome unknown"."""
    committed: list = []
    p, _ = _adapter(committed, fail_commit=RdError(RdError.UNKNOWN_PRODUCER_ID, "EndTxn", txn_requires_abort=True),
                    fail_abort=RdError(RdError.INVALID_TXN_STATE, "already committed", fatal=True))  # fmt: skip
    p.init_transactions()
    p.begin_transaction()
    p.send("t", b"k", b"v")
    p.flush(1)
    with pytest.raises(KafkaError) as raised:
        p.commit_transaction()
    assert not isinstance(raised.value, TransactionAborted)


def test_init_timeout_is_resumable_and_a_fatal_error_is_not():
    class Init(FakeRdProducer):
        error: RdError | None = None

        def init_transactions(self, timeout=None):
            if Init.error is not None:
                raise KafkaException(Init.error)

    p, _ = _adapter([], Init)
    Init.error = RdError(RdError._TIMED_OUT, "timed out", retriable=True)
    with pytest.raises(KafkaTimeoutError):  # the lane keeps this producer and calls again
        p.init_transactions()
    Init.error = RdError(RdError._FENCED, "fenced", fatal=True)
    with pytest.raises(KafkaError) as err:
        p.init_transactions()
    assert not isinstance(err.value, KafkaTimeoutError)


def test_close_returns_within_its_timeout_when_librdkafka_does_not():
    gate = threading.Event()

    class Stuck(FakeRdProducer):
        def close(self):
            gate.wait(30)
            return super().close()

    p, made = _adapter([], Stuck)
    started = time.monotonic()
    p.close(timeout=0.2)
    assert time.monotonic() - started < 10  # generous; unbounded without the helper thread
    gate.set()


def test_the_settings_mirror_the_kafka_python_producers():
    conf = rdkafka_config("h:1", "txn-0", 60_000, 4 * 1024 * 1024, 10)
    assert conf["transactional.id"] == "txn-0" and conf["acks"] == "all" and conf["enable.idempotence"] is True
    assert conf["message.max.bytes"] == 4 * 1024 * 1024
    assert conf["partitioner"] == "murmur2_random"  # Java's key hash, not librdkafka's default CRC32
    assert conf["message.timeout.ms"] <= conf["transaction.timeout.ms"]
