"""`learnpulse stack up` / `topics create` on topics an older version created: a record limit
the declaration raised since is raised on the existing topic too (else the alerts topic of an
older deployment refuses an alert naming ~15,000 learners and the worker stops on it), and a
limit an operator set higher is left alone."""

from __future__ import annotations

import time
import uuid

import pytest

from learnpulse.topics import ensure_topics
from schemas.topics import WORKER_TOPIC_MAX_MESSAGE_BYTES, Topic
from tests.conftest import wait_for


def _config(admin, name: str, key: str) -> str:
    from kafka.admin import ConfigResource, ConfigResourceType

    described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)], config_filter="all")
    return described["topic"][name][key]["value"]


def _limits(admin, names: list[str]) -> dict[str, str]:
    return {n: _config(admin, n, "max.message.bytes") for n in names}


def _set_limit(admin, name: str, value: str) -> None:
    from kafka.admin import ConfigResource, ConfigResourceType

    # A topic created a moment ago may not be described with its configs yet by the broker
    # asked (kafka-python then refuses the key as unknown): ask again until it is.
    deadline = time.monotonic() + 60
    while True:
        try:
            admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, configs={"max.message.bytes": value})],
                                incremental=True)  # fmt: skip
            return
        except ValueError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@pytest.mark.kafka
def test_topics_an_older_version_created_get_the_declared_record_limit(kafka):
    from kafka import KafkaAdminClient

    prefix = f"u{uuid.uuid4().hex[:8]}."
    alerts, statements = Topic.ALERTS.physical(prefix), Topic.STATEMENTS.physical(prefix)
    ensure_topics(kafka.bootstrap_servers, prefix, kafka.topic_replication)
    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers, request_timeout_ms=15_000)
    try:
        # As an older version left them: the alerts topic at Kafka's default, and a limit an
        # operator raised above the declared one.
        _set_limit(admin, alerts, "1048588")
        _set_limit(admin, statements, str(32 << 20))
        # The broker shows an altered config once the controller's metadata reaches it.
        wait_for(lambda: _limits(admin, [alerts, statements]) == {alerts: "1048588", statements: str(32 << 20)},
                 60, "the older limits")  # fmt: skip

        assert ensure_topics(kafka.bootstrap_servers, prefix, kafka.topic_replication) == []

        wait_for(lambda: _limits(admin, [alerts])[alerts] != "1048588", 60, "the alerts topic's limit to change")
        limits = _limits(admin, [alerts, statements])
        retention = _config(admin, alerts, "retention.ms")
    finally:
        admin.close()
    assert limits[alerts] == WORKER_TOPIC_MAX_MESSAGE_BYTES
    assert limits[statements] == str(32 << 20)  # never lowered
    assert retention == Topic.ALERTS.spec.configs["retention.ms"]  # other settings kept
