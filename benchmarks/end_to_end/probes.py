"""Freshness probes: a few statements per second from probe learners of their own, each
followed from its acknowledgement until it is (a) readable by id (a GET sent at once after
the acknowledgement, as a client reading its own write does, then every 20 ms until it
answers 200; whether that first GET found it is kept: read-your-writes), (b) covered by the
gateway's ``X-Experience-API-Consistent-Through``, (c) counted in its learner's
``engagement FINAL`` day row, and before that (worker) counted in an engagement record the
stream worker produced (read from the engagement topic: (c) minus (worker) is the engagement
sink's and ClickHouse's share); and per step (d): from the first acknowledgement of a statement
stamped at or after the step's crossing (``.clock``: event time ``H`` + the watermark lag) to
the first moment a ``cohort_health`` row with ``at = H`` is readable, per probe course/cohort.
(c) and (d) need ClickHouse readable while the pipeline runs (the server path), (d) the
run's event clock.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

import orjson

from schemas.identity import pseudonym

from .clock import EventClock, iso
from .traffic import HOME, Client, Shape, actor, statement

MEASURES = ("by id", "consistent", "worker", "engagement", "health")
# Followed per probe statement; "health" is per step and cohort.
PER_PROBE = MEASURES[:-1]


def iso_ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


@dataclass
class Probe:
    id: str
    learner: str  # pseudonym
    nth: int  # how many statements of this learner were acknowledged, this one included
    course: str
    cohort: str
    acked: float  # monotonic
    acked_ms: int  # wall clock, epoch ms
    stored_ms: int | None = None
    at: dict | None = None  # measure -> monotonic time it was first seen
    first_read_ok: bool | None = None  # the first GET by id after the acknowledgement answered 200

    def seconds(self, measure: str) -> float | None:
        t = (self.at or {}).get(measure)
        return None if t is None else t - self.acked


@dataclass
class HealthWait:
    """A step's (d): when a ``cohort_health`` row at ``boundary_ms`` was first seen, per probe cohort."""

    boundary_ms: int
    seen: dict[tuple[str, str], float | None]  # (course id, cohort id) → monotonic, None: not yet

    def seconds_after(self, crossed_at: float | None) -> list[float]:
        if crossed_at is None:
            return []
        return [t - crossed_at for t in self.seen.values() if t is not None]


class WorkerRecords:
    """The probe learners' engagement day records as the worker produced them, and which
    probes they count.

    Every probe learner's records are kept from the start, not only those of learners with a
    probe waiting: a record can be on Kafka before the gateway's answer reaches the probe
    (the worker reads the committed transaction while the gateway confirms it in its index
    and answers), and skipping it would leave the probe to its learner's next statement.
    """

    def __init__(self, learners: set[str]) -> None:
        self._keys = {learner.encode() for learner in learners}
        self._days: dict[tuple[str, str, int], int] = {}  # (learner, course, day) → statements so far

    def take(self, key: bytes | None, value: bytes) -> None:
        if key not in self._keys:
            return  # the load's learners: skipped without decoding
        doc = orjson.loads(value)
        if doc.get("grain") == "day":
            self._days[(doc["learner"], doc["course"], doc["period_start_ms"])] = doc["statements"]

    def mark(self, waiting: list[Probe], seen: float) -> int:
        """Note ``seen`` on each waiting probe its learner's days now count (a record read before
        the acknowledgement: the acknowledgement's time); how many were noted."""
        counted: dict[str, int] = {}
        for (learner, _course, _day), n in self._days.items():
            counted[learner] = counted.get(learner, 0) + n
        noted = 0
        for p in waiting:
            if counted.get(p.learner, 0) >= p.nth:
                p.at["worker"] = max(seen, p.acked)
                noted += 1
        return noted


