"""Create the topics declared in ``schemas.topics`` (idempotent)."""

from __future__ import annotations

import logging

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from schemas.topics import Topic

from .errors import UserError

log = logging.getLogger("learnpulse.topics")


def ensure_topics(bootstrap: str, prefix: str = "", replication: int = 1) -> list[str]:
    """Create missing topics with their declared partitions and configs; returns those created."""
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    except (KafkaError, OSError) as err:
        raise UserError(f"Kafka not reachable at {bootstrap} ({err}); start it with `learnpulse stack up`") from err
    try:
        existing = set(admin.list_topics())
        missing = [t for t in Topic if t.physical(prefix) not in existing]
        created = []
        for t in missing:
            configs = dict(t.spec.configs)
            configs.setdefault("min.insync.replicas", str(min(2, replication)))
            try:
                admin.create_topics([NewTopic(t.physical(prefix), t.spec.partitions, replication, topic_configs=configs)])
                created.append(t.physical(prefix))
            except TopicAlreadyExistsError:
                pass  # created concurrently by another process
        return created
    finally:
        admin.close()
