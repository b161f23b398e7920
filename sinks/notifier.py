"""Alert notifier: ``learnpulse.alerts`` → people, through webhooks and Prometheus Alertmanager.

One kafka-python consumer (its own group, manual commits, ``read_committed``) reads the
:class:`~schemas.records.AlertRecord` records the stream processor emits when a cohort's
disengagement alert fires or resolves, and delivers each one to every configured target
that takes its school:

- **webhook**: ``POST <url>`` with a JSON body (see :func:`webhook_body`), headers
  ``Idempotency-Key: <alert_id>:<state>`` and, when a secret is configured,
  ``X-Learnpulse-Signature: sha256=<hex HMAC-SHA256(secret, body)>`` (see :func:`sign`).
- **alertmanager**: ``POST <url>/api/v2/alerts`` (see :func:`alertmanager_alert`). A fired
  alert stays active in Alertmanager only while it is re-sent, so fired alerts are re-sent
  every ``resend_s`` until their resolved record arrives (as Prometheus does).

Delivery guarantees:

- A record's offset is committed only after every target it is routed to has accepted it
  (2xx) or permanently refused it (which dead-letters it, see below); a crash at any point
  re-delivers from the last commit, so a receiver may see an alert twice, always with the
  same ``Idempotency-Key`` and the same body.
- Transient failures (connection errors, timeouts, 5xx, 408, 429) are retried with capped
  exponential backoff (``Retry-After`` honoured up to the cap) while the partition is paused:
  nothing is dropped, nothing is re-read, the loop sleeps in ``poll`` instead of spinning.
- Permanent refusals (other 4xx, and 3xx: a signed POST is never redirected) go to
  ``xapi.deadletter`` with the target's answer as the reason and the original bytes. So do
  records that do not decode as an AlertRecord, as in :mod:`sinks.consumer`.
- Records of one cohort (one key) stay in one partition and are handled strictly in
  order, one at a time. A record that repeats the last state handled for its cohort
  (the stream processor re-sends its last alert after a restart) or is older than it is
  skipped. That memory is rebuilt from the topic (up to the committed offset) whenever a
  partition is assigned, and it also restores the fired alerts to keep re-sending.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import http.client
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal, Protocol
from urllib.parse import unquote, urlsplit

import orjson
from kafka import KafkaConsumer, TopicPartition

from schemas import metrics
from schemas.errors import InvalidStatement
from schemas.records import AlertRecord

from .kafkaloop import ConsumerFactory, KafkaLoop, LoopConfig, ProducerFactory

log = logging.getLogger("learnpulse.notifier")

ALERTNAME = "LearnpulseCohortDisengaged"
WEBHOOK_SCHEMA = "learnpulse.alert/1"
SIGNATURE_HEADER = "X-Learnpulse-Signature"
STATES = ("fired", "resolved")

Outcome = Literal["accepted", "retry", "permanent"]


# -- configuration -------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """Where alerts go. ``kind`` is ``"webhook"`` or ``"alertmanager"`` (``url`` = its base URL).

    ``schools`` limits the target to those schools; empty means every school. ``secret``
    (webhooks only) turns on the signature header.
    """

    name: str
    kind: Literal["webhook", "alertmanager"]
    url: str
    secret: bytes | None = None
    schools: frozenset[str] = frozenset()
    timeout_s: float = 10.0
    # Webhooks: learners named in a body at most (None: all). See :func:`webhook_body`.
    max_learners: int | None = None

    def accepts(self, school: str) -> bool:
        return not self.schools or school in self.schools

    @property
    def endpoint(self) -> str:
        if self.kind == "alertmanager":
            return self.url.rstrip("/") + "/api/v2/alerts"
        return self.url


@dataclass(frozen=True)
class NotifierConfig:
    """What the notifier consumes and where it delivers; built from settings by ``learnpulse``."""

    bootstrap: str
    topic: str
    group_id: str
    deadletter_topic: str
    targets: tuple[Target, ...]
    severity: str = "warn"
    retry_initial_s: float = 1.0
    retry_max_s: float = 60.0
    # Fired alerts are re-sent to Alertmanager this often, each valid 4× as long.
    resend_s: float = 60.0
    max_poll_records: int = 50
    # Stop (instead of dead-lettering every alert) when more than this share of the last
    # `storm_window` outcomes were dead-letters, once there are at least `storm_min`:
    # a receiver refusing everything (wrong secret, wrong URL) needs a person.
    storm_share: float = 0.5
    storm_window: int = 100
    storm_min: int = 20

    def __post_init__(self) -> None:
        names = [t.name for t in self.targets]
        if len(set(names)) != len(names):
            raise ValueError(f"target names must be unique, got {names}")

    def loop_config(self) -> LoopConfig:
        return LoopConfig(
            name="notifier", component="notifier", stage="notifier", client_id="learnpulse-notifier",
            bootstrap=self.bootstrap, topic=self.topic, group_id=self.group_id,
            deadletter_topic=self.deadletter_topic, max_poll_records=self.max_poll_records,
            # A killed notifier holds its partition until its session expires; alerts
            # should not wait the client's 45 s default for a replacement to take over.
            session_timeout_ms=10_000,
            storm_share=self.storm_share, storm_min=self.storm_min, storm_window=self.storm_window,
            storm_what="alert deliveries", lag_interval_s=5.0,
        )  # fmt: skip


# -- pure: decoding, payloads, signatures, classification -----------------------------
def decode_alert(raw: bytes | None) -> AlertRecord:
    """The AlertRecord in ``raw``; :class:`InvalidStatement` names the rule it breaks."""
    rec = AlertRecord.decode(raw)
    if rec.state not in STATES:
        raise InvalidStatement("alert.state", f"state must be one of {STATES}, got {rec.state!r}", "$.state")
    if not rec.alert_id:
        raise InvalidStatement("alert.id", "alert_id must not be empty", "$.alert_id")
    return rec


def cohort_key(rec: AlertRecord) -> str:
    """The cohort an alert is about; also its Kafka key."""
    return f"{rec.school}|{rec.course}|{rec.cohort}"


def idempotency_key(rec: AlertRecord) -> str:
    """Same for every delivery of one state change of one episode: receivers drop repeats by it."""
    return f"{rec.alert_id}:{rec.state}"


def _pct(x: float) -> str:
    return f"{round(x * 100, 1):g}%"


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def summary_line(rec: AlertRecord) -> str:
    """One line for people, e.g. ``school-003 / Algebra I / cohort B: 42% of 31 learners disengaged (threshold 30%)``.

    For a resolved alert the threshold is the resolve level of the hysteresis.
    """
    where = f"{rec.school} / {rec.course} / cohort {rec.cohort}"
    figures = f"{_pct(rec.share)} of {rec.learners} learners disengaged"
    if rec.state == "fired":
        return f"{where}: {figures} (threshold {_pct(rec.threshold)})"
    return f"{where}: resolved, {figures} (resolves at or below {_pct(rec.threshold)})"


def webhook_body(rec: AlertRecord, max_learners: int | None = None) -> bytes:
    """The JSON body POSTed to webhooks. A function of the record and the target's cap only
    (same record, same bytes).

    A large cohort's alert names thousands of learners (67 bytes each): megabytes, which
    common receivers refuse (413) and no person reads, so staff would get nothing. The body
    names the first ``max_learners`` (the record's order) and counts the rest in
    ``disengaged_learners_omitted``; the figures stay whole and the ``alerts`` table keeps
    every name.

    ::

        {
          "schema": "learnpulse.alert/1",
          "idempotency_key": "<alert_id>:<state>",        # also the Idempotency-Key header
          "summary": "school-003 / … : 42% of 31 learners disengaged (threshold 30%)",
          "alert": {                                       # the AlertRecord, every field
            "alert_id": "…", "school": "…", "course": "…", "cohort": "…",
            "state": "fired" | "resolved",
            "at_ms": …,            # event time of this state change (epoch ms)
            "fired_at_ms": …,      # event time the episode fired
            "learners": …, "disengaged": …, "share": 0.42,
            "threshold": 0.3,      # fire threshold (fired) or resolve level (resolved)
            "disengaged_learners": ["<pseudonym>", …],   # at most max_learners of them
            "version": …
          },
          "disengaged_learners_omitted": 0                 # names left out of the list above
        }
    """
    alert = dataclasses.asdict(rec)
    names = alert["disengaged_learners"]
    omitted = 0
    if max_learners is not None and len(names) > max_learners:
        omitted = len(names) - max_learners
        alert["disengaged_learners"] = names[:max_learners]
    return orjson.dumps(
        {
            "schema": WEBHOOK_SCHEMA,
            "idempotency_key": idempotency_key(rec),
            "summary": summary_line(rec),
            "alert": alert,
            "disengaged_learners_omitted": omitted,
        }
    )


def sign(secret: bytes, body: bytes) -> str:
    """``X-Learnpulse-Signature`` value: ``sha256=`` + hex HMAC-SHA256 of the exact body bytes."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_signature(secret: bytes, body: bytes, header: str | None) -> bool:
    """What a receiver does: recompute the signature and compare in constant time."""
    return header is not None and hmac.compare_digest(sign(secret, body), header)


def alertmanager_alert(rec: AlertRecord, severity: str, now_ms: int, ttl_ms: int) -> dict[str, Any]:
    """One postable alert of Alertmanager's API v2.

    Labels identify the cohort (``alertname``, ``school``, ``course``, ``cohort``,
    ``severity``), so the fired and resolved records of an episode address the same
    Alertmanager alert. ``startsAt`` is the event time the episode fired. A fired alert
    gets ``endsAt = now + ttl`` and is kept alive by re-sends; a resolved one gets the
    event time it resolved. Alertmanager runs on wall-clock time, so event times ahead
    of ``now_ms`` (a fast simulation or replay) are clamped to ``now_ms``: otherwise a
    resolved alert would stay active until its future end. The exact event times are in
    the annotations.
    """
    starts = min(rec.fired_at_ms, now_ms)
    if rec.state == "fired":
        ends = now_ms + ttl_ms
    else:
        ends = max(starts, min(rec.at_ms, now_ms))
    return {
        "labels": {
            "alertname": ALERTNAME,
            "school": rec.school,
            "course": rec.course,
            "cohort": rec.cohort,
            "severity": severity,
        },
        "annotations": {
            "summary": summary_line(rec),
            "description": (
                f"{rec.disengaged} of {rec.learners} learners disengaged at {_iso(rec.at_ms)} (event time); "
                f"episode fired at {_iso(rec.fired_at_ms)}."
            ),
            "alert_id": rec.alert_id,
            "state": rec.state,
            "share": f"{rec.share:g}",
            "threshold": f"{rec.threshold:g}",
            "fired_at": _iso(rec.fired_at_ms),
            "at": _iso(rec.at_ms),
        },
        "startsAt": _iso(starts),
        "endsAt": _iso(ends),
    }


@dataclass(frozen=True)
class HttpRequest:
    url: str
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True)
class HttpResponse:
    """``status`` is None when no HTTP answer came (connection refused, timeout, reset)."""

    status: int | None
    text: str = ""
    retry_after_s: float | None = None


