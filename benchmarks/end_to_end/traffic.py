"""Real-shaped traffic: single-statement POSTs (``batch`` > 1 for comparison) at a fixed rate,
from many learners across courses and cohorts, over keep-alive connections (one asyncio loop
in a thread of its own, one task per connection). Open loop: request k is due at ``start + k ×
batch / rate`` whatever the answers; a request not yet sent when the step ends was offered but
not sent (the clients fell behind), and counts as not accepted.

The load generator shares the machine's cores with the pipeline it measures, so it is kept
cheap: one event loop (a thread per connection with ``http.client`` cost about what the stream
worker did per 1,000 statements) and a small HTTP/1.1 client of its own (:class:`_Connection`)."""

from __future__ import annotations

import asyncio
import base64
import http.client
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlparse

import orjson
import uvloop

from schemas.profile import COURSE_ACTIVITY_TYPE, DEFAULT_COHORT_EXTENSION, SKILL_EXTENSION

from .clock import EventClock

HOME = "https://e2e.example"
VERSION = "1.0.3"


@dataclass(frozen=True)
class Shape:
    school: str
    learners: int = 10_000
    courses: int = 8
    cohorts: int = 3  # per course

    def course_cohort(self, learner: int) -> tuple[int, int]:
        return learner % self.courses, (learner // self.courses) % self.cohorts


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def actor(learner: str) -> dict:
    return {"objectType": "Agent", "account": {"homePage": HOME, "name": learner}}


def statement(shape: Shape, learner: str, course: int, cohort: int, seq: int, timestamp: str | None = None) -> dict:
    """answered (a scored interaction exercising a skill), experienced or completed, in a
    course (parent context) and cohort (context extension): work for engagement, mastery and
    cohort health alike. ``timestamp``: the run's event clock (``.clock``), else now."""
    course_id = f"{HOME}/{shape.school}/course/{course}"
    kind = seq % 3
    item = seq % 17
    if kind == 0:
        verb, obj, result = "answered", {
            "id": f"{course_id}/q/{item}",
            "definition": {"type": "http://adlnet.gov/expapi/activities/cmi.interaction",
                           "extensions": {SKILL_EXTENSION: f"{course_id}/skill/{item % 5}"}},
        }, {"success": seq % 4 != 0, "score": {"scaled": 0.25 * (seq % 5)}, "duration": "PT25S"}
    elif kind == 1:
        verb, obj, result = "experienced", {
            "id": f"{course_id}/page/{item}",
            "definition": {"type": "http://adlnet.gov/expapi/activities/module"},
        }, {"duration": "PT1M10S"}
    else:
        verb, obj, result = "completed", {
            "id": f"{course_id}/unit/{item % 6}",
            "definition": {"type": "http://adlnet.gov/expapi/activities/lesson"},
        }, {"completion": True, "success": seq % 5 != 0, "score": {"scaled": 0.8}, "duration": "PT4M"}
    return {
        "id": str(uuid.uuid4()),
        "timestamp": timestamp or now_iso(),
        "actor": actor(learner),
        "verb": {"id": f"http://adlnet.gov/expapi/verbs/{verb}", "display": {"en-US": verb}},
        "object": {"objectType": "Activity", **obj},
        "result": result,
        "context": {
            "contextActivities": {"parent": [{"id": course_id, "definition": {"type": COURSE_ACTIVITY_TYPE}}]},
            "extensions": {DEFAULT_COHORT_EXTENSION: f"{course_id}/cohort/{cohort}"},
        },
    }  # fmt: skip


def learner_statement(shape: Shape, seq: int, timestamp: str | None = None) -> dict:
    learner = seq % shape.learners  # round robin: every learner in turn, ~one statement per request
    course, cohort = shape.course_cohort(learner)
    return statement(shape, f"learner-{learner}", course, cohort, seq, timestamp)


class Client:
    """One keep-alive connection to the gateway; reconnects after an error."""

    def __init__(self, gateway_url: str, credential: tuple[str, str], timeout: float = 30) -> None:
        self.url = urlparse(gateway_url)
        self.auth = "Basic " + base64.b64encode(f"{credential[0]}:{credential[1]}".encode()).decode()
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int | str, dict, bytes]:
        headers = {"Authorization": self.auth, "X-Experience-API-Version": VERSION}
        if body is not None:
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):  # a keep-alive connection the server closed meanwhile: once more, fresh
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.url.hostname, self.url.port, timeout=self.timeout)
            try:
                self._conn.request(method, f"{self.url.path}{path}", body, headers)
                resp = self._conn.getresponse()
                data = resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    self.close()
                return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as err:
                self.close()
                if attempt == 2:
                    return type(err).__name__, {}, b""
            except (OSError, http.client.HTTPException) as err:
                self.close()
                return type(err).__name__, {}, b""
        return "no answer", {}, b""

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


@dataclass
class StepLoad:
    offered: int = 0  # statements due within the step
    sent: int = 0
    accepted: int = 0  # statements in requests answered 2xx
    statuses: Counter = field(default_factory=Counter)  # per request
    latencies: list[float] = field(default_factory=list)  # seconds, per answered request
    started: float = 0.0
    ended: float = 0.0  # when the last request of the step was answered


