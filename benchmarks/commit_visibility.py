"""How long after Kafka acknowledges a transaction's commit can a ``read_committed`` reader see it?

Kafka answers EndTxn once the commit is decided, then writes the transaction's markers; until
they land, the last stable offset (what a ``read_committed`` reader's end offset is) stays at or
below the transaction's records. This is why the sinks measure their caught-up time against
the high watermark, not the last stable offset (``sinks.kafkaloop.KafkaLoop.log_ends``).

Starts a private Kafka broker, commits ``--transactions`` single-record transactions one after
another with librdkafka (as the gateway's lanes do) and, right after each commit returns, asks
for the last stable offset (kafka-python, ``read_committed``) until it passes the record.
Prints how many commits returned before their record was readable, and how long it took.

    python -m benchmarks.commit_visibility --transactions 300
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path

from confluent_kafka import Producer
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic

from benchmarks.faults.procs import free_port
from learnpulse.settings import KafkaSettings, Settings
from learnpulse.stack import KafkaBroker


def measure(bootstrap: str, transactions: int) -> list[float | None]:
    """Per commit: None if the first look after it returned already found its record readable,
    else the seconds from the commit's return until the last stable offset passed the record."""
    topic = f"visibility-{uuid.uuid4().hex[:6]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, 1, 1)])
    admin.close()
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"{topic}-lane", "linger.ms": 0})
    producer.init_transactions(30)
    reader = KafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed", enable_auto_commit=False)
    tp = TopicPartition(topic, 0)
    waits = []
    try:
        for n in range(transactions):
            offsets: list[int] = []
            producer.begin_transaction()
            producer.produce(topic, b"x", on_delivery=lambda _err, msg: offsets.append(msg.offset()))
            producer.flush(30)
            producer.commit_transaction(30)
            returned = time.perf_counter()
            if reader.end_offsets([tp])[tp] > offsets[0]:
                waits.append(None)
            else:
                while reader.end_offsets([tp])[tp] <= offsets[0]:
                    time.sleep(0.0005)
                waits.append(time.perf_counter() - returned)
            if (n + 1) % 100 == 0:
                print(f"  {n + 1} of {transactions} transactions", flush=True)
    finally:
        reader.close()
        producer.flush(10)
    return waits


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--transactions", type=int, default=300)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-visibility-") as tmp:
        settings = Settings(home=Path(tmp), kafka=KafkaSettings(port=free_port(), controller_port=free_port()))
        broker = KafkaBroker(settings)
        try:
            print("starting Kafka …", flush=True)
            broker.up(timeout=120)
            waits = measure(settings.kafka.bootstrap_servers, args.transactions)
        finally:
            broker.stop()
    late = sorted(w for w in waits if w is not None)
    header = ("transactions", "not yet readable at the first look after the commit", "readable after, p50 / max ms")
    print(f"\n{header[0]:>12} {header[1]:>52} {header[2]:>29}")
    shown = f"{late[len(late) // 2] * 1000:.1f} / {late[-1] * 1000:.1f}" if late else "-"
    print(f"{len(waits):>12} {len(late):>52} {shown:>29}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
