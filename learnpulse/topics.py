"""Create the topics declared in ``schemas.topics`` (idempotent)."""

from __future__ import annotations

import logging
import time

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError, UnknownBrokerIdError

from schemas.topic_limits import RECORD_LIMIT, raise_record_limits
from schemas.topics import Topic

from .errors import UserError

log = logging.getLogger("learnpulse.topics")

# A cluster that has just started may name a controller its metadata does not list yet
# (UnknownBrokerIdError) or move the controller while we ask; both pass within seconds.
SETTLE_TIMEOUT_S = 60.0
RETRY_PAUSE_S = 0.5


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
        # Limits declared after an older version created the topics (the alerts topic's).
        raise_record_limits(admin, {t.physical(prefix): int(t.spec.configs[RECORD_LIMIT]) for t in Topic
                                    if t.physical(prefix) in existing and RECORD_LIMIT in t.spec.configs})  # fmt: skip
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

