"""A commit_transaction that raises is read back from real Kafka (producers.gateway.sender).

The coordinator may have EndTxn(COMMIT) when the call fails; the lane re-initializes the
transactional id (which settles the transaction) and reads the transaction's first record
with a read_committed consumer. Here the lane's first producer raises from
commit_transaction after committing for real ("landed") or without sending EndTxn at all
("lost": the open transaction is aborted by the re-initialization), on both clients.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from kafka import KafkaConsumer
from kafka.errors import KafkaTimeoutError

from producers.gateway.sender import KafkaUnavailable, TransactionalParameters, TransactionalSender, was_committed
from schemas.envelope import StatementEntry, StatementEnvelope
from schemas.topics import Topic


def _env(learner: str) -> tuple[StatementEnvelope, bytes]:
    env = StatementEnvelope("s", learner, 0, (StatementEntry("c", "c", {"id": str(uuid.uuid4())}),))
    return env, env.encode()


def _values(bootstrap: str, topic: str, expected: int) -> list[bytes]:
    """Every committed value of ``topic``: read until ``expected`` came (up to 120 s on a busy
    machine), then 3 s more, so that a copy too many is seen too."""
    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                      enable_auto_commit=False, isolation_level="read_committed")  # fmt: skip
    values: list[bytes] = []
    try:
        deadline = time.monotonic() + 120
        while len(values) < expected and time.monotonic() < deadline:
            values += [m.value for batch in c.poll(timeout_ms=500).values() for m in batch]
        quiet_until = time.monotonic() + 3
        while time.monotonic() < quiet_until:
            values += [m.value for batch in c.poll(timeout_ms=500).values() for m in batch]
        return values
    finally:
        c.close()


@pytest.mark.kafka
@pytest.mark.parametrize("client", ["kafka-python", "librdkafka"])
@pytest.mark.parametrize("landed", [True, False], ids=["landed", "lost"])
def test_failed_commit_answers_what_kafka_did(kafka, client, landed):
    topic = Topic.STATEMENTS.physical(kafka.topic_prefix)
    # Generous budgets for a loaded machine: each answer comes from the lane, not a timer.
    params = TransactionalParameters(kafka.bootstrap_servers, topic, f"txn-{uuid.uuid4().hex[:8]}", timeout_s=60,
                                     outcome_timeout_s=60, client=client)  # fmt: skip
    made = []

    def factory(transactional_id):
        producer = TransactionalSender(params)._make_producer(transactional_id)
        if not made:
            real = producer.commit_transaction

            def commit_transaction() -> None:
                if landed:
                    real()
                raise KafkaTimeoutError("EndTxn answer lost")

            producer.commit_transaction = commit_transaction
        made.append(producer)
        return producer

    sender = TransactionalSender(params, factory, lanes=1)
    first, second = [_env("a"), _env("b")], [_env("c")]

    async def main() -> None:
        sender.start()
        job = sender.submit(first)
        if landed:
            await sender.wait(job)  # answered as committed
        else:
            with pytest.raises(KafkaUnavailable):  # aborted: nothing written, certain
                await sender.wait(job)
        assert job.settled.result() is landed
        await sender.wait(sender.submit(second))

    try:
        asyncio.run(main())
    finally:
        sender.close()
    assert len(made) == 2
    expected = [v for _, v in (first if landed else [])] + [v for _, v in second]
    assert sorted(_values(kafka.bootstrap_servers, topic, len(expected))) == sorted(expected)


@pytest.mark.kafka
def test_read_committed_tells_committed_from_aborted(kafka):
    from kafka import KafkaProducer

    topic = Topic.STATEMENTS.physical(kafka.topic_prefix)
    p = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers, transactional_id=f"rc-{uuid.uuid4().hex[:8]}")
    try:
        p.init_transactions()
        p.begin_transaction()
        aborted = p.send(topic, key=b"k", value=b"aborted", partition=0).get(30)
        p.abort_transaction()
        p.begin_transaction()
        committed = p.send(topic, key=b"k", value=b"committed", partition=0).get(30)
        p.commit_transaction()
    finally:
        p.close()
    assert was_committed(kafka.bootstrap_servers, topic, 0, aborted.offset, 30) is False
    assert was_committed(kafka.bootstrap_servers, topic, 0, committed.offset, 30) is True
