"""An LRS client under faults: POSTs batches of statements with ids of its own and, like a
real client, sends the same request again (same ids, same body) when it got no answer or a
5xx/429, until it is answered or gives up."""

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


def statement(school: str, learner: int, seq: int) -> dict:
    """A course statement (answered, scored, with a duration) with a new id, timed now."""
    return {
        "id": str(uuid.uuid4()),
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "actor": {"objectType": "Agent", "account": {"homePage": "https://faults.example", "name": f"{school}-{learner}"}},
        "verb": {"id": "http://adlnet.gov/expapi/verbs/answered", "display": {"en-US": "answered"}},
        "object": {"objectType": "Activity", "id": f"https://faults.example/{school}/q/{seq % 13}",
                   "definition": {"type": "http://adlnet.gov/expapi/activities/cmi.interaction"}},
        "result": {"success": seq % 3 != 0, "score": {"scaled": 0.7}, "duration": "PT20S"},
        "context": {"contextActivities": {"parent": [{
            "id": f"https://faults.example/{school}/course",
            "definition": {"type": "http://adlnet.gov/expapi/activities/course"}}]}},
    }  # fmt: skip


@dataclass
class LoadResult:
    sent: set[str] = field(default_factory=set)  # ids in any request sent
    acked: set[str] = field(default_factory=set)  # ids of requests answered 200/204
    statuses: Counter = field(default_factory=Counter)  # every answer (or "no answer"), retries included
    retries: int = 0
    given_up: int = 0  # requests never answered with 2xx/4xx
    ack_times: list[float] = field(default_factory=list)  # monotonic time of each 2xx

    def longest_gap(self, start: float, end: float) -> float:
        """Longest stretch between ``start`` and ``end`` without an acknowledged request."""
        times = [start, *sorted(t for t in self.ack_times if start <= t <= end), end]
        return max(b - a for a, b in zip(times, times[1:], strict=False))


class Load:
    """``threads`` client threads posting ``rate`` statements/s in batches of ``batch``."""

    def __init__(self, gateway_url: str, credential: tuple[str, str], school: str, *, rate: float, batch: int,
                 threads: int = 4, learners: int = 40, give_up_s: float = 240) -> None:  # fmt: skip
        self.url = urlparse(gateway_url)
        self.auth = "Basic " + base64.b64encode(f"{credential[0]}:{credential[1]}".encode()).decode()
        self.school = school
        self.interval = batch * threads / rate
        self.batch = batch
        self.learners = learners
        self.give_up_s = give_up_s
        self.result = LoadResult()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._stopped_at: float | None = None
        self._seq = 0
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def start(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> LoadResult:
        """Stop sending new requests; wait for the retries of those sent (bounded by give_up_s)."""
        self._stopped_at = time.monotonic()
        self._stop.set()
        for t in self._threads:
            t.join(self.give_up_s + 60)
        return self.result

    def _next_batch(self, thread: int) -> list[dict]:
        with self._lock:
            seq, self._seq = self._seq, self._seq + self.batch
        learner = (seq // self.batch) % self.learners
        return [statement(self.school, learner, seq + i) for i in range(self.batch)]

    def _run(self, thread: int) -> None:
        time.sleep(thread * self.interval / len(self._threads))
        next_at = time.monotonic()
        while not self._stop.is_set():
            batch = self._next_batch(thread)
            self._post_until_answered(batch)
            next_at += self.interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def _post_until_answered(self, batch: list[dict]) -> None:
        body = orjson.dumps(batch)
        ids = [s["id"] for s in batch]
        with self._lock:
            self.result.sent.update(ids)
        attempt = 0
        while True:
            status = self._post(body)
            with self._lock:
                self.result.statuses[status] += 1
                if status in (200, 204):
                    self.result.acked.update(ids)
                    self.result.ack_times.append(time.monotonic())
                    return
            if isinstance(status, int) and status < 500 and status != 429:
                return  # refused for good (4xx): not acknowledged, and not to be stored
            stopped = self._stopped_at
            if stopped is not None and time.monotonic() - stopped > self.give_up_s:
                with self._lock:
                    self.result.given_up += 1
                return
            attempt += 1
            with self._lock:
                self.result.retries += 1
            time.sleep(min(2.0, 0.25 * 2 ** min(attempt, 4)))

    def _post(self, body: bytes) -> int | str:
        conn = http.client.HTTPConnection(self.url.hostname, self.url.port, timeout=20)
        try:
            conn.request("POST", f"{self.url.path}/statements", body, {
                "Authorization": self.auth, "X-Experience-API-Version": "1.0.3",
                "Content-Type": "application/json",
            })  # fmt: skip
            resp = conn.getresponse()
            resp.read()
            return resp.status
        except (OSError, http.client.HTTPException):
            return "no answer"
        finally:
            conn.close()
