"""Pull statements from a remote LRS into Kafka, resuming exactly where it stopped.

The cursor is the greatest ``stored`` time (in milliseconds) already delivered and the
ids of the delivered statements stored in that same millisecond. Statements share a
``stored`` time routinely (an LRS stamps one POSTed batch with one time, or
microseconds apart that truncate to one millisecond), so a timestamp alone cannot say
where a page boundary or a crash fell; the ids can. A statement is new when
``stored > cursor`` or ``stored == cursor`` and its id is not in the set.

Each poll asks for ``since`` = cursor − 1 ms (``since`` is exclusive and LRSs keep
microseconds: asking a millisecond early and filtering here is exact), ``ascending``,
and follows ``more`` links. After every page the new statements are published, Kafka
acknowledges them, the rejects are fsynced, and only then the cursor file is replaced
(atomically). A crash before that point re-reads the page and re-sends it with the
same statement ids (the sinks store each id once); after it, nothing is read twice.

Some LRSs filter ``since`` on ``timestamp`` instead of ``stored`` (Ralph does, in every
backend). With those, run with ``use_since=False``: the bridge reads from the start
each poll and the same cursor filter drops what was delivered.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from schemas import metrics
from schemas.errors import InvalidStatement
from schemas.policy import STRICT_POLICY, IngestPolicy
from schemas.xapi.timefmt import format_ms, parse_ms
from schemas.xapi.validate import validate_statement_tolerant

from .durable import read_json, write_json_atomic
from .kafka import DeliveryFailed
from .publisher import StatementPublisher
from .quarantine import QuarantineWriter, count_tolerated
from .replay import xapi_version_of
from .tincan_compat import LrsError, LrsUnavailable, StatementsClient

log = logging.getLogger("learnpulse.bridge")

_CURSOR_VERSION = 1


class BridgeError(Exception):
    """The bridge cannot go on (LRS refuses the credentials or the resource, or too many failures)."""


@dataclass
class BridgeCursor:
    """Greatest delivered ``stored`` (ms) and the ids delivered at exactly that millisecond."""

    stored_ms: int | None = None
    ids: set[str] = field(default_factory=set)

    def is_new(self, stored_ms: int, statement_id: str) -> bool:
        if self.stored_ms is None or stored_ms > self.stored_ms:
            return True
        return stored_ms == self.stored_ms and statement_id not in self.ids

    def advance(self, delivered: list[tuple[int, str]]) -> None:
        """Take in a page of delivered ``(stored_ms, id)``, in any order."""
        if not delivered:
            return
        top = max(ms for ms, _ in delivered)
        if self.stored_ms is None or top > self.stored_ms:
            self.stored_ms = top
            self.ids = set()
        self.ids.update(sid for ms, sid in delivered if ms == self.stored_ms)

    def since(self) -> str | None:
        """The ``since`` query value: one millisecond before the cursor (see the module docstring)."""
        return None if self.stored_ms is None else format_ms(self.stored_ms - 1)

    def to_json(self) -> dict[str, Any]:
        return {
            "stored_ms": self.stored_ms,
            "stored": None if self.stored_ms is None else format_ms(self.stored_ms),
            "ids": sorted(self.ids),
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> BridgeCursor:
        return cls(doc.get("stored_ms"), set(doc.get("ids") or ()))


@dataclass(frozen=True)
class BridgeOptions:
    school: str
    cursor_path: Path
    rejects_path: Path
    page_size: int = 500
    use_since: bool = True
    xapi_version: str = "auto"
    poll_interval_s: float = 5.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    # With ``once``: give up after this many consecutive failed attempts.
    max_attempts: int = 8
    # The ingestion policy of the school's credential (schemas.policy) and its key.
    policy: IngestPolicy = STRICT_POLICY
    credential: str = ""


@dataclass
class BridgeCounts:
    """``fetched``: statements the LRS returned; ``skipped``: already delivered before."""

    fetched: int = 0
    sent: int = 0
    rejected: int = 0
    skipped: int = 0
    pages: int = 0


class LrsBridge:
    """One remote LRS → ``xapi.statements`` under one school."""

    def __init__(
        self,
        client: StatementsClient,
        publisher: StatementPublisher,
        options: BridgeOptions,
        stop: threading.Event | None = None,
        sleep: Callable[[float], None] | None = None,
        quarantine: QuarantineWriter | None = None,
    ) -> None:
        self.client = client
        self.publisher = publisher
        self.quarantine = quarantine
        self.options = options
        self.stop = stop or threading.Event()
        self._sleep = sleep or (lambda s: self.stop.wait(s))
        self.cursor, committed_rejects = self._load_cursor()
        options.rejects_path.parent.mkdir(parents=True, exist_ok=True)
        rejects = options.rejects_path
        if committed_rejects is not None and rejects.exists() and rejects.stat().st_size > committed_rejects:
            with open(rejects, "r+b") as f:
                f.truncate(committed_rejects)  # rejects of a page that will be read again
        self._rejects = open(options.rejects_path, "ab")  # noqa: SIM115  (closed in close())
        self.counts = BridgeCounts()
        self._event = metrics.PRODUCER_EVENT_TIME.labels("bridge")
        self._rate = metrics.PRODUCER_RATE.labels("bridge")

    def _load_cursor(self) -> tuple[BridgeCursor, int | None]:
        doc = read_json(self.options.cursor_path)
        if doc is None:
            return BridgeCursor(), None
        if doc.get("v") != _CURSOR_VERSION:
            raise BridgeError(f"cursor file {self.options.cursor_path} has unknown version {doc.get('v')!r}")
        return BridgeCursor.from_json(doc["cursor"]), int(doc.get("rejects_size", 0))

    def close(self) -> None:
        self._rejects.close()

    # -- one pass ----------------------------------------------------------------------
    def sync(self) -> BridgeCounts:
        """Read everything new (following ``more``) and deliver it; returns this pass's counts."""
        counts = BridgeCounts()
        params = {"ascending": "true", "limit": str(self.options.page_size)}
        since = self.cursor.since() if self.options.use_since else None
        if since is not None:
            params["since"] = since
        result = self.client.fetch_statements(params)
        while True:
            started = time.monotonic()
            self._deliver_page(result.get("statements") or [], counts)
            counts.pages += 1
            self._rate.set(counts.sent / max(time.monotonic() - started, 1e-6))
            more = result.get("more")
            if not more or self.stop.is_set():
                break
            result = self.client.fetch_more(more)
        return counts

    def _deliver_page(self, statements: list[Any], counts: BridgeCounts) -> None:
        delivered: list[tuple[int, str]] = []
        for stmt in statements:
            counts.fetched += 1
            try:
                if not isinstance(stmt, dict):
                    raise InvalidStatement("statement.type", "the LRS returned something that is not a statement")
                sid, stored = stmt.get("id"), stmt.get("stored")
                if not isinstance(sid, str) or not isinstance(stored, str):
                    raise InvalidStatement(
                        "bridge.lrs-fields", "the LRS returned a statement without id or stored", "$.stored"
                    )
                stored_ms = parse_ms(stored, "$.stored")
            except InvalidStatement as err:
                self._reject(stmt, err)
                counts.rejected += 1
                continue
            if not self.cursor.is_new(stored_ms, sid):
                counts.skipped += 1
                continue
            delivered.append((stored_ms, sid))
            try:
                version = xapi_version_of(stmt, self.options.xapi_version)
                violations = validate_statement_tolerant(stmt, version=version, tolerate=self.options.policy.tolerated)
                if violations:
                    self.publisher.publish(self.options.school, stmt, violations=violations)
                    count_tolerated("bridge", [violations])
                else:
                    self.publisher.publish(self.options.school, stmt)
                counts.sent += 1
            except InvalidStatement as err:
                self._reject(stmt, err)
                counts.rejected += 1
        self._commit(delivered)

    def _reject(self, stmt: Any, err: InvalidStatement) -> None:
        metrics.STATEMENTS_REJECTED.labels("bridge", err.rule).inc()
        record = {"source": self.client.endpoint, "rule": err.rule, "message": err.message, "path": err.path}
        self._rejects.write(orjson.dumps({**record, "original": stmt}) + b"\n")
        if self.quarantine is not None:
            version = xapi_version_of(stmt, self.options.xapi_version) if isinstance(stmt, dict) else "1.0.3"
            self.quarantine.keep(self.options.school, self.options.credential, version, orjson.dumps(stmt), err)

    def _commit(self, delivered: list[tuple[int, str]]) -> None:
        # Kafka acknowledged → rejects durable → cursor replaced: in this order only.
        self.publisher.flush()
        self._rejects.flush()
        os.fsync(self._rejects.fileno())
        if not delivered:
            return
        self.cursor.advance(delivered)
        write_json_atomic(
            self.options.cursor_path,
            {
                "v": _CURSOR_VERSION,
                "lrs": self.client.endpoint,
                "school": self.options.school,
                "cursor": self.cursor.to_json(),
                "rejects_size": self._rejects.tell(),
            },
        )
        self._event.set(self.cursor.stored_ms / 1000)  # type: ignore[operator]

    # -- the loop ------------------------------------------------------------------------
    def run(self, once: bool = False, progress: Callable[[BridgeCounts], None] | None = None) -> BridgeCounts:
        """Poll until stopped (``once``: until caught up), backing off on failures.

        LRS refusals that retrying cannot fix (401, 403, 404, 400) raise
        :class:`BridgeError` at once; unreachable LRS, 5xx/429 and Kafka delivery
        failures are retried with exponential backoff (with ``once``, at most
        ``max_attempts`` times in a row).
        """
        opts = self.options
        failures = 0
        while not self.stop.is_set():
            try:
                counts = self.sync()
            except LrsError as err:
                raise BridgeError(f"{self.client.endpoint}: {err}") from err
            except (LrsUnavailable, DeliveryFailed) as err:
                failures += 1
                kind = "lrs_unavailable" if isinstance(err, LrsUnavailable) else "delivery"
                metrics.ERRORS.labels("bridge", kind).inc()
                if once and failures >= opts.max_attempts:
                    raise BridgeError(f"giving up after {failures} failed attempts: {err}") from err
                delay = min(opts.backoff_max_s, opts.backoff_initial_s * 2 ** (failures - 1))
                delay *= random.uniform(0.5, 1.0)  # jitter: many bridges do not retry in step
                log.warning("bridge attempt %d failed (%s); retrying in %.1fs", failures, err, delay)
                self._sleep(delay)
                continue
            failures = 0
            for name in ("fetched", "sent", "rejected", "skipped", "pages"):
                setattr(self.counts, name, getattr(self.counts, name) + getattr(counts, name))
            if progress is not None:
                progress(self.counts)
            if once:
                break
            self._sleep(opts.poll_interval_s)
        return self.counts