class _Schedule:
    """Open-loop due times: request k at ``start + k × interval``; none once all are taken or
    the step is over (the clients fell that far behind)."""

    def __init__(self, requests: int, start: float, interval: float, end: float) -> None:
        self.requests = requests
        self.start = start
        self.interval = interval
        self.end = end
        self._next = 0

    def take(self) -> int | None:
        if self._next >= self.requests or time.monotonic() > self.end:
            return None
        k = self._next
        self._next += 1
        return k

    def at(self, k: int) -> float:
        return self.start + k * self.interval


class Load:
    """Posts ``rate`` statements/s for ``duration`` s in requests of ``batch`` over ``clients``
    keep-alive connections, stamped by ``clock`` (an :class:`~.clock.EventClock`; None: the wall clock)."""

    def __init__(self, gateway_url: str, credential: tuple[str, str], shape: Shape, *, clients: int,
                 batch: int, clock: EventClock | None = None, timeout: float = 30) -> None:  # fmt: skip
        self.shape = shape
        self.batch = batch
        self.clock = clock
        self.clients = clients
        url = urlparse(gateway_url.rstrip("/") + "/statements")
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        self.timeout = timeout
        auth = "Basic " + base64.b64encode(f"{credential[0]}:{credential[1]}".encode()).decode()
        self.head = (
            f"POST {url.path} HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: {auth}\r\n"
            f"X-Experience-API-Version: {VERSION}\r\nContent-Type: application/json\r\nContent-Length: "
        ).encode()
        self._seq = 0

    def run(self, rate: float, duration: float) -> StepLoad:
        """One step, on an event loop of its own in this thread (the caller's other threads go on)."""
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(self._run(rate, duration))

    async def _run(self, rate: float, duration: float) -> StepLoad:
        out = StepLoad()
        requests = int(rate * duration / self.batch)
        out.offered = requests * self.batch
        interval = self.batch / rate
        out.started = start = time.monotonic()
        due = _Schedule(requests, start, interval, end=start + duration + 1.0)
        connections = [_Connection(self.host, self.port, self.head, self.timeout) for _ in range(self.clients)]
        tasks = [asyncio.create_task(self._client(c, due, out)) for c in connections]
        await asyncio.wait(tasks, timeout=duration + 120)
        for task in tasks:
            task.cancel()
        for c in connections:
            c.close()
        return out

    async def _client(self, connection: _Connection, due: _Schedule, out: StepLoad) -> None:
        """One client: takes the next due request, waits for its time, posts it, records the answer."""
        while (k := due.take()) is not None:
            seq, self._seq = self._seq, self._seq + self.batch
            delay = due.at(k) - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            timestamp, stamped_ms = self.clock.stamp() if self.clock is not None else (None, 0)
            body = [learner_statement(self.shape, seq + i, timestamp) for i in range(self.batch)]
            payload = orjson.dumps(body[0] if self.batch == 1 else body)
            t0 = time.monotonic()
            status = await connection.post(payload)
            t1 = time.monotonic()
            out.sent += self.batch
            out.statuses[status] += 1
            if isinstance(status, int):
                out.latencies.append(t1 - t0)
            if status in (200, 204):
                out.accepted += self.batch
                if self.clock is not None:
                    self.clock.acknowledged(stamped_ms, t1)
            out.ended = max(out.ended, t1)


class _Connection:
    """One keep-alive HTTP/1.1 connection posting requests whose head is prepared once.

    HTTP kept to what the gateway's answers need (a status line, headers, a body of
    ``Content-Length`` or chunked, keep-alive unless the answer closes). The load generator
    shares the cores of the pipeline under test: with aiohttp's client it took 0.26–0.29
    CPU-s per 1,000 single-statement POSTs at 1,000–1,500/s, with this one 0.11–0.15
    (``bench_end_to_end --path server --rates 1000,1500``, 2026-12-07, alternated). Any
    failure (refused, reset, timeout, a malformed answer) is counted by its name and the next
    request opens a new connection."""

    def __init__(self, host: str, port: int, head: bytes, timeout: float) -> None:
        self.host, self.port, self.head, self.timeout = host, port, head, timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(self, payload: bytes) -> int | str:
        try:
            async with asyncio.timeout(self.timeout):
                return await self._exchange(payload)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, TimeoutError) as err:
            self.close()
            return type(err).__name__

    async def _exchange(self, payload: bytes) -> int:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._reader, self._writer
        assert reader is not None
        writer.write(self.head + str(len(payload)).encode() + b"\r\n\r\n" + payload)
        while True:
            status, length, chunked, close = _response_head(await reader.readuntil(b"\r\n\r\n"))
            if status >= 200:
                break  # a 1xx interim answer has no body: the final one follows
        if chunked:
            await _read_chunked(reader)
        elif length is not None:
            await reader.readexactly(length)
        else:
            await reader.read()  # delimited by the end of the connection
            close = True
        if close:
            self.close()
        return status

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


def _response_head(head: bytes) -> tuple[int, int | None, bool, bool]:
    """(status, Content-Length or None, chunked, the connection closes after this answer)."""
    lines = head.split(b"\r\n")
    version, status = lines[0].split(b" ", 2)[:2]
    length, chunked, close = None, False, version == b"HTTP/1.0"
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            close = value.strip().lower() == b"close"
    return int(status), length, chunked, close


async def _read_chunked(reader: asyncio.StreamReader) -> None:
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass  # trailer fields
            return
        await reader.readexactly(size + 2)
