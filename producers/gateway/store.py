"""What the gateway needs from the statement store (implemented by ``reporting.lrs``).

``producers`` may not import ``reporting``: ``learnpulse`` builds the store and hands it
to :func:`producers.gateway.app.make_gateway_app`. Every method may block on I/O; the
gateway calls them from worker threads. Every method is scoped to one school: a school
never sees another school's statements or attachments.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class StatementStore(Protocol):
    def lookup(self, school: str, ids: Sequence[str]) -> dict[str, bytes]:
        """The stored JSON of those statement ids that exist (voided or not); lower-case id keys."""
        ...

    def get(self, school: str, statement_id: str, voided: bool) -> tuple[bytes, int] | None:
        """``(stored JSON, stored_ms)`` of one statement.

        ``voided=False``: None if absent or voided (xAPI 1.0.3 Communication §2.1.4).
        ``voided=True``: None unless the statement exists and is voided.
        """
        ...

    def query(
        self,
        school: str,
        *,
        agent: str | None,
        verb: str | None,
        activity: str | None,
        registration: str | None,
        related_activities: bool,
        related_agents: bool,
        since_ms: int | None,
        until_ms: int | None,
        ascending: bool,
        after: tuple[int, str] | None,
        limit: int,
    ) -> tuple[list[tuple[int, str, bytes]], bool]:
        """One page of a StatementResult: ``([(stored_ms, id, stored JSON)], more_exist)``.

        Ordered by ``(stored, id)`` descending (ascending if asked), strictly after
        ``after``; voided statements excluded; StatementRef targets considered as
        xAPI 1.0.3 Communication §2.1.3.s3 describes.
        """
        ...

    def attachments(self, school: str, sha2s: Sequence[str]) -> dict[str, tuple[str, bytes]]:
        """``sha2 → (content type, content)`` for the attachment contents this school stored."""
        ...

    def put_attachments(self, school: str, items: Sequence[tuple[str, str, bytes]], stored_ms: int) -> None:
        """Store ``(sha2, content type, content)``; idempotent (content-addressed)."""
        ...
