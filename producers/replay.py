"""Replay statement files into Kafka: validate, send, reject with reasons, resume where it stopped.

Inputs (each optionally gzip-compressed, recognised by its magic bytes):

- **JSON Lines**: one statement per line (a line holding an array counts each element).
  A line that is not JSON is rejected on its own; the other lines go on.
- **JSON document**: an array of statements (read incrementally, so exports larger than
  memory work), one statement object, or an LRS ``StatementResult`` (``{"statements": […]}``).

Files named ``.jsonl``/``.ndjson`` are JSON Lines and ``.json`` are documents; other
names are recognised by their content.

Every item gets an ordinal (its position in the file). The durable state file keeps,
per input file, the ordinal to resume from and a hash of the file's head, plus the size
of the rejects file at that moment. It is advanced only after Kafka acknowledged every
statement before that ordinal and the rejects up to it are fsynced; after a crash the
items since the last commit are processed again, the rejects file is cut back to its
committed size, and statements without an ``id`` get the same derived id again, so a
re-sent statement is a duplicate the sinks collapse, never a new one.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from schemas import metrics
from schemas.errors import InvalidStatement
from schemas.xapi.timefmt import parse_ms
from schemas.policy import STRICT_POLICY, IngestPolicy
from schemas.xapi.validate import attachments_needing_parts, validate_statement_tolerant

from .durable import read_json, write_json_atomic
from .publisher import StatementPublisher
from .quarantine import QuarantineWriter, count_tolerated

log = logging.getLogger("learnpulse.replay")

HEAD_BYTES = 64 * 1024
_CHUNK = 1 << 20
_STATE_VERSION = 1
# Namespace of the ids given to statements that arrive without one (uuid5 of file head,
# school and ordinal): stable across resumes.
_ID_NAMESPACE = uuid.UUID("6f1d3a52-8f0e-4d7e-9a43-2c1b7e5d9f10")


class ReplayError(Exception):
    """The replay cannot go on as asked (e.g. an input changed since its saved position)."""


@dataclass(frozen=True, slots=True)
class Item:
    """One statement candidate read from a file."""

    ordinal: int
    line: int | None
    doc: Any = None
    error: InvalidStatement | None = None
    raw: str | None = None


def _open(path: Path) -> IO[bytes]:
    f = open(path, "rb")  # noqa: SIM115  (returned to the caller, who closes it)
    magic = f.read(2)
    f.seek(0)
    if magic == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=f, mode="rb")  # type: ignore[return-value]
    return f


def _kind_by_name(path: Path) -> str | None:
    name = path.name.lower()
    name = name.removesuffix(".gz")
    if name.endswith((".jsonl", ".ndjson")):
        return "lines"
    if name.endswith(".json"):
        return "document"
    return None


def iter_items(path: Path) -> Iterator[Item]:
    """Every item of ``path`` in order (see the module docstring for the formats)."""
    with _open(path) as f:
        first = f.readline()
        line_no = 1
        while first and not first.strip():
            first = f.readline()
            line_no += 1
        if not first:
            return
        kind = _kind_by_name(path)
        if kind is None:
            if first.lstrip().startswith(b"["):
                kind = "document"
            else:
                try:
                    orjson.loads(first)
                    kind = "lines"
                except orjson.JSONDecodeError:
                    kind = "document"
        if kind == "lines":
            yield from _line_items(first, line_no, f)
        elif first.lstrip().startswith(b"["):
            yield from _array_items(first, f)
        else:
            yield from _document_items(first + f.read())


def _line_items(first: bytes, line_no: int, f: IO[bytes]) -> Iterator[Item]:
    ordinal = 0
    line = first
    while line:
        if line.strip():
            try:
                doc = orjson.loads(line)
            except orjson.JSONDecodeError as err:
                text = line.decode("utf-8", "replace").rstrip("\r\n")
                yield Item(ordinal, line_no, error=_parse_error(f"line {line_no}: {err}"), raw=text)
                ordinal += 1
            else:
                for value in doc if isinstance(doc, list) else (doc,):
                    yield Item(ordinal, line_no, doc=value)
                    ordinal += 1
        line = f.readline()
        line_no += 1


def _document_items(raw: bytes) -> Iterator[Item]:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        yield Item(0, None, error=_parse_error(str(err)), raw=raw.decode("utf-8", "replace"))
        return
    if isinstance(doc, dict) and isinstance(doc.get("statements"), list) and "actor" not in doc:
        doc = doc["statements"]  # a StatementResult
    for i, value in enumerate(doc if isinstance(doc, list) else (doc,)):
        yield Item(i, None, doc=value)


def _array_items(first: bytes, f: IO[bytes]) -> Iterator[Item]:
    """Elements of a top-level JSON array, parsed a chunk at a time."""
    decoder = json.JSONDecoder()
    utf8 = codecs.getincrementaldecoder("utf-8")("replace")
    buf = utf8.decode(first)
    eof = False

    def fill() -> bool:
        nonlocal buf, eof
        if eof:
            return False
        chunk = f.read(_CHUNK)
        if not chunk:
            eof = True
            buf += utf8.decode(b"", final=True)
            return False
        buf += utf8.decode(chunk)
        return True

    def skip_ws(i: int) -> int:
        while True:
            while i < len(buf) and buf[i] in " \t\r\n":
                i += 1
            if i < len(buf) or not fill():
                return i

    pos = skip_ws(0) + 1  # past "["
    ordinal = 0
    pos = skip_ws(pos)
    if pos < len(buf) and buf[pos] == "]":
        return
    while True:
        try:
            value, end = decoder.raw_decode(buf, pos)
            after = skip_ws(end)  # make sure the value was not cut at the chunk's end
            if after >= len(buf) and not eof:
                raise json.JSONDecodeError("incomplete", buf, end)
        except json.JSONDecodeError as err:
            if fill():
                continue
            yield Item(ordinal, None, error=_parse_error(f"array element {ordinal}: {err}"), raw=buf[pos : pos + 4096])
            return
        yield Item(ordinal, None, doc=value)
        ordinal += 1
        pos = skip_ws(end)
        if pos < len(buf) and buf[pos] == ",":
            pos = skip_ws(pos + 1)
        elif pos < len(buf) and buf[pos] == "]":
            return
        else:
            yield Item(
                ordinal,
                None,
                error=_parse_error(f"expected ',' or ']' after element {ordinal - 1}"),
                raw=buf[pos : pos + 4096],
            )
            return
        if pos > _CHUNK:  # keep the buffer small
            buf = buf[pos:]
            pos = 0


def _parse_error(detail: str) -> InvalidStatement:
    return InvalidStatement("json.parse", f"not valid JSON ({detail})", "$")


def xapi_version_of(statement: Any, requested: str) -> str:
    """``requested``, or with ``auto`` the rules the statement's own ``version`` names (default 1.0.3)."""
    if requested != "auto":
        return requested
    v = statement.get("version") if isinstance(statement, dict) else None
    return "2.0.0" if isinstance(v, str) and v.startswith("2.0") else "1.0.3"


