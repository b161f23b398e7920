"""Re-drive quarantined statements through validation (``learnpulse quarantine replay``).

Each record's body is parsed again and each of its statements validated under the
credential's policy as it is now. Idempotent:

- a statement that arrived without an id gets :func:`schemas.quarantine.redrive_statement_id`
  (derived from the record), so every replay of a record sends the same ids;
- ids already stored (``exists``: the LRS index) are not sent again;
- the record is written back to ``xapi.quarantine`` with its new state (``accepted``
  once every statement is stored, else ``refused-again`` with what is still wrong), and
  readers skip accepted records; the sinks collapse any copy by statement id anyway.

Nothing is all-or-nothing here (the producer already had its 400): the statements that
pass are stored, the rest stay quarantined with their reasons.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import orjson

from schemas.errors import InvalidStatement
from schemas.policy import IngestPolicy
from schemas.quarantine import ACCEPTED, REFUSED_AGAIN, QuarantineRecord, redrive_statement_id
from schemas.xapi.validate import attachments_needing_parts, validate_statement_tolerant

from .publisher import StatementPublisher
from .quarantine import count_tolerated


@dataclass
class RedriveCounts:
    records: int = 0
    accepted_records: int = 0
    sent: int = 0
    already_stored: int = 0
    still_refused: int = 0


def _statements(body: bytes) -> list[Any]:
    doc = orjson.loads(body)
    return doc if isinstance(doc, list) else [doc]


def redrive(
    records: Iterable[QuarantineRecord],
    policy_of: Callable[[QuarantineRecord], IngestPolicy],
    publisher: StatementPublisher,
    exists: Callable[[str, list[str]], set[str]],
    write_back: Callable[[QuarantineRecord], None],
    now_ms: Callable[[], int],
) -> RedriveCounts:
    """Re-drive ``records``; ``exists(school, ids)`` → the ids already stored (lower case)."""
    counts = RedriveCounts()
    for record in records:
        counts.records += 1
        tolerate = policy_of(record).tolerated
        problems: list[InvalidStatement] = []
        to_send: list[tuple[dict[str, Any], tuple[str, ...]]] = []
        try:
            statements = _statements(record.body)
        except orjson.JSONDecodeError as err:
            statements = []
            problems.append(InvalidStatement("json.parse", f"not JSON: {err}"))
        for i, st in enumerate(statements):
            path = f"$[{i}]" if len(statements) > 1 else "$"
            try:
                violations = validate_statement_tolerant(st, version=record.xapi_version, path=path, tolerate=tolerate)
                if attachments_needing_parts(st):
                    raise InvalidStatement("attachments.part-missing", "attachment contents are not quarantined",
                                           path + ".attachments")  # fmt: skip
            except InvalidStatement as err:
                problems.append(err)
                continue
            if "id" not in st:
                st = {**st, "id": redrive_statement_id(record.record_id, i)}
            to_send.append((st, violations))
        stored = exists(record.school, [st["id"].lower() for st, _ in to_send]) if to_send else set()
        for st, violations in to_send:
            if st["id"].lower() in stored:
                counts.already_stored += 1
                continue
            publisher.publish(record.school, st, violations=violations)
            if violations:
                count_tolerated("quarantine-replay", [violations])
            counts.sent += 1
        publisher.flush()  # stored before the record says so
        if problems:
            counts.still_refused += 1
            write_back(replace(record.with_reasons(problems), state=REFUSED_AGAIN, version=now_ms()))
        else:
            counts.accepted_records += 1
            write_back(replace(record, state=ACCEPTED, version=now_ms()))
    return counts
