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

from schemas.envelope import StatementEntry, StatementEnvelope
from schemas.errors import InvalidStatement
from schemas.xapi.timefmt import parse_ms


def encode_envelope(envelope: StatementEnvelope, statements_json: list[bytes]) -> bytes:
    """``envelope.encode()``, byte for byte, reusing each statement's JSON already serialized.

    The batcher serializes every statement once to bound envelope sizes; splicing those
    bytes in (``orjson.Fragment``) saves serializing them a second time.
    """
    return orjson.dumps(
        {
            "v": envelope.version,
            "school": envelope.school,
            "learner": envelope.learner,
            "received": envelope.received_ms,
            "statements": [e.as_json(orjson.Fragment(raw)) for e, raw in zip(envelope.entries, statements_json)],
        }
    )


_DAY_MINUTES: dict[str, int] = {}


def _event_minute(statement: dict[str, Any]) -> int | None:
    """The statement's ``timestamp`` in whole minutes since the epoch (None: absent or unreadable).

    Minutes are all the event-time bound needs; the common UTC form skips the full parser.
    """
    ts = statement.get("timestamp")
    if not isinstance(ts, str):
        return None
    if len(ts) >= 17 and ts[-1] == "Z" and ts[10] == "T" and ts[13] == ":":
        day = _DAY_MINUTES.get(ts[:10])
        try:
            if day is None:
                day = parse_ms(ts[:10] + "T00:00:00Z") // 60_000
                if len(_DAY_MINUTES) < 10_000:
                    _DAY_MINUTES[ts[:10]] = day
            return day + int(ts[11:13]) * 60 + int(ts[14:16])
        except (InvalidStatement, ValueError):
            pass
    try:
        return parse_ms(ts) // 60_000
    except InvalidStatement:
        return None


@dataclass
class _Open:
    school: str
    learner: str
    received_ms: int
    entries: list[StatementEntry] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    size: int = 0
    opened: float = 0.0
    # Event time (minutes) of its oldest and newest statement, when bounded by max_span_ms.
    lo: int | None = None
    hi: int | None = None


class LearnerBatcher:
    """Collects entries per (school, learner); calls ``emit`` with full envelopes.

    An envelope closes at ``max_count`` statements, ``max_bytes`` of statement JSON, or
    ``linger_s`` after it opened (checked on :meth:`add` and :meth:`poll`). With
    ``emit_encoded`` the envelope goes there together with its encoded bytes (see
    :func:`encode_envelope`) instead of to ``emit``.

    ``max_span_ms`` (None: unbounded) bounds an envelope in event time (statement
    ``timestamp``, minute resolution): it closes before a statement would make it span
    more than that, and :meth:`poll` closes it once the newest event time the batcher has
    seen is more than that past its oldest statement. Linger is wall-clock time: in a fast
    replay a sparse learner's envelope would otherwise stay open across days of event time,
    and its oldest statements reach the stream processor far behind its watermark.
    """

    def __init__(
        self,
        emit: Callable[[StatementEnvelope], Any],
        max_count: int = 20,
        max_bytes: int = 256 * 1024,
        linger_s: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
        emit_encoded: Callable[[StatementEnvelope, bytes], Any] | None = None,
        max_span_ms: int | None = None,
    ) -> None:
        self.emit = emit
        self.emit_encoded = emit_encoded
        self.max_count = max_count
        self.max_bytes = max_bytes
        self.linger_s = linger_s
        self.clock = clock
        self.max_span = None if max_span_ms is None else max_span_ms // 60_000
        self._newest: int | None = None  # event time (minutes) of the newest statement added
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
        span = self.max_span
        minute = None
        if span is not None:
            minute = _event_minute(entry.statement)
            if minute is not None:
                if self._newest is None or minute > self._newest:
                    self._newest = minute
                if (
                    current is not None and current.lo is not None and current.hi is not None
                    and max(minute, current.hi) - min(minute, current.lo) > span
                ):
                    self._close(key)
                    current = None
        if current is None:
            current = self._open[key] = _Open(school, learner, received_ms, opened=self.clock())
            self._order.append((key, current))
            if len(self._order) > 2 * len(self._open) + 64:
                self._order = deque(self._open.items())  # drop the closed ones (nobody polls)
        if minute is not None:
            current.lo = minute if current.lo is None else min(current.lo, minute)
            current.hi = minute if current.hi is None else max(current.hi, minute)
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
        # Event-time bound: envelopes whose oldest statement is before this close too (the
        # scan is in opening order, which follows event time closely enough to stop early).
        stale = None if self.max_span is None or self._newest is None else self._newest - self.max_span
        while order:
            key, o = order[0]
            if open_.get(key) is not o:
                order.popleft()  # closed already (full), maybe reopened since: a later entry
                continue
            if now - o.opened < self.linger_s and (stale is None or o.lo is None or o.lo >= stale):
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
