"""Turn a school's statements into envelopes on ``xapi.statements``.

Shared by every producer: canonical form (id, stored, authority, version), learner
pseudonym, course/cohort from the school profile, grouping per learner, idempotent send.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from schemas.envelope import StatementEntry
from schemas.identity import pseudonym
from schemas.profile import SchoolProfile
from schemas.xapi.canonical import canonicalize

from .batching import LearnerBatcher
from .kafka import StatementProducer

AUTHORITY_HOME = "https://learnpulse.dev/schools"


def school_authority(school: str) -> dict[str, Any]:
    """The authority an LRS credential of ``school`` stamps on its statements."""
    return {"objectType": "Agent", "account": {"homePage": AUTHORITY_HOME, "name": school}}


class StatementPublisher:
    """Canonicalizes, pseudonymizes, groups and sends; ``flush`` surfaces delivery errors."""

    def __init__(
        self,
        producer: StatementProducer,
        secret: bytes,
        profiles: Mapping[str, SchoolProfile] | None = None,
        max_per_envelope: int = 20,
        linger_s: float = 0.05,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.producer = producer
        self.secret = secret
        self.profiles = profiles or {}
        self.default_profile = SchoolProfile()
        self.clock_ms = clock_ms
        # Producers that take pre-encoded envelopes skip serializing each statement twice.
        self.batcher = LearnerBatcher(
            producer.send,
            max_count=max_per_envelope,
            linger_s=linger_s,
            emit_encoded=getattr(producer, "send_encoded", None),
        )

    def publish(self, school: str, statement: dict[str, Any], received_ms: int | None = None) -> dict[str, Any]:
        """Queue one validated statement; returns its canonical (stored) form."""
        received = received_ms if received_ms is not None else self.clock_ms()
        stored = canonicalize(statement, authority=school_authority(school), stored_ms=received)
        learner = pseudonym(self.secret, stored["actor"])
        course, cohort = self.profiles.get(school, self.default_profile).course_and_cohort(stored)
        self.batcher.add(school, learner, received, StatementEntry(course, cohort, stored))
        return stored

    def poll(self) -> None:
        """Send envelopes past their linger time; raise ``DeliveryFailed`` if Kafka refused any."""
        self.batcher.poll()
        check = getattr(self.producer, "check", None)
        if check is not None:
            check()

    def flush(self) -> None:
        self.batcher.flush()
        self.producer.flush()