def build_request(target: Target, rec: AlertRecord, *, severity: str, now_ms: int, ttl_ms: int) -> HttpRequest:
    """The HTTP request delivering ``rec`` to ``target``."""
    headers = {"Content-Type": "application/json", "User-Agent": "learnpulse-notifier"}
    if target.kind == "alertmanager":
        body = orjson.dumps([alertmanager_alert(rec, severity, now_ms, ttl_ms)])
        return HttpRequest(target.endpoint, body, headers)
    body = webhook_body(rec, target.max_learners)
    headers["Idempotency-Key"] = idempotency_key(rec)
    if target.secret:
        headers[SIGNATURE_HEADER] = sign(target.secret, body)
    return HttpRequest(target.endpoint, body, headers)


def classify(status: int | None) -> Outcome:
    """2xx accepted; no answer, 5xx, 408 and 429 are transient; anything else is permanent.

    408 (request timeout) and 429 (too many requests) are 4xx but say "later", not "never".
    3xx is permanent: we do not follow redirects with a signed body.
    """
    if status is None:
        return "retry"
    if 200 <= status < 300:
        return "accepted"
    if status >= 500 or status in (408, 429):
        return "retry"
    return "permanent"


def backoff_s(attempt: int, initial_s: float, max_s: float, retry_after_s: float | None = None) -> float:
    """Wait before retry number ``attempt + 1``: initial × 2^attempt, capped; a server's Retry-After (capped) wins."""
    delay = min(max_s, initial_s * (2 ** min(attempt, 32)))
    if retry_after_s is not None:
        delay = max(delay, min(max_s, retry_after_s))
    return delay


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


