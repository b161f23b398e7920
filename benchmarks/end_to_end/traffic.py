"""Real-shaped traffic: single-statement POSTs (``batch`` > 1 for comparison) at a fixed rate,
from many learners across courses and cohorts, over keep-alive connections of a pool of
client threads. Open loop: request k is due at ``start + k × batch / rate`` whatever the
answers; a request not yet sent when the step ends was offered but not sent (the clients
fell behind), and counts as not accepted."""

from __future__ import annotations

import base64
import http.client
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlparse

import orjson

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
        "actor": {"objectType": "Agent", "account": {"homePage": HOME, "name": learner}},
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


class Load:
    """Posts ``rate`` statements/s for ``duration`` s in requests of ``batch``, from ``clients`` threads,
    stamped by ``clock`` (an :class:`~.clock.EventClock`; None: the wall clock)."""

    def __init__(self, gateway_url: str, credential: tuple[str, str], shape: Shape, *, clients: int,
                 batch: int, clock: EventClock | None = None) -> None:  # fmt: skip
        self.shape = shape
        self.batch = batch
        self.clock = clock
        self.clients = [Client(gateway_url, credential) for _ in range(clients)]
        self._seq = 0
        self._lock = threading.Lock()

    def run(self, rate: float, duration: float) -> StepLoad:
        out = StepLoad()
        requests = int(rate * duration / self.batch)
        out.offered = requests * self.batch
        interval = self.batch / rate
        state = {"next": 0}
        out.started = start = time.monotonic()
        end = start + duration

        def worker(client: Client) -> None:
            while True:
                with self._lock:
                    k = state["next"]
                    if k >= requests or time.monotonic() > end + 1.0:
                        return  # done, or so far behind that the step is over
                    state["next"] = k + 1
                    seq, self._seq = self._seq, self._seq + self.batch
                delay = start + k * interval - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                timestamp, stamped_ms = self.clock.stamp() if self.clock is not None else (None, 0)
                body = [learner_statement(self.shape, seq + i, timestamp) for i in range(self.batch)]
                payload = orjson.dumps(body[0] if self.batch == 1 else body)
                t0 = time.monotonic()
                status, _headers, _data = client.request("POST", "/statements", payload)
                t1 = time.monotonic()
                with self._lock:
                    out.sent += self.batch
                    out.statuses[status] += 1
                    if isinstance(status, int):
                        out.latencies.append(t1 - t0)
                    if status in (200, 204):
                        out.accepted += self.batch
                    out.ended = max(out.ended, t1)
                if status in (200, 204) and self.clock is not None:
                    self.clock.acknowledged(stamped_ms, t1)

        threads = [threading.Thread(target=worker, args=(c,), daemon=True) for c in self.clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join(duration + 120)
        return out

    def close(self) -> None:
        for c in self.clients:
            c.close()
