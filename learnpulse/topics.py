"""Create the topics declared in ``schemas.topics`` (idempotent)."""

from __future__ import annotations

import logging
import time

from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError, UnknownBrokerIdError

from schemas.topics import Topic

from .errors import UserError

log = logging.getLogger("learnpulse.topics")

# A cluster that has just started may name a controller its metadata does not list yet
# (UnknownBrokerIdError) or move the controller while we ask; both pass within seconds.
SETTLE_TIMEOUT_S = 60.0
RETRY_PAUSE_S = 0.5
RECORD_LIMIT = "max.message.bytes"


def ensure_topics(bootstrap: str, prefix: str = "", replication: int = 1) -> list[str]:
    """Create missing topics with their declared partitions and configs; returns those created.

    A transient refusal (a retriable Kafka error, or a controller the client does not know yet)
    is retried with fresh metadata until ``SETTLE_TIMEOUT_S``; anything else is raised at once.
    """
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    created: list[str] = []  # across passes: a refused pass may have created some already
    while True:
        try:
            _create_missing(bootstrap, prefix, replication, created)
            return created
        except KafkaError as err:
            if not _transient(err) or time.monotonic() >= deadline:
                raise
            log.warning("topics not created yet, retrying", extra={"error": repr(err)})
            time.sleep(RETRY_PAUSE_S)


def _transient(err: KafkaError) -> bool:
    return err.retriable or isinstance(err, UnknownBrokerIdError)


def _create_missing(bootstrap: str, prefix: str, replication: int, created: list[str]) -> None:
    """One pass with a new admin client (so with fresh cluster metadata); appends each topic it creates."""
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    except (KafkaError, OSError) as err:
        raise UserError(f"Kafka not reachable at {bootstrap} ({err}); start it with `learnpulse stack up`") from err
    try:
        existing = set(admin.list_topics())
        _raise_record_limits(admin, [t.physical(prefix) for t in Topic if t.physical(prefix) in existing], prefix)
        missing = [t for t in Topic if t.physical(prefix) not in existing]
        for t in missing:
            configs = dict(t.spec.configs)
            configs.setdefault("min.insync.replicas", str(min(2, replication)))
            try:
                admin.create_topics([NewTopic(t.physical(prefix), t.spec.partitions, replication, topic_configs=configs)])
                created.append(t.physical(prefix))
            except TopicAlreadyExistsError:
                pass  # created concurrently by another process, or by our own refused attempt
    finally:
        admin.close()


def _raise_record_limits(admin: KafkaAdminClient, names: list[str], prefix: str) -> None:
    """Existing topics whose record limit is below the declared one get the declared one.

    A limit raised in ``schemas.topics`` after a deployment created its topics (the alerts
    topic: an alert names every disengaged learner of a cohort) would otherwise never reach
    it, and the worker would stop on the first record above the old limit. Only that key is
    set (IncrementalAlterConfigs), and a limit above the declared one (an operator's) stays.
    """
    declared = {t.physical(prefix): int(t.spec.configs[RECORD_LIMIT]) for t in Topic if RECORD_LIMIT in t.spec.configs}
    names = [n for n in names if n in declared]
    if not names:
        return
    described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names], config_filter="all")
    raise_to: dict[str, int] = {}
    for name in names:
        entry = described.get("topic", {}).get(name, {}).get(RECORD_LIMIT)
        # No entry: a topic another process created a moment ago, with the declared configs.
        if entry is not None and entry.get("value") is not None and int(entry["value"]) < declared[name]:
            raise_to[name] = declared[name]
    if raise_to:
        # raise_on_unknown=False: kafka-python's own check describes the topic again and
        # can miss the key on a broker that has not loaded a new topic's configs yet.
        admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, n, configs={RECORD_LIMIT: str(v)}) for n, v in raise_to.items()],
            raise_on_unknown=False,
            incremental=True,
        )
        log.info("record limits raised", extra={"topics": raise_to})
