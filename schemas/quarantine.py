"""The quarantine: statements refused at the edge, kept with their reasons (issue 14).

Every statement a producer refuses (the gateway's 400, a replay's or bridge's reject)
becomes one :class:`QuarantineRecord` on ``xapi.quarantine`` (keyed by school), which
the quarantine sink writes to the ClickHouse table ``quarantine`` (TTL-bounded). A
record keeps the raw body as it arrived (a whole refused request, or one line of a
file), the school and credential, the stage that refused it, when, under which xAPI
version, and every violation found (rule ids, JSON paths, messages).

``learnpulse quarantine replay`` re-drives records through validation under the
credential's current policy. It is idempotent: a record's statements keep their ids,
and a statement that arrived without one gets :func:`redrive_statement_id`, derived
from the record, so that two replays store it once. The replay then writes the record
again with a higher ``version`` and its new ``state`` (the table keeps the latest).

JSON, version 1::

    {"v": 1, "id": "<uuid>", "school": "s-001", "credential": "lp_…", "stage": "gateway",
     "received": 1732406400123, "xapi_version": "1.0.3", "state": "refused", "version": 1732406400123,
     "rules": ["objectType.value"], "paths": ["$.object.objectType"], "messages": ["…"],
     "body": "<the raw body as text>", "body_bytes": 1234, "truncated": false}
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass, field, replace

import orjson

from .errors import InvalidStatement

RECORD_VERSION = 1
# States: refused at the edge; accepted by a replay (every statement stored); refused
# again by a replay (with the reasons it found then).
REFUSED, ACCEPTED, REFUSED_AGAIN = "refused", "accepted", "refused-again"
STATES = (REFUSED, ACCEPTED, REFUSED_AGAIN)
# Bodies are kept up to this size; a longer one is cut (and cannot be replayed).
MAX_BODY_BYTES = 256 * 1024
# Namespace of the ids given on re-drive to statements that arrived without one.
_REDRIVE_NS = uuid.UUID("6f1c9b4e-2d7a-5e83-9c41-0b5d8e2f7a16")


def redrive_statement_id(record_id: str, index: int) -> str:
    """The id a re-driven statement without one gets: the same for every replay of a record."""
    return str(uuid.uuid5(_REDRIVE_NS, f"{record_id.lower()}/{index}"))


@dataclass(frozen=True)
class QuarantineRecord:
    record_id: str
    school: str
    credential: str
    stage: str
    received_ms: int
    xapi_version: str
    body: bytes
    rules: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    messages: tuple[str, ...] = ()
    state: str = REFUSED
    # Last change (epoch ms): the table keeps the record with the highest version.
    version: int = 0
    truncated: bool = False
    body_bytes: int = field(default=-1)

    @classmethod
    def new(
        cls, school: str, credential: str, stage: str, received_ms: int, xapi_version: str, body: bytes,
        violations: list[InvalidStatement] | tuple[InvalidStatement, ...] = (),
    ) -> QuarantineRecord:  # fmt: skip
        """A fresh record (random id), the body cut at ``MAX_BODY_BYTES``."""
        size = len(body)
        return cls(
            record_id=str(uuid.uuid4()), school=school, credential=credential, stage=stage,
            received_ms=received_ms, xapi_version=xapi_version, body=body[:MAX_BODY_BYTES],
            rules=tuple(v.rule for v in violations), paths=tuple(v.path for v in violations),
            messages=tuple(v.message for v in violations), version=received_ms,
            truncated=size > MAX_BODY_BYTES, body_bytes=size,
        )  # fmt: skip

    def with_reasons(self, violations: list[InvalidStatement] | tuple[InvalidStatement, ...]) -> QuarantineRecord:
        return replace(
            self, rules=tuple(v.rule for v in violations), paths=tuple(v.path for v in violations),
            messages=tuple(v.message for v in violations),
        )  # fmt: skip

    @property
    def key(self) -> bytes:
        return self.school.encode()

    def encode(self) -> bytes:
        try:
            text, encoding = self.body.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(self.body).decode(), "base64"
        return orjson.dumps(
            {
                "v": RECORD_VERSION, "id": self.record_id, "school": self.school, "credential": self.credential,
                "stage": self.stage, "received": self.received_ms, "xapi_version": self.xapi_version,
                "state": self.state, "version": self.version, "rules": list(self.rules), "paths": list(self.paths),
                "messages": list(self.messages), "body": text, "encoding": encoding,
                "body_bytes": self.body_bytes if self.body_bytes >= 0 else len(self.body), "truncated": self.truncated,
            }
        )  # fmt: skip

    @classmethod
    def decode(cls, raw: bytes | None) -> QuarantineRecord:
        """Parse and shape-check a record; raises :class:`InvalidStatement`."""
        try:
            doc = orjson.loads(raw or b"")
        except orjson.JSONDecodeError as err:
            raise InvalidStatement("quarantine.json", f"not JSON: {err}") from err
        if not isinstance(doc, dict) or doc.get("v") != RECORD_VERSION:
            raise InvalidStatement("quarantine.version", f"unknown quarantine record {str(doc)[:60]!r}", "$.v")
        try:
            uuid.UUID(doc["id"])
            text = doc["body"]
            body = base64.b64decode(text) if doc.get("encoding") == "base64" else text.encode("utf-8")
            record = cls(
                record_id=doc["id"], school=_text(doc["school"]), credential=str(doc["credential"]),
                stage=str(doc["stage"]), received_ms=int(doc["received"]), xapi_version=str(doc["xapi_version"]),
                body=body, rules=tuple(map(str, doc["rules"])), paths=tuple(map(str, doc["paths"])),
                messages=tuple(map(str, doc["messages"])), state=str(doc["state"]), version=int(doc["version"]),
                truncated=bool(doc["truncated"]), body_bytes=int(doc["body_bytes"]),
            )  # fmt: skip
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise InvalidStatement("quarantine.shape", f"malformed quarantine record: {err!r}") from err
        if record.state not in STATES:
            raise InvalidStatement("quarantine.state", f"state must be one of {STATES}", "$.state")
        return record


def _text(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("school must be a non-empty string")
    return value