Skip = Literal["duplicate", "stale"]


@dataclass(frozen=True, slots=True)
class Handled:
    """The last alert state handled for a cohort."""

    alert_id: str
    state: str
    version: int


def skip_reason(last: Handled | None, rec: AlertRecord) -> Skip | None:
    """Why ``rec`` needs no delivery, given the cohort's last handled state (None: deliver it).

    ``duplicate``: the same state change of the same episode (a re-send). ``stale``: older
    than what was handled (e.g. an episode's "fired" after its "resolved").
    """
    if last is None:
        return None
    if (rec.alert_id, rec.state) == (last.alert_id, last.state):
        return "duplicate"
    if rec.version < last.version or (rec.alert_id == last.alert_id and last.state == "resolved"):
        return "stale"
    return None


# -- HTTP ------------------------------------------------------------------------------
class Poster(Protocol):
    """Sends one request; never raises for network trouble (returns ``status=None``)."""

    def __call__(self, request: HttpRequest, timeout_s: float) -> HttpResponse: ...


def http_post(request: HttpRequest, timeout_s: float) -> HttpResponse:
    """POST with the standard library: one connection per request, no redirects followed.

    ``user:password@`` in the URL becomes HTTP Basic authentication.
    """
    u = urlsplit(request.url)
    if u.scheme not in ("http", "https") or not u.hostname:
        return HttpResponse(400, f"unsupported URL {redact(request.url)!r}")
    conn_cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
    headers = dict(request.headers)
    if u.username is not None:
        cred = f"{unquote(u.username)}:{unquote(u.password or '')}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(cred).decode()
    path = (u.path or "/") + (f"?{u.query}" if u.query else "")
    conn = conn_cls(u.hostname, u.port, timeout=timeout_s)
    try:
        conn.request("POST", path, body=request.body, headers=headers)
        resp = conn.getresponse()
        text = resp.read(2048).decode("utf-8", errors="replace")
        return HttpResponse(resp.status, text, parse_retry_after(resp.getheader("Retry-After")))
    except (OSError, http.client.HTTPException) as err:
        return HttpResponse(None, f"{type(err).__name__}: {err}")
    finally:
        conn.close()


