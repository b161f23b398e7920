"""Contracts of the LRS's transactional store: documents and the index of accepted statement ids.

Statements and figures are append-only analytics (Kafka, then ClickHouse). LRS documents
(State, Activity Profile, Agent Profile) and the index of accepted statement ids are small,
mutable, need compare-and-set and must be right the moment a request is answered, so they
live in a transactional store on the gateway's write side: SQLite in ``LEARNPULSE_HOME`` by
default (no server; several gateway processes on one machine share the file), PostgreSQL
when gateways run on several machines. Never ClickHouse.

One narrow Protocol per capability (as openfun/ralph splits its backends), so the embedded
and the server store can be swapped and faked. Every method may block on I/O (the gateway
calls them from worker threads) and is scoped to one school: a school never reads, writes
or lists another school's documents or ids.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class DocumentKind(enum.StrEnum):
    """The three document resources of xAPI (1.0.3 Communication 2.3, 2.6, 2.7; 2.0 §4.1.6)."""

    STATE = "state"
    ACTIVITY_PROFILE = "activity_profile"
    AGENT_PROFILE = "agent_profile"


@dataclass(frozen=True, slots=True)
class DocumentKey:
    """Where one document lives.

    ``agent`` is the learner pseudonym (``schemas.identity``) of the State's or Agent
    Profile's agent, never the raw identifier: it is what ``forget-learner`` erases by.
    Fields a kind does not use are empty strings (``activity_id`` for Agent Profile,
    ``agent`` for Activity Profile, ``registration`` outside State or when absent).
    """

    school: str
    kind: DocumentKind
    activity_id: str
    agent: str
    registration: str
    document_id: str


@dataclass(frozen=True, slots=True)
class Document:
    """One stored document, returned byte for byte with its content type."""

    content: bytes
    content_type: str
    # Strong ETag value (quoted form is the HTTP layer's business), e.g. hex SHA-1 of content.
    etag: str
    updated_ms: int


class Precondition(enum.Enum):
    """What must hold when a write or delete is applied, checked atomically with it."""

    # No condition (the HTTP layer decides beforehand whether that is allowed: 409 rules).
    NONE = "none"
    # The document must not exist (If-None-Match: *).
    ABSENT = "absent"
    # The document must exist (If-Match: *).
    EXISTS = "exists"
    # The document must exist with exactly ``etag`` (If-Match: "<etag>").
    ETAG = "etag"


class PreconditionFailed(Exception):
    """The precondition did not hold at the moment of the write; nothing was changed."""


class DocumentStore(Protocol):
    """Get / put-if / delete-if / list for the three document resources."""

    def get(self, key: DocumentKey) -> Document | None:
        """The document, or None."""
        ...

    def put(
        self,
        key: DocumentKey,
        content: bytes,
        content_type: str,
        updated_ms: int,
        precondition: Precondition = Precondition.NONE,
        etag: str | None = None,
    ) -> Document:
        """Create or replace the document atomically if ``precondition`` holds.

        ``etag`` is the expected ETag for ``Precondition.ETAG``. Raises
        :class:`PreconditionFailed` when it does not hold; concurrent writers across
        processes (and across machines on the server store) never lose an update.
        JSON merge (POST) is the HTTP layer's: it reads, merges and puts with
        ``Precondition.ETAG`` of what it read, retrying on ``PreconditionFailed``.
        """
        ...

    def delete(
        self, key: DocumentKey, precondition: Precondition = Precondition.NONE, etag: str | None = None
    ) -> bool:
        """Delete one document if ``precondition`` holds; True if one was deleted."""
        ...

    def delete_states(self, school: str, activity_id: str, agent: str, registration: str | None) -> int:
        """DELETE many State documents of an activity and agent (all registrations when None)."""
        ...

    def list_ids(
        self,
        school: str,
        kind: DocumentKind,
        activity_id: str,
        agent: str,
        registration: str | None,
        since_ms: int | None,
    ) -> list[tuple[str, int]]:
        """``(document id, updated_ms)`` of that activity/agent (and registration), updated after
        ``since_ms``; an id stored under several registrations once, with its latest update
        (the updates give a list's Last-Modified, Communication §2.2.s6.b2)."""
        ...

    def forget_agent(self, school: str | None, agent: str) -> int:
        """Erase every State and Agent Profile document of one learner pseudonym; the count erased.

        ``school`` None: in every school (``forget-learner`` names a person, not a school).
        """
        ...


class IdVerdict(enum.Enum):
    """What the index says about one statement id offered by a write."""

    # Not seen before: reserved for this write.
    NEW = "new"
    # Accepted before with equivalent content (xAPI statement comparison): not stored again (204/200).
    SAME = "same"
    # Accepted before with other content: 409.
    CONFLICT = "conflict"


class StatementIndex(Protocol):
    """The durable index of accepted statement ids, shared by every gateway of a deployment.

    The implementer (issue 12, part 1; issue 13, read-your-writes) defines the exact
    methods here: reserve ids atomically before the Kafka transaction, confirm or release
    them after it, serve a just-acknowledged statement by id until the sinks have written
    it, and forget a learner's entries. It must be exact across gateway crashes and across
    several gateway processes.
    """
