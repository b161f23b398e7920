"""Records on the derived topics, produced by ``streams/`` and written by ``sinks/``.

Every record carries a deterministic ``version`` (a function of the input only, never of
the clock or of the run), so a replayed record replaces its earlier copy in ClickHouse.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import orjson

from .errors import InvalidStatement


@dataclass(frozen=True, slots=True)
class ActivityRecord:
    """Statements by one learner in one course within one event-time hour, so far.

    Topic ``learnpulse.activity``, key = learner. ``version`` = offset on
    ``xapi.statements`` of the last statement counted; a later update always has a larger
    version, a replay the same one.
    """

    school: str
    course: str
    cohort: str
    learner: str
    hour_ms: int
    statements: int
    version: int

    def encode(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def decode(cls, raw: bytes | None) -> ActivityRecord:
        try:
            doc: dict[str, Any] = orjson.loads(raw or b"")
            return cls(**doc)
        except (orjson.JSONDecodeError, TypeError) as err:
            raise InvalidStatement("activity.decode", f"not an ActivityRecord: {err}") from err