def redact(url: str) -> str:
    """``url`` without credentials, for logs."""
    u = urlsplit(url)
    if u.username is None and u.password is None:
        return url
    host = u.hostname or ""
    return u._replace(netloc=f"{host}:{u.port}" if u.port else host).geturl()


# -- the consumer ----------------------------------------------------------------------
@dataclass
class _InFlight:
    """The record at the head of a partition, being delivered."""

    msg: Any
    rec: AlertRecord
    remaining: list[Target]
    accepted: set[str] = field(default_factory=set)
    attempt: int = 0
    not_before: float = 0.0


@dataclass
class _Partition:
    """What the notifier holds for one assigned partition."""

    queue: deque = field(default_factory=deque)
    current: _InFlight | None = None
    # Head record waiting for the dead-letter topic (Kafka trouble) until then.
    hold_until: float = 0.0
    hold_attempt: int = 0
    rebuilt: bool = False
    last: dict[str, Handled] = field(default_factory=dict)
    # Fired alerts Alertmanager accepted and that have not resolved yet, by cohort key.
    active: dict[str, AlertRecord] = field(default_factory=dict)


class AlertNotifier:
    """Delivers the alerts of one topic to the configured targets (see the module docstring).

    A :class:`~sinks.kafkaloop.Step` of :class:`~sinks.kafkaloop.KafkaLoop` (which owns the
    consumer, pausing, commits, rebalances, dead letters and lag). ``poster`` sends HTTP
    requests and ``clock``/``wall`` give monotonic and epoch seconds; they and the loop's
    client factories are injectable for tests of the delivery logic.
    """

    def __init__(
        self,
        config: NotifierConfig,
        poster: Poster = http_post,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        *,
        consumer_factory: ConsumerFactory | None = None,
        producer_factory: ProducerFactory | None = None,
    ) -> None:
        self.config = config
        self.poster = poster
        self.clock = clock
        self.wall = wall
        self.loop = KafkaLoop(
            config.loop_config(), self, clock=clock,
            consumer_factory=consumer_factory, producer_factory=producer_factory,
        )  # fmt: skip
        self._parts: dict[TopicPartition, _Partition] = {}
        self._next_resend = 0.0

    # -- lifecycle -------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Deliver until ``stop`` is set. A record being retried when it is set stays uncommitted."""
        self.loop.run(stop)

    # -- the loop's step: one round is poll(timeout_s()) → submit() → poll() ----------
    def ready(self) -> bool:
        return True  # fullness is per partition: see blocked()

    def submit(self, tp: TopicPartition, msgs: list) -> None:
        part = self._parts.get(tp)
        if part is not None:  # else revoked while the fetch was in flight
            part.queue.extend(msgs)

    def poll(self) -> None:
        """Deliver what is due (a bounded amount per round, so the loop polls often), re-send fired alerts."""
        started = self.clock()
        for tp, part in list(self._parts.items()):
            if not part.rebuilt:
                self._rebuild(tp, part)
            self._drain(tp, part, started)
        self._resend_active()

    def blocked(self, assigned: set[TopicPartition]) -> set[TopicPartition]:
        """A partition with records held is not fetched until they are delivered."""
        return {tp for tp, part in self._parts.items() if part.queue}

    def held(self, tp: TopicPartition) -> int | None:
        part = self._parts.get(tp)
        if part is None:
            return None
        if part.current is not None:
            return part.current.msg.offset
        return part.queue[0].offset if part.queue else None

    def join(self) -> None:
        """Nothing to finish: an undelivered record stays uncommitted and is re-delivered."""

    def timeout_s(self) -> float:
        """Sleep in poll at most until the next retry or re-send is due."""
        return self._poll_timeout_s()

    def _poll_timeout_s(self) -> float:
        now = self.clock()
        due = [self._next_resend] if self._has_active() else []
        for part in self._parts.values():
            if part.current is not None:
                due.append(part.current.not_before)
            elif part.queue:
                due.append(max(now, part.hold_until))
        wait = min(due, default=now + 0.5) - now
        return min(0.5, max(0.0, wait))

    # -- per partition ---------------------------------------------------------------
    def _drain(self, tp: TopicPartition, part: _Partition, started: float) -> None:
        # Bounded work per round, so poll (group membership, stop) comes round often.
        while part.queue and not self.loop.stopping() and self.clock() - started < 1.0:
            if self.clock() < part.hold_until:
                return
            if part.current is None:
                m = part.queue[0]
                begun = self._begin(tp, part, m)
                if begun == "hold":  # the dead-letter topic did not take it; try again later
                    part.hold_attempt += 1
                    part.hold_until = self.clock() + backoff_s(
                        part.hold_attempt - 1, self.config.retry_initial_s, self.config.retry_max_s
                    )
                    return
                part.hold_attempt = 0
                if begun is None:  # nothing to deliver: dead-lettered or skipped
                    if not self._commit(tp, part, m.offset + 1):
                        return
                    part.queue.popleft()
                    continue
                part.current = begun
            cur = part.current
            if self.clock() < cur.not_before:
                return
            self._attempt(cur)
            if cur.remaining:
                return
            if not self._commit(tp, part, cur.msg.offset + 1):
                return
            self._remember(part, cur)
            part.queue.popleft()
            part.current = None

    def _begin(self, tp: TopicPartition, part: _Partition, m: Any) -> _InFlight | Literal["hold"] | None:
        """Decide what the head record needs: delivery (an ``_InFlight``), nothing (None), or a later try."""
        try:
            rec = decode_alert(m.value)
        except InvalidStatement as err:
            return None if self._deadletter(m, err.rule, str(err)) else "hold"
        key = cohort_key(rec)
        reason = skip_reason(part.last.get(key), rec)
        if reason is not None:
            metrics.NOTIFIER_SKIPPED.labels(reason).inc()
            log.info("skipped %s alert %s (%s)", rec.state, idempotency_key(rec), reason)
            return None
        targets = [t for t in self.config.targets if t.accepts(rec.school)]
        if not targets:
            metrics.NOTIFIER_SKIPPED.labels("unrouted").inc()
            log.info("no target takes school %s; alert %s not delivered", rec.school, idempotency_key(rec))
            part.last[key] = Handled(rec.alert_id, rec.state, rec.version)
            return None
        return _InFlight(m, rec, targets)

    def _attempt(self, cur: _InFlight) -> None:
        """Try every target still owed this record; schedule a retry if any failed transiently."""
        hints: list[float] = []
        for target in list(cur.remaining):
            req = build_request(
                target, cur.rec, severity=self.config.severity, now_ms=int(self.wall() * 1000), ttl_ms=self._ttl_ms()
            )
            t0 = time.perf_counter()
            resp = self.poster(req, target.timeout_s)
            metrics.NOTIFIER_REQUEST_SECONDS.labels(target.name).observe(time.perf_counter() - t0)
            outcome = classify(resp.status)
            if outcome == "accepted":
                cur.remaining.remove(target)
                cur.accepted.add(target.name)
                self.loop.deadletters.passed()
                metrics.NOTIFIER_DELIVERED.labels(target.name, cur.rec.state).inc()
                if cur.attempt:
                    log.warning(
                        "%s accepted alert %s after %d retries", target.name, idempotency_key(cur.rec), cur.attempt
                    )
            elif outcome == "permanent":
                metrics.NOTIFIER_FAILED.labels(target.name, "permanent").inc()
                reason = f"{target.name} refused alert: HTTP {resp.status}: {resp.text[:500]}"
                if self._deadletter(cur.msg, "notifier.rejected", reason, target=target.name):
                    cur.remaining.remove(target)
            else:
                metrics.NOTIFIER_FAILED.labels(target.name, "retryable").inc()
                metrics.NOTIFIER_RETRIES.labels(target.name).inc()
                if resp.retry_after_s is not None:
                    hints.append(resp.retry_after_s)
                what = f"HTTP {resp.status}" if resp.status is not None else resp.text
                if cur.attempt % 10 == 0:  # quiet during a long outage: the metrics count every retry
                    log.warning(
                        "%s: alert %s not delivered (%s); retry %d",
                        target.name,
                        idempotency_key(cur.rec),
                        what,
                        cur.attempt + 1,
                    )
        if cur.remaining:
            c = self.config
            delay = backoff_s(cur.attempt, c.retry_initial_s, c.retry_max_s, max(hints, default=None))
            cur.attempt += 1
            cur.not_before = self.clock() + delay

    def _deadletter(self, m: Any, rule: str, reason: str, target: str | None = None) -> bool:
        """Write ``m`` to the dead-letter topic and wait for Kafka; False if Kafka failed (retried later)."""
        tp = TopicPartition(m.topic, m.partition)
        return self.loop.deadletters.write(tp, m.offset, m.key, m.value, rule, reason, target)

    def _commit(self, tp: TopicPartition, part: _Partition, offset: int) -> bool:
        err = self.loop.commit({tp: offset})
        if err is None:
            return True
        # The group moved on (or the commit failed): the partition's next owner re-reads
        # from the last commit (a repeat, with the same Idempotency-Key). Drop what we hold
        # of it; the fetch position is past it, so a partition we keep is rewound.
        metrics.ERRORS.labels("notifier", "commit_failed").inc()
        log.warning("commit failed on %s (its records will be re-delivered): %s", tp, err)
        part.queue.clear()
        part.current = None
        self.loop.rewind(tp, offset - 1)
        return False

    def _remember(self, part: _Partition, cur: _InFlight) -> None:
        rec = cur.rec
        key = cohort_key(rec)
        part.last[key] = Handled(rec.alert_id, rec.state, rec.version)
        am = {t.name for t in self.config.targets if t.kind == "alertmanager"}
        if rec.state == "fired" and cur.accepted & am:
            if not self._has_active():
                # Just sent: the first re-send is due one period from now.
                self._next_resend = self.clock() + self.config.resend_s
            part.active[key] = rec
        else:
            part.active.pop(key, None)
        metrics.NOTIFIER_ACTIVE_ALERTS.set(sum(len(p.active) for p in self._parts.values()))

    # -- state from the topic ----------------------------------------------------------
    def _rebuild(self, tp: TopicPartition, part: _Partition) -> None:
        """Read the partition up to the group's committed offset: last state per cohort, fired alerts."""
        part.rebuilt = True
        end = self.loop.consumer.committed(tp)
        if not end:
            return
        reader = KafkaConsumer(
            bootstrap_servers=self.config.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            client_id="learnpulse-notifier-rebuild",
        )
        try:
            reader.assign([tp])
            reader.seek_to_beginning(tp)
            deadline = self.clock() + 60
            for m in self._read_until(reader, tp, end, deadline):
                try:
                    rec = decode_alert(m.value)
                except InvalidStatement:
                    continue
                key = cohort_key(rec)
                if skip_reason(part.last.get(key), rec) is not None:
                    continue
                part.last[key] = Handled(rec.alert_id, rec.state, rec.version)
                if rec.state == "fired" and any(
                    t.kind == "alertmanager" and t.accepts(rec.school) for t in self.config.targets
                ):
                    part.active[key] = rec
                else:
                    part.active.pop(key, None)
        finally:
            reader.close()
        self._next_resend = self.clock()  # re-assert fired alerts now: they may have expired meanwhile
        metrics.NOTIFIER_ACTIVE_ALERTS.set(sum(len(p.active) for p in self._parts.values()))
        log.info("rebuilt %s up to offset %d: %d cohorts, %d fired", tp, end, len(part.last), len(part.active))

    def _read_until(self, reader: KafkaConsumer, tp: TopicPartition, end: int, deadline: float) -> Iterable[Any]:
        while reader.position(tp) < end:
            if self.clock() > deadline:
                log.warning("rebuild of %s stopped at offset %d of %d (timeout)", tp, reader.position(tp), end)
                return
            for msgs in reader.poll(timeout_ms=200).values():
                for m in msgs:
                    if m.offset >= end:
                        return
                    yield m

    # -- Alertmanager re-sends ---------------------------------------------------------
    def _ttl_ms(self) -> int:
        return int(self.config.resend_s * 4 * 1000)

    def _has_active(self) -> bool:
        return any(p.active for p in self._parts.values())

    def _resend_active(self) -> None:
        now = self.clock()
        if now < self._next_resend:
            return
        self._next_resend = now + self.config.resend_s
        active = [rec for p in self._parts.values() for rec in p.active.values()]
        if not active:
            return
        now_ms = int(self.wall() * 1000)
        for target in self.config.targets:
            if target.kind != "alertmanager":
                continue
            alerts = [
                alertmanager_alert(r, self.config.severity, now_ms, self._ttl_ms())
                for r in active
                if target.accepts(r.school)
            ]
            if not alerts:
                continue
            resp = self.poster(
                HttpRequest(target.endpoint, orjson.dumps(alerts), {"Content-Type": "application/json"}),
                target.timeout_s,
            )
            if classify(resp.status) != "accepted":
                metrics.NOTIFIER_FAILED.labels(target.name, "resend").inc()
                log.warning(
                    "%s: re-send of %d fired alerts failed (%s)", target.name, len(alerts), resp.status or resp.text
                )

    # -- rebalance ---------------------------------------------------------------------
    # kafka-python runs these on its network thread while poll() blocks the caller: they
    # must not block (no commits, no metadata calls), and they never race the loop above.
    def revoked(self, tps: set[TopicPartition]) -> None:
        """Undelivered records are not committed: the next owner re-reads them (the loop
        rewinds a partition handed straight back to its first undelivered offset)."""
        for tp in tps:
            self._parts.pop(tp, None)
        metrics.NOTIFIER_ACTIVE_ALERTS.set(sum(len(p.active) for p in self._parts.values()))

    def assigned(self, tps: set[TopicPartition]) -> None:
        for tp in tps:
            self._parts[tp] = _Partition()  # rebuilt from the topic before its first delivery