@dataclass
class ReplayCounts:
    """``read``: items read this run; ``skipped``: items before the saved position (already done)."""

    read: int = 0
    sent: int = 0
    rejected: int = 0
    skipped: int = 0

    def add(self, other: ReplayCounts) -> None:
        self.read += other.read
        self.sent += other.sent
        self.rejected += other.rejected
        self.skipped += other.skipped


@dataclass(frozen=True)
class ReplayOptions:
    school: str
    rejects_path: Path
    state_path: Path
    xapi_version: str = "auto"
    # Take the statement from this key of each item (e.g. corpora wrapping statements).
    unwrap: str | None = None
    restart: bool = False
    commit_every: int = 5_000
    commit_interval_s: float = 2.0
    # The ingestion policy of the credential the statements arrive under (schemas.policy),
    # and that credential's key (named in quarantine records).
    policy: IngestPolicy = STRICT_POLICY
    credential: str = ""


@dataclass
class _State:
    rejects_path: str
    rejects_size: int
    files: dict[str, dict[str, Any]] = field(default_factory=dict)


def _head(path: Path, length: int = HEAD_BYTES) -> tuple[str, int]:
    with open(path, "rb") as f:
        data = f.read(length)
    return hashlib.sha256(data).hexdigest(), len(data)


class Replayer:
    """Replays files through a publisher; one instance per rejects/state file pair."""

    def __init__(
        self,
        publisher: StatementPublisher,
        options: ReplayOptions,
        stop: threading.Event | None = None,
        progress: Callable[[str, ReplayCounts], None] | None = None,
        quarantine: QuarantineWriter | None = None,
    ) -> None:
        self.publisher = publisher
        self.quarantine = quarantine
        self.options = options
        self.stop = stop
        self.progress = progress
        self._state = self._load_state()
        options.rejects_path.parent.mkdir(parents=True, exist_ok=True)
        self._rejects = open(options.rejects_path, "ab")  # noqa: SIM115  (closed in close())
        self._rate = metrics.PRODUCER_RATE.labels("replay")
        self._event = metrics.PRODUCER_EVENT_TIME.labels("replay")

    def _load_state(self) -> _State:
        opts = self.options
        rejects = str(opts.rejects_path.resolve())
        doc = read_json(opts.state_path)
        if doc is not None and doc.get("v") != _STATE_VERSION:
            raise ReplayError(f"replay state {opts.state_path} has unknown version {doc.get('v')!r}")
        current = opts.rejects_path.stat().st_size if opts.rejects_path.exists() else 0
        if doc is None or doc["rejects"]["path"] != rejects:
            return _State(rejects, current, dict(doc["files"]) if doc else {})
        committed = int(doc["rejects"]["size"])
        if current > committed:
            # Rejects written after the last commit belong to items that will be read again.
            with open(opts.rejects_path, "r+b") as f:
                f.truncate(committed)
        return _State(rejects, min(committed, current), dict(doc["files"]))

    def close(self) -> None:
        self._rejects.close()

    def run(self, paths: list[Path]) -> dict[str, ReplayCounts]:
        """Replay ``paths`` in order; returns counts per file. Raises ``DeliveryFailed``/``ReplayError``."""
        out: dict[str, ReplayCounts] = {}
        for path in paths:
            if self.stop is not None and self.stop.is_set():
                break
            out[str(path)] = self._replay_file(path)
        return out

    def _replay_file(self, path: Path) -> ReplayCounts:
        opts = self.options
        key = str(path.resolve())
        counts = ReplayCounts()
        saved = None if opts.restart else self._state.files.get(key)
        skip_to = 0
        head_len = HEAD_BYTES
        if saved is not None:
            head_len = int(saved["head_len"])
            if _head(path, head_len)[0] != saved["head"]:
                raise ReplayError(
                    f"{path} changed since the replay that stopped at item {saved['position']}; "
                    "pass --restart to replay it from the start"
                )
            skip_to = int(saved["position"])
        head, head_len = _head(path, head_len)
        position = skip_to
        pending = 0
        last_commit = time.monotonic()
        last_ts: str | None = None
        sent_at_commit = 0
        for item in iter_items(path):
            if item.ordinal < skip_to:
                counts.skipped += 1
                continue
            if self.stop is not None and self.stop.is_set():
                break
            counts.read += 1
            ts = self._process(path, head, item, counts)
            last_ts = ts or last_ts
            position = item.ordinal + 1
            pending += 1
            if pending >= opts.commit_every or (
                pending & 255 == 0 and time.monotonic() - last_commit >= opts.commit_interval_s
            ):
                now = time.monotonic()
                self._rate.set((counts.sent - sent_at_commit) / max(now - last_commit, 1e-6))
                sent_at_commit = counts.sent
                self._commit(key, head, head_len, position, complete=False, last_ts=last_ts)
                pending, last_commit = 0, now
                if self.progress is not None:
                    self.progress(str(path), counts)
        else:
            self._commit(key, head, head_len, position, complete=True, last_ts=last_ts)
            if self.progress is not None:
                self.progress(str(path), counts)
            return counts
        self._commit(key, head, head_len, position, complete=False, last_ts=last_ts)
        return counts

    def _process(self, path: Path, head: str, item: Item, counts: ReplayCounts) -> str | None:
        opts = self.options
        if item.error is not None:
            self._reject(path, item, item.error, item.raw)
            counts.rejected += 1
            return None
        doc = item.doc
        try:
            if opts.unwrap is not None:
                if not isinstance(doc, dict) or opts.unwrap not in doc:
                    raise InvalidStatement(
                        "replay.unwrap", f"item has no {opts.unwrap!r} key to take the statement from"
                    )
                doc = doc[opts.unwrap]
            version = xapi_version_of(doc, opts.xapi_version)
            violations = validate_statement_tolerant(doc, version=version, tolerate=opts.policy.tolerated)
            if attachments_needing_parts(doc):
                raise InvalidStatement(
                    "attachments.part-missing",
                    "xAPI 1.0.3 Communication §1.5.2: an attachment without fileUrl needs its content as a "
                    "multipart/mixed part, which a statement file cannot carry",
                    "$.attachments",
                )
            if "id" not in doc:
                doc = {**doc, "id": str(uuid.uuid5(_ID_NAMESPACE, f"{opts.school}|{head}|{item.ordinal}"))}
            if violations:
                self.publisher.publish(opts.school, doc, violations=violations)
                count_tolerated("replay", [violations])
            else:
                self.publisher.publish(opts.school, doc)
        except InvalidStatement as err:
            self._reject(path, item, err, item.doc)
            counts.rejected += 1
            return None
        counts.sent += 1
        return doc.get("timestamp")

    def _reject(self, path: Path, item: Item, err: InvalidStatement, original: Any) -> None:
        metrics.STATEMENTS_REJECTED.labels("replay", err.rule).inc()
        record = {
            "source": str(path),
            "line": item.line,
            "item": item.ordinal,
            "rule": err.rule,
            "message": err.message,
            "path": err.path,
            "original": original,
        }
        self._rejects.write(orjson.dumps(record) + b"\n")
        if self.quarantine is not None:
            body = item.raw if item.error is not None and isinstance(item.raw, (bytes, str)) else orjson.dumps(original)
            body = body.encode() if isinstance(body, str) else body
            version = xapi_version_of(original, self.options.xapi_version) if isinstance(original, dict) else "1.0.3"
            self.quarantine.keep(self.options.school, self.options.credential, version, body, err)

    def _commit(self, key: str, head: str, head_len: int, position: int, complete: bool, last_ts: str | None) -> None:
        # Order matters: Kafka acknowledged, then rejects durable, then the cursor moves.
        self.publisher.flush()
        self._rejects.flush()
        os.fsync(self._rejects.fileno())
        state = self._state
        state.rejects_size = self._rejects.tell()
        state.files[key] = {"head": head, "head_len": head_len, "position": position, "complete": complete}
        write_json_atomic(
            self.options.state_path,
            {
                "v": _STATE_VERSION,
                "rejects": {"path": state.rejects_path, "size": state.rejects_size},
                "files": state.files,
            },
        )
        if last_ts is not None:
            try:
                self._event.set(parse_ms(last_ts) / 1000)
            except InvalidStatement:
                pass
