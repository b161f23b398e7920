"""The value on ``xapi.statements``: one learner's batch of canonical statements.

Version 1, JSON (orjson)::

    {"v": 1, "school": "s-001", "learner": "<hex pseudonym>", "received": 1732406400123,
     "statements": [{"course": "...", "cohort": "...", "statement": {...canonical xAPI...}}]}

``received`` is the LRS receive time in epoch milliseconds (processing time, used only
for freshness). ``course``/``cohort`` were decided by the producer from the school's
profile; nobody downstream re-derives them. The message key is the learner pseudonym.

Version 2 is version 1 plus, on an entry, ``"violations": ["objectType.value", …]``: the
rule ids a statement accepted under a tolerant ingestion policy breaks (it is stored
unchanged; see ``schemas.policy``). Writers write version 1 when no entry has any, so
conformant traffic is byte-for-byte what it was; readers take both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from .errors import InvalidStatement

ENVELOPE_VERSION = 1
ENVELOPE_VERSION_VIOLATIONS = 2
_READABLE = (ENVELOPE_VERSION, ENVELOPE_VERSION_VIOLATIONS)


@dataclass(frozen=True, slots=True)
class StatementEntry:
    course: str
    cohort: str
    statement: dict[str, Any]
    # Rule ids a tolerant policy let through (sorted); () for a conformant statement.
    violations: tuple[str, ...] = ()

    def as_json(self, statement: Any) -> dict[str, Any]:
        """The entry as it goes on the wire, with ``statement`` (a dict or an orjson Fragment)."""
        if self.violations:
            return {"course": self.course, "cohort": self.cohort, "statement": statement,
                    "violations": list(self.violations)}  # fmt: skip
        return {"course": self.course, "cohort": self.cohort, "statement": statement}


@dataclass(frozen=True, slots=True)
class StatementEnvelope:
    school: str
    learner: str
    received_ms: int
    entries: tuple[StatementEntry, ...]

    @property
    def key(self) -> bytes:
        return self.learner.encode()

    @property
    def version(self) -> int:
        """1, or 2 when an entry carries violations (older readers then refuse it, loudly)."""
        return ENVELOPE_VERSION_VIOLATIONS if any(e.violations for e in self.entries) else ENVELOPE_VERSION

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "v": self.version,
                "school": self.school,
                "learner": self.learner,
                "received": self.received_ms,
                "statements": [e.as_json(e.statement) for e in self.entries],
            }
        )

    @classmethod
    def decode(cls, raw: bytes | None) -> StatementEnvelope:
        """Parse and shape-check an envelope; raises :class:`InvalidStatement`."""
        if raw is None:
            raise InvalidStatement("envelope.empty", "message has no value")
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as err:
            raise InvalidStatement("envelope.json", f"not JSON: {err}") from err
        if not isinstance(doc, dict):
            raise InvalidStatement("envelope.shape", "envelope must be a JSON object")
        if doc.get("v") not in _READABLE:
            raise InvalidStatement("envelope.version", f"unknown envelope version {doc.get('v')!r}", "$.v")
        school, learner, received = doc.get("school"), doc.get("learner"), doc.get("received")
        if not isinstance(school, str) or not school:
            raise InvalidStatement("envelope.school", "school must be a non-empty string", "$.school")
        if not isinstance(learner, str) or not learner:
            raise InvalidStatement("envelope.learner", "learner must be a non-empty string", "$.learner")
        if not isinstance(received, int):
            raise InvalidStatement("envelope.received", "received must be epoch milliseconds", "$.received")
        items = doc.get("statements")
        if not isinstance(items, list) or not items:
            raise InvalidStatement("envelope.statements", "statements must be a non-empty list", "$.statements")
        entries = []
        for i, item in enumerate(items):
            if (
                not isinstance(item, dict)
                or not isinstance(item.get("statement"), dict)
                or not isinstance(item.get("course"), str)
                or not isinstance(item.get("cohort"), str)
            ):
                raise InvalidStatement(
                    "envelope.entry", "entry needs course, cohort (strings) and statement (object)", f"$.statements[{i}]"
                )
            violations = item.get("violations", ())
            if not isinstance(violations, (list, tuple)) or not all(isinstance(r, str) for r in violations):
                raise InvalidStatement(
                    "envelope.entry.violations", "violations must be a list of rule ids", f"$.statements[{i}]"
                )
            entries.append(StatementEntry(item["course"], item["cohort"], item["statement"], tuple(violations)))
        return cls(school, learner, received, tuple(entries))
