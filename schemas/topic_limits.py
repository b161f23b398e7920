"""Raising the record limit (``max.message.bytes``) of topics that already exist.

Limits declared in :mod:`schemas.topics` grew after deployments had created their topics
(a cohort's state and an alert grow with its learners): a topic keeps the limit it was made
with, and a process writing a larger record stops on it. Both creators of topics, the
``learnpulse`` commands (declared topics) and the stream worker (its internal topics), call
:func:`raise_record_limits` on the topics they found.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

log = logging.getLogger("learnpulse.topics")

RECORD_LIMIT = "max.message.bytes"


def raise_record_limits(admin: Any, wanted: Mapping[str, int]) -> dict[str, int]:
    """Give each topic of ``wanted`` (name → bytes) that limit where its own is lower; returns
    those raised.

    Only that key is set (IncrementalAlterConfigs): the topics' other settings stay, and a
    limit above the wanted one (an operator's) stays too. A topic the broker describes without
    the key (created a moment ago, its configs not loaded yet) is set anyway: whoever just
    made it made it with the limit or below. ``admin`` is kafka-python's ``KafkaAdminClient``.
    """
    from kafka.admin import ConfigResource, ConfigResourceType

    if not wanted:
        return {}
    described = admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, name) for name in wanted], config_filter="all"
    ).get("topic", {})
    raise_to: dict[str, int] = {}
    for name, limit in wanted.items():
        current = described.get(name, {}).get(RECORD_LIMIT, {}).get("value")
        if current is None or int(current) < limit:
            raise_to[name] = limit
    if raise_to:
        # raise_on_unknown=False: kafka-python's own check describes the topics again and,
        # for a topic whose configs the broker has not loaded yet, refuses the key (ValueError).
        admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, n, configs={RECORD_LIMIT: str(v)}) for n, v in raise_to.items()],
            raise_on_unknown=False,
            incremental=True,
        )
        log.info("record limits raised", extra={"topics": raise_to})
    return raise_to
