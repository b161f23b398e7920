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
    # Reserved by another write whose Kafka outcome is not known yet: wait, then look again.
    HELD = "held"


@dataclass(frozen=True, slots=True)
class Holder:
    """Who reserved an id: a gateway process (``gateway`` stable across its restarts, e.g.
    its Kafka ``transactional.id``; ``incarnation`` new at every start) and its request."""

    gateway: str
    incarnation: str
    request: int


@dataclass(frozen=True, slots=True)
class Claim:
    """One write's ids (lower-case), to reserve for ``holder`` all together."""

    school: str
    holder: Holder
    ids: Sequence[str]


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """An id the index holds: reserved (``accepted`` False) or accepted."""

    statement_id: str
    accepted: bool
    # The reservation's holder and when it was taken (epoch ms); kept after acceptance.
    holder: Holder
    reserved_ms: int
    # Accepted entries only: the statement as stored (JSON bytes, what the sinks store),
    # its ``stored`` (epoch ms), the id it voids ("" when it voids nothing), and when
    # Kafka acknowledged it (this host's clock).
    body: bytes | None = None
    stored_ms: int = 0
    voids: str = ""
    acked_ms: int = 0
    # Once the sinks have the statement its body is pruned (:meth:`StatementIndex.prune`);
    # what comparisons need stays: ``schemas.xapi.compare.comparison_key`` of the body and
    # its ``timestamp`` (epoch ms).
    compare_key: bytes | None = None
    timestamp_ms: int | None = None

    @property
    def pruned(self) -> bool:
        return self.body is None and bool(self.compare_key)


@dataclass(frozen=True, slots=True)
class AcceptedStatement:
    """What :meth:`StatementIndex.confirm` records of one statement Kafka acknowledged."""

    statement_id: str
    body: bytes
    stored_ms: int
    # The actor's learner pseudonym (``schemas.identity``): what ``forget-learner`` erases by.
    learner: str
    voids: str = ""


class StatementIndex(Protocol):
    """The durable index of accepted statement ids, shared by every gateway of a deployment.

    A write reserves its ids *before* its Kafka transaction (:meth:`reserve`), records
    them as accepted with the stored statement once Kafka acknowledged it
    (:meth:`confirm`, before the HTTP answer), and frees them when Kafka certainly did not
    take it (:meth:`release`). A reservation whose holder vanished (gateway crash) is
    taken over by a later :meth:`reserve` once older than ``stale_before_ms``, or freed at
    once when the same gateway starts again (:meth:`release_orphans`, after its Kafka
    producers fenced the previous incarnation's). Accepted entries keep the stored
    statement, so a just-acknowledged statement is readable by id (read-your-writes) on
    every gateway. Every method may block; batched methods apply all their items in one
    transaction (group commit).
    """

    def reserve(self, claims: Sequence[Claim], now_ms: int, stale_before_ms: int) -> list[dict[str, IndexEntry]]:
        """Reserve, per claim, every id not in the index, or held by a reservation taken
        before ``stale_before_ms`` (taken over); one transaction for all claims.

        Returns, per claim (same order), the entries of the ids *not* reserved for it:
        accepted ones (compare their body: same or conflict) and ones held by another
        request (wait and retry). Exactly one of concurrent claims on an id, in any
        process, gets it.
        """
        ...

    def confirm(self, items: Sequence[tuple[str, Holder, Sequence[AcceptedStatement]]], acked_ms: int) -> None:
        """``(school, holder, statements)``: Kafka acknowledged them; they become accepted.

        Only reservations still held by ``holder`` change (one taken over meanwhile stays
        the taker's: its copy is the one the client was answered for).
        """
        ...

    def confirm_and_reserve(
        self,
        confirms: Sequence[tuple[str, Holder, Sequence[AcceptedStatement]]],
        acked_ms: int,
        claims: Sequence[Claim],
        now_ms: int,
        stale_before_ms: int,
    ) -> list[dict[str, IndexEntry]]:
        """:meth:`confirm` then :meth:`reserve` in one transaction (one commit for both)."""
        ...

    def release(self, items: Sequence[tuple[str, Holder, Sequence[str]]]) -> None:
        """``(school, holder, ids)``: free reservations still held by ``holder`` (not written)."""
        ...

    def release_orphans(self, gateway: str, incarnation: str) -> int:
        """Free the reservations of ``gateway``'s other incarnations; the count freed.

        Call only once this incarnation's Kafka producers are initialized: that fenced
        the previous ones, so their transactions are decided (a committed copy is then
        collapsed by the sinks if the client sends it again).
        """
        ...

    def get(self, school: str, ids: Sequence[str]) -> dict[str, IndexEntry]:
        """The entries of those ids (lower-case) that the index holds."""
        ...

    def voided(self, school: str, ids: Sequence[str]) -> set[str]:
        """Those of ``ids`` that an accepted voiding statement in the index voids."""
        ...

    def read_one(self, school: str, statement_id: str) -> tuple[IndexEntry | None, bool]:
        """What a read by id needs, in one read transaction: the entry of ``statement_id``
        (lower-case) if the index holds it, and whether an accepted voiding statement voids it."""
        ...

    def oldest_unsunk_ms(self, sunk_through_ms: int) -> int | None:
        """``stored`` of the oldest entry pending or acknowledged at or after ``sunk_through_ms``.

        Bounds ``X-Experience-API-Consistent-Through`` across every gateway: such a
        statement may not be in ClickHouse yet.
        """
        ...

    def prune(self, acked_before_ms: int, limit: int) -> int:
        """Drop the stored statements of up to ``limit`` accepted entries acknowledged before
        ``acked_before_ms`` (the oldest first), keeping what comparing a re-sent id needs;
        the count pruned. Call only with a time the statements sink has passed: reads by
        id of those statements are then answered by ClickHouse."""
        ...

    def forget_learner(self, school: str | None, learner: str) -> int:
        """Erase every accepted entry of one learner pseudonym (its id and statement) in
        ``school`` (None: every school); the count erased."""
        ...

    def forget_statements(self, items: Sequence[tuple[str, str]]) -> int:
        """Erase the accepted entries ``(school, statement id)``; the count erased.

        ``forget-learner`` erases here every statement it erased from ClickHouse: those
        naming the learner other than as actor (object, instructor, team …) too, which
        :meth:`forget_learner` cannot find (an entry knows only its actor's pseudonym).
        """
        ...


class AttachmentStore(Protocol):
    """Attachment contents of statements (content-addressed by SHA-2, per school).

    Written by the gateway before the statements' Kafka transaction (a statement is never
    readable without its attachments), so that writes need no ClickHouse.
    """

    def put(self, school: str, items: Sequence[tuple[str, str, bytes]], stored_ms: int) -> None:
        """Store ``(sha2, content type, content)``; idempotent (the first copy is kept)."""
        ...

    def get(self, school: str, sha2s: Sequence[str]) -> dict[str, tuple[str, bytes]]:
        """``sha2 → (content type, content)`` of those this school stored."""
        ...
