"""Group a learner's consecutive statements into one envelope (bounded count, bytes, linger).

Faust's cost is per message, not per byte, so one message carries a batch of one
learner's statements (see DESIGN.md). Order within a learner is preserved.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from schemas.envelope import ENVELOPE_VERSION, StatementEntry, StatementEnvelope


def encode_envelope(envelope: StatementEnvelope, statements_json: list[bytes]) -> bytes:
    """``envelope.encode()``, byte for byte, reusing each statement's JSON already serialized.

    The batcher serializes every statement once to bound envelope sizes; splicing those
    bytes in (``orjson.Fragment``) saves serializing them a second time.
    """
    return orjson.dumps(
        {
            "v": ENVELOPE_VERSION,
            "school": envelope.school,
            "learner": envelope.learner,
            "received": envelope.received_ms,
            "statements": [
                {"course": e.course, "cohort": e.cohort, "statement": orjson.Fragment(raw)}
                for e, raw in zip(envelope.entries, statements_json)
            ],
        }
    )


@dataclass
class _Open:
    school: str
    learner: str
    received_ms: int
    entries: list[StatementEntry] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    size: int = 0
    opened: float = 0.0


class LearnerBatcher:
    """Collects entries per (school, learner); calls ``emit`` with full envelopes.

    An envelope closes at ``max_count`` statements, ``max_bytes`` of statement JSON, or
    ``linger_s`` after it opened (checked on :meth:`add` and :meth:`poll`). With
    ``emit_encoded`` the envelope goes there together with its encoded bytes (see
    :func:`encode_envelope`) instead of to ``emit``.
    """

    def __init__(
        self,
        emit: Callable[[StatementEnvelope], Any],
        max_count: int = 20,
        max_bytes: int = 256 * 1024,
        linger_s: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
        emit_encoded: Callable[[StatementEnvelope, bytes], Any] | None = None,
    ) -> None:
        self.emit = emit
        self.emit_encoded = emit_encoded
        self.max_count = max_count
        self.max_bytes = max_bytes
        self.linger_s = linger_s
        self.clock = clock
        # Open envelopes by key, in opening order (a closed key is removed; reopening appends it).
        self._open: dict[tuple[str, str], _Open] = {}
        # The same envelopes in opening order for poll, plus some already closed (skipped).
        # Not the dict itself: a dict whose oldest keys keep being deleted leaves holes at
        # its front that every iteration walks over (poll became most of the simulator's CPU).
        self._order: deque[tuple[tuple[str, str], _Open]] = deque()

    def add(self, school: str, learner: str, received_ms: int, entry: StatementEntry) -> None:
        key = (school, learner)
        raw = orjson.dumps(entry.statement)
        size = len(raw)
        current = self._open.get(key)
        if current is not None and (current.size + size > self.max_bytes):
            self._close(key)
            current = None
        if current is None:
            current = self._open[key] = _Open(school, learner, received_ms, opened=self.clock())
            self._order.append((key, current))
            if len(self._order) > 2 * len(self._open) + 64:
                self._order = deque(self._open.items())  # drop the closed ones (nobody polls)
        current.entries.append(entry)
        current.raw.append(raw)
        current.size += size
        if len(current.entries) >= self.max_count:
            self._close(key)

    def poll(self) -> None:
        """Close envelopes older than ``linger_s``, in opening order.

        The scan stops at the first envelope still young: cost grows with what closes,
        not with how many learners are open.
        """
        now = self.clock()
        order = self._order
        open_ = self._open
        while order:
            key, o = order[0]
            if open_.get(key) is not o:
                order.popleft()  # closed already (full), maybe reopened since: a later entry
                continue
            if now - o.opened < self.linger_s:
                break
            order.popleft()
            self._close(key)

    def flush(self) -> None:
        for key in list(self._open):
            self._close(key)
        self._order.clear()

    def _close(self, key: tuple[str, str]) -> None:
        o = self._open.pop(key)
        envelope = StatementEnvelope(o.school, o.learner, o.received_ms, tuple(o.entries))
        if self.emit_encoded is not None:
            self.emit_encoded(envelope, encode_envelope(envelope, o.raw))
        else:
            self.emit(envelope)
