"""The Faust app: built by a factory from explicit parameters (nothing at import time)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import faust

from schemas.topics import Topic


@dataclass(frozen=True)
class StreamsParameters:
    bootstrap: str
    topic_prefix: str
    app_id: str
    datadir: Path
    web_port: int
    replication: int = 1


@dataclass(frozen=True)
class Topics:
    """Faust topic handles; raw bytes in and out, our own codecs from ``schemas``."""

    statements: faust.TopicT
    activity: faust.TopicT
    deadletter: faust.TopicT


def create_app(p: StreamsParameters) -> faust.App:
    app = faust.App(
        p.app_id,
        broker=f"kafka://{p.bootstrap}",
        store="rocksdb://",
        datadir=str(p.datadir),
        autodiscover=False,
        web_enabled=True,
        web_host="127.0.0.1",
        web_port=p.web_port,
        topic_partitions=Topic.STATEMENTS.spec.partitions,
        topic_replication_factor=p.replication,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_compression_type="lz4",
        key_serializer="raw",
        value_serializer="raw",
        stream_wait_empty=False,
    )

    def topic(t: Topic) -> faust.TopicT:
        return app.topic(
            t.physical(p.topic_prefix), key_type=bytes, value_type=bytes, partitions=t.spec.partitions
        )

    topics = Topics(topic(Topic.STATEMENTS), topic(Topic.ACTIVITY), topic(Topic.DEADLETTER))
    from .activity.agents import register as register_activity

    register_activity(app, topics)
    return app