class Probes:
    def __init__(self, gateway_url: str, credential: tuple[str, str], shape: Shape, secret: bytes, *,
                 per_second: float, learners: int = 6, clickhouse=None,
                 clock: EventClock | None = None, kafka: tuple[str, str] | None = None) -> None:  # fmt: skip
        self.shape = shape
        self.kafka = kafka  # (bootstrap, engagement topic) for (worker), or None
        self.clock = clock
        self.health: HealthWait | None = None  # the current step's (d)
        self.interval = 1.0 / per_second
        self.names = [f"probe-{i}" for i in range(learners)]
        # Each probe learner's pseudonym, as the pipeline's records name it.
        self.pseudonyms = [pseudonym(secret, actor(name)) for name in self.names]
        self.counts = [0] * learners
        self.poster = Client(gateway_url, credential)
        self.reader = Client(gateway_url, credential)
        self.by_id_reader = Client(gateway_url, credential)
        self._acked: queue.SimpleQueue[Probe | None] = queue.SimpleQueue()
        self.clickhouse = clickhouse  # an engine factory (server path) or None
        self.probes: list[Probe] = []
        self.refused = 0
        self.clickhouse_errors = 0
        self.last_error = ""
        self._through: list[tuple[float, int]] = []  # (monotonic, Consistent-Through ms) as seen
        self._lock = threading.Lock()
        self._sending = threading.Event()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=f, daemon=True)
                         for f in (self._post_loop, self._by_id_loop, self._read_loop)]  # fmt: skip
        if clickhouse is not None:
            self._threads.append(threading.Thread(target=self._clickhouse_loop, daemon=True))
        self._engagement_consumer = None
        if kafka is not None:
            self._engagement_consumer = _latest_consumer(*kafka)  # before any probe: none of its records is missed
            self._threads.append(threading.Thread(target=self._worker_loop, daemon=True))

    def start(self) -> Probes:
        for t in self._threads:
            t.start()
        return self

    def sending(self, on: bool) -> None:
        (self._sending.set if on else self._sending.clear)()

    def stop(self) -> None:
        self._stop.set()
        self._sending.set()
        self._acked.put(None)
        for t in self._threads:
            t.join(10)
        self.poster.close()
        self.reader.close()
        self.by_id_reader.close()

    def between(self, start: float, end: float) -> list[Probe]:
        with self._lock:
            return [p for p in self.probes if start <= p.acked < end]

    def pending(self, probes: list[Probe]) -> int:
        wanted = [m for m in PER_PROBE if self.measured(m)]
        with self._lock:
            left = sum(1 for p in probes for m in wanted if m not in (p.at or {}))
            if self.clickhouse is not None and self.health is not None:
                left += sum(1 for t in self.health.seen.values() if t is None)
            return left

    def measured(self, measure: str) -> bool:
        if measure in ("engagement", "health"):
            return self.clickhouse is not None
        if measure == "worker":
            return self.kafka is not None
        return True

    def cohorts(self) -> list[tuple[str, str]]:
        """The probe learners' (course id, cohort id), each once."""
        out = []
        for k in range(len(self.names)):
            course_id, cohort_id = self._ids(k)
            if (course_id, cohort_id) not in out:
                out.append((course_id, cohort_id))
        return out

    def _ids(self, k: int) -> tuple[str, str]:
        course, cohort = self.shape.course_cohort(k)
        course_id = f"{HOME}/{self.shape.school}/course/{course}"
        return course_id, f"{course_id}/cohort/{cohort}"

    def expect_health(self, boundary_ms: int) -> HealthWait:
        """From now on, look for the probe cohorts' ``cohort_health`` rows at ``boundary_ms`` (this step's (d))."""
        wait = HealthWait(boundary_ms, dict.fromkeys(self.cohorts()))
        with self._lock:
            self.health = wait
        return wait

    def prime(self) -> int:
        """One statement per probe learner stamped at the clock's primer time (the hour before
        the first boundary): the probe cohorts' first hour, so the first boundary is evaluated.
        Returns how many were acknowledged."""
        assert self.clock is not None
        timestamp = iso(self.clock.primer_ms())
        done = 0
        for k, name in enumerate(self.names):
            course, cohort = self.shape.course_cohort(k)
            s = statement(self.shape, name, course, cohort, -1 - k, timestamp)
            status, _h, _b = self.poster.request("POST", "/statements", orjson.dumps(s))
            if status in (200, 204):
                self.counts[k] += 1  # (c) counts every statement of the learner
                done += 1
            else:
                self.refused += 1
        return done

    # -- posting -------------------------------------------------------------------
    def _post_loop(self) -> None:
        i = 0
        next_at = time.monotonic()
        while not self._stop.is_set():
            if not self._sending.is_set():
                self._sending.wait()
                next_at = time.monotonic()
            if self._stop.is_set():
                return
            k = i % len(self.names)
            course, cohort = self.shape.course_cohort(k)
            timestamp, stamped_ms = self.clock.stamp() if self.clock is not None else (None, 0)
            s = statement(self.shape, self.names[k], course, cohort, i, timestamp)
            status, _h, _b = self.poster.request("POST", "/statements", orjson.dumps(s))
            acked, acked_ms = time.monotonic(), int(time.time() * 1000)
            if status in (200, 204) and self.clock is not None:
                self.clock.acknowledged(stamped_ms, acked)
            if status in (200, 204):
                self.counts[k] += 1
                course_id = f"{HOME}/{self.shape.school}/course/{course}"
                probe = Probe(s["id"], self.pseudonyms[k], self.counts[k], course_id, f"{course_id}/cohort/{cohort}",
                              acked, acked_ms, at={})  # fmt: skip
                with self._lock:
                    self.probes.append(probe)
                self._acked.put(probe)
            else:
                self.refused += 1
            i += 1
            next_at += self.interval  # on a fixed schedule, whatever the answer took
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    # -- (a) and (b): through the gateway -----------------------------------------------
    def _by_id_loop(self) -> None:
        # Each probe read by id as soon as it is acknowledged (a connection of its own, so
        # never queued behind the Consistent-Through reads), then every 20 ms until found.
        while True:
            p = self._acked.get()
            if p is None or self._stop.is_set():
                return
            while not self._read_by_id(p) and not self._stop.wait(0.02):
                pass

    def _read_by_id(self, p: Probe) -> bool:
        status, headers, body = self.by_id_reader.request("GET", f"/statements?statementId={quote(p.id)}")
        seen = time.monotonic()
        self._note_through(seen, headers)
        found = status == 200
        if p.first_read_ok is None:
            p.first_read_ok = found
        if found:
            p.stored_ms = iso_ms(orjson.loads(body)["stored"])
            p.at["by id"] = seen
        return found

    def _note_through(self, seen: float, headers: dict) -> None:
        through = headers.get("x-experience-api-consistent-through")
        if through:
            with self._lock:
                self._through.append((seen, iso_ms(through)))

    def _read_loop(self) -> None:
        # Consistent-Through (on any answer) about every 100 ms, asked with the newest probe not yet covered.
        while not self._stop.wait(0.1):
            with self._lock:
                unsure = [p for p in self.probes if "consistent" not in p.at]
            if unsure:
                status, headers, _body = self.reader.request("GET", f"/statements?statementId={quote(unsure[-1].id)}")
                self._note_through(time.monotonic(), headers)
            self._resolve_consistent(unsure)

    def _resolve_consistent(self, unsure: list[Probe]) -> None:
        with self._lock:
            through = sorted(self._through)
        for p in unsure:
            if p.stored_ms is None:
                continue
            first = next((t for t, ms in through if t >= p.acked and ms >= p.stored_ms), None)
            if first is not None:
                p.at["consistent"] = first
        with self._lock:
            oldest = min((p.acked for p in self.probes if "consistent" not in p.at), default=time.monotonic())
            self._through = [x for x in self._through if x[0] >= oldest]

    # -- (worker): the stream worker's engagement records, on Kafka ------------------------
    def _worker_loop(self) -> None:
        consumer = self._engagement_consumer
        records = WorkerRecords(set(self.pseudonyms))
        try:
            while not self._stop.is_set():
                messages = consumer.consume(num_messages=1000, timeout=0.1)
                seen = time.monotonic()
                for m in messages:
                    if m.error() is None:
                        records.take(m.key(), m.value())
                with self._lock:
                    records.mark([p for p in self.probes if "worker" not in p.at], seen)
        finally:
            consumer.close()

    # -- (c) and (d): in ClickHouse --------------------------------------------------------
    def _clickhouse_loop(self) -> None:
        ch = None
        while not self._stop.wait(0.25):
            try:
                ch = ch or self.clickhouse()
                self._look_in_clickhouse(ch)
            except Exception as err:  # noqa: BLE001 - a query that failed under load: look again
                self.clickhouse_errors += 1
                self.last_error = repr(err)[:300]
                with contextlib.suppress(Exception):
                    ch.close()
                ch = None
        if ch is not None:
            ch.close()

    def _look_in_clickhouse(self, ch) -> None:
        self._look_for_health(ch)
        with self._lock:
            waiting = [p for p in self.probes if "engagement" not in p.at]
        if not waiting:
            return
        # Day rows summed over days: every statement of a probe learner is in one of them.
        # The probes' courses and cohorts narrow the read to their key ranges (the table is
        # sorted school, course, cohort, grain, …). This look is the benchmark's own load on
        # ClickHouse, in its CPU column: 16 → 12 ms a look at 1,000/s (system.query_log).
        counted = dict(ch.query(
            "SELECT learner, sum(statements) FROM {db}.engagement FINAL WHERE school = {school:String} "
            "AND course IN (SELECT arrayJoin({courses:Array(String)})) "
            "AND cohort IN (SELECT arrayJoin({cohorts:Array(String)})) "
            "AND grain = 'day' AND has({learners:Array(String)}, learner) GROUP BY learner",
            {"school": self.shape.school, "courses": sorted({p.course for p in waiting}),
             "cohorts": sorted({p.cohort for p in waiting}), "learners": sorted({p.learner for p in waiting})},
        ))  # fmt: skip
        seen = time.monotonic()
        for p in waiting:
            if counted.get(p.learner, 0) >= p.nth:
                p.at["engagement"] = seen

    def _look_for_health(self, ch) -> None:
        wait = self.health
        if wait is None or all(t is not None for t in wait.seen.values()):
            return
        rows = ch.query(
            "SELECT DISTINCT course, cohort FROM {db}.cohort_health WHERE school = {school:String} "
            "AND toUnixTimestamp(at) = {at:UInt32}", {"school": self.shape.school, "at": wait.boundary_ms // 1000},
        )  # fmt: skip
        seen = time.monotonic()
        with self._lock:
            for course, cohort in rows:
                if wait.seen.get((course, cohort), 0) is None:
                    wait.seen[(course, cohort)] = seen


def _latest_consumer(bootstrap: str, topic: str):
    """A consumer of every partition of ``topic`` from its current end (no group offsets
    committed). librdkafka, so that fetching and decompressing the load's records, which the
    loop skips by key, costs the load generator's process next to nothing."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "learnpulse-bench-probes",
                         "enable.auto.commit": False, "enable.partition.eof": False})  # fmt: skip
    partitions = sorted(consumer.list_topics(topic, timeout=30).topics[topic].partitions)
    # The ends looked up now, before any probe is sent (OFFSET_END would be resolved later).
    ends = [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in partitions]
    consumer.assign([TopicPartition(topic, p, end) for p, end in zip(partitions, ends, strict=True)])
    return consumer
