"""A cohort's state in the ``cohort-state`` table: a small document, its member list, a record per learner.

One document per cohort holding every learner was rewritten whole at each batch that touched
the cohort: ~165 bytes a learner, into RocksDB and the changelog, for one statement. Now a
batch writes the cohort's document when its figures moved, the member list when someone
joined, and the learners it changed. Learners are read when first asked for; every one only
when a step is evaluated.

A save is several writes and a kill can land between any two; the batch is then delivered
again. The order keeps that exact:

- the cohort before its members and learners: a learner is never stored advanced past its
  cohort's step, and a learner stored behind it catches up at the next step (each learner
  carries the step it is advanced to, ``state.ADVANCED``); so a cut-short save never mixes
  figures of two steps in one evaluation;
- the member list before the learners: a member without a record is skipped and joins
  again with the redelivered batch (a record without its member would be left out of
  every evaluation);
- a document of a worker before 2026-12-06 (every learner inside it) is written last, when
  its learners are stored: until then the old document still holds them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import orjson

from ..faustutil import StateTable, event_context
from .state import LEARNERS, CohortDoc, LearnerFigures, new_cohort

MEMBERS_SUFFIX = b"\x00m"
LEARNER_INFIX = b"\x00l"


def members_key(ck: bytes) -> bytes:
    return ck + MEMBERS_SUFFIX


def learner_key(ck: bytes, learner: str) -> bytes:
    return ck + LEARNER_INFIX + learner.encode()


def _read(table: StateTable, key: bytes, event: Any) -> bytes | None:
    with event_context(event):
        try:
            return table.data[key]
        except KeyError:
            return None


class StoredLearners:
    """A cohort's learners as the logic sees them (``get``, item assignment, ``values``,
    ``items``), read from the table when first asked for; remembers what was stored."""

    __slots__ = ("_table", "_ck", "_event", "_loaded", "_stored", "_members", "_member_set", "whole",
                 "members_changed")

    def __init__(self, table: StateTable, ck: bytes, event: Any, preloaded: dict[str, LearnerFigures] | None = None,
                 *, new: bool = False) -> None:  # fmt: skip
        """``preloaded``: every learner, from an older worker's document; ``new``: a cohort not
        stored yet (no member list to look up)."""
        self._table = table
        self._ck = ck
        self._event = event
        self._loaded: dict[str, LearnerFigures] = dict(preloaded or {})
        self._stored: dict[str, bytes] = {}  # learner → its record as read (absent: not stored apart)
        known = preloaded is not None or new
        self._members: list[str] | None = list(self._loaded) if known else None
        self._member_set: set[str] | None = set(self._loaded) if known else None
        # Every learner came with an older worker's document: records in the table are
        # those of a save a kill cut short, older than the document's own state.
        self.whole = preloaded is not None
        self.members_changed = preloaded is not None

    def members(self) -> list[str]:
        if self._members is None:
            raw = _read(self._table, members_key(self._ck), self._event)
            self._members = orjson.loads(raw) if raw is not None else []
            self._member_set = set(self._members)
        return self._members

    def get(self, learner: str, default: LearnerFigures | None = None) -> LearnerFigures | None:
        lr = self._loaded.get(learner)
        if lr is not None or self.whole:
            return lr if lr is not None else default
        raw = _read(self._table, learner_key(self._ck, learner), self._event)
        if raw is None:
            return default
        lr = self._loaded[learner] = orjson.loads(raw)
        self._stored[learner] = raw
        return lr

    def __setitem__(self, learner: str, figures: LearnerFigures) -> None:
        self._loaded[learner] = figures
        members = self.members()
        member_set = cast(set[str], self._member_set)
        if learner not in member_set:
            members.append(learner)
            member_set.add(learner)
            self.members_changed = True

    def items(self) -> list[tuple[str, LearnerFigures]]:
        """Every member with a record, first joined first (all read from the table)."""
        out = []
        for learner in self.members():
            lr = self.get(learner)
            if lr is not None:  # a member whose record a kill kept from being stored
                out.append((learner, lr))
        return out

    def values(self) -> list[LearnerFigures]:
        return [lr for _name, lr in self.items()]

    def writes(self) -> Iterator[tuple[bytes, bytes]]:
        """The member list if someone joined, then every learner whose record changed."""
        if self.members_changed:
            yield members_key(self._ck), orjson.dumps(self.members())
        for learner, lr in self._loaded.items():
            raw = orjson.dumps(lr)
            if raw != self._stored.get(learner):
                yield learner_key(self._ck, learner), raw


class StoredCohort:
    """A cohort read from the table (or new): ``doc`` is what the logic works on."""

    __slots__ = ("ck", "doc", "learners", "_stored")

    def __init__(self, ck: bytes, doc: CohortDoc, learners: StoredLearners, stored: bytes | None) -> None:
        self.ck = ck
        self.doc = doc
        self.learners = learners
        self._stored = stored

    @classmethod
    def load(cls, table: StateTable, ck: str, event: Any) -> StoredCohort | None:
        key = ck.encode()
        raw = _read(table, key, event)
        if raw is None:
            return None
        doc = orjson.loads(raw)
        inside = doc.pop(LEARNERS, None)
        learners = StoredLearners(table, key, event, preloaded=inside)
        doc[LEARNERS] = learners
        return cls(key, cast(CohortDoc, doc), learners, raw)

    @classmethod
    def new(cls, table: StateTable, school: str, course: str, cohort: str, event: Any) -> StoredCohort:
        doc = new_cohort(school, course, cohort)
        key = f"{school}|{course}|{cohort}".encode()
        learners = StoredLearners(table, key, event, new=True)
        doc[LEARNERS] = cast(Any, learners)
        return cls(key, doc, learners, None)

    def writes(self) -> list[tuple[bytes, bytes]]:
        """What changed since it was read, in the order a kill between two writes is safe in."""
        header = orjson.dumps({k: v for k, v in self.doc.items() if k != LEARNERS})
        own = [(self.ck, header)] if header != self._stored else []
        rest = list(self.learners.writes())
        # An older worker's document (learners inside) last: until then it still holds them.
        return rest + own if self.learners.whole else own + rest
