"""The LRS Statements API (xAPI 1.0.3 and IEEE 9274.1.1 / xAPI 2.0) as an aiohttp application.

Writes: validated at the edge (``schemas.xapi``), canonicalized and grouped per learner
by :class:`producers.publisher.RequestEncoder`, committed to ``xapi.statements`` in a
Kafka transaction (:mod:`.sender`); the answer is sent once Kafka acknowledged. Each id
is reserved and then recorded as accepted in the accepted-id index every gateway shares
(:mod:`.writes`, ``producers.lrsstore``), which makes retries and racing gateways exact.
Reads: by id from that index first (read-your-writes), otherwise and for queries from
ClickHouse through the store ``learnpulse`` hands in (``reporting.lrs``).

Build it with :func:`make_gateway_app`; ``learnpulse gateway`` serves it, and a process
that owns chDB (the sinks) can mount the same app beside them.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import secrets
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from schemas import metrics
from schemas.clickhouse.engine import ClickHouseUnavailable
from schemas.errors import InvalidStatement
from schemas.lrs_store import AttachmentStore, DocumentStore, IndexEntry, StatementIndex
from schemas.profile import SchoolProfile
from schemas.xapi.formats import is_uuid
from schemas.xapi.timefmt import format_ms
from schemas.xapi.validate import (
    attachments_needing_parts,
    validate_statement_tolerant,
    validate_statements_tolerant,
)

from ..publisher import RequestEncoder
from ..quarantine import QuarantineWriter
from . import multipart
from .altsyntax import XRequest, headers_only_for_head, unwrap
from .authguard import AuthGuard, AuthLimits
from .bodyread import read_body
from .cors import OriginPolicy, cors_middleware
from .cursors import CursorSigner
from .forwarded import client_address, relayed
from .documents import ActivityLookup, DocumentResources, DocumentsConfig
from .formats import canonical_format, ids_format
from .intake import Intake
from .jsonguard import parse_request_json
from .protocol import CONSISTENT_HEADER, V1, VERSION_HEADER, XapiError, bad_request, http_date, negotiate
from .query import SingleQuery, parse_cursor, parse_query, parse_single
from .idindex import IndexClient
from .sender import TransactionalSender
from .signatures import check_signature, signature_sha2s
from .store import StatementStore
from .unexpected import unexpected_error_middleware
from .writes import StatementWriter

log = logging.getLogger("learnpulse.gateway")

ABOUT_VERSIONS = ["1.0.0", "1.0.1", "1.0.2", "1.0.3", "2.0.0"]
# A sink progress read younger than this is not repeated for a read (see ``_read``).
_ON_DEMAND_MIN_S = 0.05


class Authenticator(Protocol):
    """HTTP Basic check (``learnpulse.credentials.CredentialStore``)."""

    def cached(self, key: str, secret: str) -> tuple[bool, str | None]:
        """Answer from memory: ``(known, school)``; ``known`` False means call :meth:`authenticate`."""
        ...

    def authenticate(self, key: str, secret: str) -> str | None:
        """The school of a valid pair, else None; may block (password hashing)."""
        ...


@dataclass(frozen=True)
class GatewayConfig:
    """Limits and behaviour of the Statements API."""

    prefix: str = "/xapi"
    # 413 above these: the whole request body, and statements per POST.
    max_body_bytes: int = 16 * 1024 * 1024
    max_batch: int = 1_000
    # 413 above this per statement as stored (JSON): with its envelope it must fit one
    # Kafka record (checked by make_gateway_app against the sender's max_request_bytes).
    max_statement_bytes: int = 1024 * 1024
    # Page size cap of GET /statements (limit=0 means this).
    max_limit: int = 500
    # Version echoed on errors of requests without a usable X-Experience-API-Version.
    default_version: str = V1
    max_per_envelope: int = 100
    # How often the sinks' progress (Consistent-Through) is read while requests come; after
    # ``consistent_idle_after_s`` without one, every ``consistent_idle_refresh_s`` (or at the
    # next request): each read is a ClickHouse query, ~6 ms of CPU on chDB.
    consistent_refresh_s: float = 0.2
    consistent_idle_after_s: float = 2.0
    consistent_idle_refresh_s: float = 10.0
    # Allowance for clock skew between the gateways' hosts and the sink's (Consistent-Through
    # holds back statements acknowledged this long before the sink's progress): 0 on one host.
    clock_margin_ms: int = 0
    # Every this many seconds the index's copies of statements the statements sink has
    # passed are dropped, ``prune_batch`` per store transaction (0: never; the index then
    # grows by every statement's JSON).
    prune_interval_s: float = 10.0
    prune_batch: int = 2_000
    # Slow clients (:mod:`.bodyread`): a request must complete its headers within
    # ``header_timeout_s`` of the connection (or of the previous answer), and its body
    # must arrive at ``body_min_rate`` bytes/s on average after a ``body_grace_s`` head start.
    header_timeout_s: float = 15.0
    body_grace_s: float = 10.0
    body_min_rate: int = 64 * 1024
    # HMAC key of the ``more`` tokens (:mod:`.cursors`); None: a random key per process
    # (tokens then die with it; ``learnpulse gateway`` passes one kept in its home).
    cursor_key: bytes | None = None
    # Request rates, sign-in attempt rates and lock-outs (:mod:`.authguard`).
    auth_limits: AuthLimits = field(default_factory=AuthLimits)
    # Load balancers whose X-Forwarded-For names the client those limits count (:mod:`.forwarded`).
    trusted_proxies: frozenset[str] = frozenset()


# The per-request metrics' children, looked up once (``labels()`` takes a lock and builds
# its key on every call). Methods other than the Statement Resource's (answered 405) share
# the label "other": the client names the method, and a label per invented name would grow
# the metrics without bound.
_KNOWN_METHODS = frozenset({"GET", "HEAD", "PUT", "POST", "OPTIONS"})
_REQUEST_METRICS: dict[tuple[str, int], tuple[Any, Any]] = {}


def _request_metrics(method: str, status: int) -> tuple[Any, Any]:
    """``(requests counter, duration histogram)`` children for one answer."""
    if method not in _KNOWN_METHODS:
        method = "other"
    found = _REQUEST_METRICS.get((method, status))
    if found is None:
        found = metrics.GATEWAY_REQUESTS.labels(method, str(status)), metrics.GATEWAY_REQUEST_SECONDS.labels(method)
        _REQUEST_METRICS[(method, status)] = found
    return found


def _now_ms() -> int:
    return int(time.time() * 1000)


class Gateway:
    """Request handling; one instance per application."""

    def __init__(
        self,
        config: GatewayConfig,
        authenticator: Authenticator,
        sender: TransactionalSender,
        store: StatementStore | None,
        consistent_through: Callable[[], int | None] | None,
        pseudonym_secret: bytes,
        index: IndexClient,
        profiles: Mapping[str, SchoolProfile] | None = None,
        clock_ms: Callable[[], int] = _now_ms,
    ) -> None:
        self.config = config
        self.auth = authenticator
        self.sender = sender
        self.store = store
        self._consistent_through = consistent_through
        self.secret = pseudonym_secret
        self.profiles = profiles or {}
        self.clock_ms = clock_ms
        # Browser origins allowed per school (None: the CORS layer is not mounted).
        self.origins: OriginPolicy | None = None
        self.intake = Intake(authenticator)
        self.index = index
        # Attachment contents (the transactional store); None: the statement store's (ClickHouse).
        self.attachments: AttachmentStore | None = None
        encoder = RequestEncoder(pseudonym_secret, self.profiles, max_per_envelope=config.max_per_envelope,
                                 max_statement_bytes=config.max_statement_bytes)  # fmt: skip
        self.writer = StatementWriter(index, sender, encoder, sender.params.transactional_id, clock_ms)
        self.cursors = CursorSigner(config.cursor_key or secrets.token_bytes(32))
        self.guard = AuthGuard(config.auth_limits)
        self._verify_slot = asyncio.Semaphore(1)
        self._verifying: dict[tuple[str, bytes], asyncio.Future] = {}
        self._sink_through: int | None = None
        # ``stored`` of the oldest statement any gateway reserved or had acknowledged at or
        # after the sink's progress (from the index, with the sink's progress).
        self._oldest_unsunk: int | None = None
        self._refresher: asyncio.Task | None = None
        self._orphans: asyncio.Task | None = None
        self._pruner: asyncio.Task | None = None
        # On-demand re-reads of the sink's progress (reads whose page passes the header):
        # shared by concurrent requests, at most one per ``_ON_DEMAND_MIN_S``.
        self._on_demand: asyncio.Future | None = None
        self._refreshed_at = float("-inf")
        # When an answer last carried Consistent-Through; set if one did since the refresh
        # loop went idle (see ``_refresh_loop``).
        self._asked_at = time.monotonic()
        self._asked = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------
    async def on_startup(self, _app: web.Application) -> None:
        self.sender.start()
        try:
            await self._refresh_consistency()
        except Exception as err:  # noqa: BLE001 - ClickHouse down at start: writes work, the loop retries
            log.warning("consistent-through not available yet: %r", err)
        self._refresher = asyncio.create_task(self._refresh_loop())
        self._orphans = asyncio.create_task(self._release_orphans())
        if self.config.prune_interval_s > 0:
            self._pruner = asyncio.create_task(self._prune_loop())

    async def _release_orphans(self) -> None:
        """Once this gateway's Kafka producers fenced the previous run's, free its reservations."""
        while not self.sender.initialized():
            await asyncio.sleep(0.2)
        while True:
            try:
                await self.writer.release_orphans()
                return
            except Exception as err:  # noqa: BLE001 - the index is down: try again, writes wait on it anyway
                log.warning("releasing a previous run's reservations failed: %r", err)
                await asyncio.sleep(5)

    async def on_cleanup(self, _app: web.Application) -> None:
        for task in (self._refresher, self._orphans, self._pruner):
            if task is not None:
                task.cancel()
        await asyncio.to_thread(self.sender.close)
        await asyncio.to_thread(self.intake.close)

    async def _refresh_loop(self) -> None:
        config = self.config
        while True:
            await asyncio.sleep(config.consistent_refresh_s)
            if time.monotonic() - self._asked_at > config.consistent_idle_after_s:
                await self._until_asked(config.consistent_idle_refresh_s)
            try:
                await self._refresh_consistency()
            except Exception as err:  # noqa: BLE001 - a reader hiccup must not stop the loop
                log.warning("consistent-through refresh failed: %r", err)

    async def _until_asked(self, timeout_s: float) -> None:
        """Idle: wait for the next answer that carries Consistent-Through, or ``timeout_s``.

        That answer carries the last value read: older than the sinks' progress may be by
        now, so it promises less than it could, never more."""
        self._asked.clear()
        try:
            await asyncio.wait_for(self._asked.wait(), timeout_s)
        except TimeoutError:
            pass

    async def _prune_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.prune_interval_s)
            try:
                await self.prune_sunk()
            except Exception as err:  # noqa: BLE001 - the index is busy or down: next time
                log.warning("pruning the accepted-id index failed: %r", err)

    async def prune_sunk(self) -> int:
        """Drop the index's copies of the statements the statements sink has passed: reads by id
        of those are answered by ClickHouse already (:meth:`_sunk`, the same bound), and a
        re-sent id is compared with the key kept in their place. The count dropped."""
        if self.store is None or self._sink_through is None:
            return 0
        before, batch, total = self._sink_through - self.config.clock_margin_ms, self.config.prune_batch, 0
        while True:
            pruned = await self.index.prune(before, batch)
            metrics.GATEWAY_INDEX_PRUNED.inc(pruned)
            total += pruned
            if pruned < batch:
                return total

    async def _refresh_consistency(self) -> None:
        if self._consistent_through is None:
            return
        through = await asyncio.to_thread(self._consistent_through)
        if through is not None:
            # Read after the sink's progress: anything acknowledged since is in the answer.
            self._oldest_unsunk = await self.index.oldest_unsunk_ms(through - self.config.clock_margin_ms)
        self._sink_through = through
        self._refreshed_at = time.monotonic()

    async def _refresh_on_demand(self) -> None:
        if time.monotonic() - self._refreshed_at < _ON_DEMAND_MIN_S:
            return
        if self._on_demand is None or self._on_demand.done():
            self._on_demand = asyncio.ensure_future(self._refresh_consistency())
        await asyncio.shield(self._on_demand)

    def consistent_through_ms(self) -> int:
        """Up to when every accepted statement is readable in queries: the sink's committed
        progress, held back by statements stamped but not yet sunk (any gateway's, from the
        index; this gateway's in-flight writes, which the last refresh may not have seen)."""
        self._asked_at = time.monotonic()
        if not self._asked.is_set():
            self._asked.set()  # wakes an idle refresh loop
        through = self._sink_through or 0
        for oldest in (self._oldest_unsunk, self.writer.oldest_in_flight_ms()):
            if oldest is not None:
                through = min(through, oldest - 1)
        return max(through, 0)

    def _headers(self, version: str, through_ms: int | None = None) -> dict[str, str]:
        through = self.consistent_through_ms() if through_ms is None else through_ms
        return {VERSION_HEADER: version, CONSISTENT_HEADER: format_ms(through)}

    # -- entry points ----------------------------------------------------------------
    async def about(self, request: web.Request) -> web.Response:
        # The About resource needs neither credentials nor a version header (§2.8).
        asked = negotiate(request.headers.get(VERSION_HEADER))
        version = asked or self.config.default_version
        # A 1.0.x client is told the 1.0.x versions: xAPI 1.0.3 allows only "0.9", "0.95" and
        # "1.0.x" there (Communication §2.8.s5.b1). Anyone else learns 2.0.0 too.
        versions = [v for v in ABOUT_VERSIONS if v.startswith("1.0.")] if asked == V1 else ABOUT_VERSIONS
        body = orjson.dumps({"version": versions, "extensions": {}})
        return web.Response(body=body, content_type="application/json", headers={VERSION_HEADER: version})

    async def metrics_endpoint(self, request: web.Request) -> web.Response:
        # For Prometheus, which asks the gateway directly: a request a trusted proxy relayed
        # (the public entry, e.g. deploy/haproxy) gets 404, however its path was spelled.
        if relayed(request, self.config.trusted_proxies):
            raise web.HTTPNotFound()
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def statements(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        version = self.config.default_version
        method = request.method
        req: XRequest | None = None
        school: str | None = None
        try:
            address = client_address(request, self.config.trusted_proxies)
            self.guard.request(address)
            req = await self._xrequest(request)
            if "method" in req.query:
                req = unwrap(req, self.config.default_version)
            method = req.method
            # A malformed request is refused as such before credentials are looked at:
            # an unsupported method is 405 and a missing or unsupported version header 400
            # whoever sends it (Communication §3.2, §3.3); only then 401.
            if method not in ("GET", "HEAD", "PUT", "POST"):
                raise XapiError(405, "method", f"{method} is not supported on the Statement Resource",
                                headers={"Allow": "GET, HEAD, PUT, POST"})  # fmt: skip
            served = negotiate(req.headers.get(VERSION_HEADER))
            if served is None:
                # Answered in the version this credential's clients speak, if it says.
                version = self.intake.version_for(req.headers, version)
                raise bad_request(
                    "version.header",
                    f"{VERSION_HEADER} must be 1.0.x or 2.0.x, found {req.headers.get(VERSION_HEADER)!r} "
                    "(Communication §3.3)",
                )
            version = served
            school = await self._authenticate(req, address)
            if method in ("GET", "HEAD"):
                response = await self._read(req, school, version)
            elif method == "PUT":
                response = await self._put(req, school, version)
            else:
                response = await self._post(req, school, version)
        except XapiError as err:
            response = err.response(version)
            if err.status == 400:
                self.intake.refused(req, school, version, InvalidStatement(err.rule, err.message, err.path))
        except InvalidStatement as err:
            response = XapiError(400, err.rule, err.message, err.path).response(version)
            self.intake.refused(req, school, version, err)
        except ClickHouseUnavailable as err:
            log.warning("statement store unavailable: %s", err)
            response = XapiError(503, "store.unavailable", f"the statement store is unreachable: {err}",
                                 headers={"Retry-After": "5"}).response(version)  # fmt: skip
        if response.status >= 400:
            # On every answer of the Statement Resource, errors included (§2.1.3.s2.b5).
            response.headers[CONSISTENT_HEADER] = format_ms(self.consistent_through_ms())
        count, seconds = _request_metrics(method, response.status)
        count.inc()
        seconds.observe(time.perf_counter() - started)
        return headers_only_for_head(req, response)

    async def _xrequest(self, request: web.Request) -> XRequest:
        c = self.config
        body = await read_body(request, c.max_body_bytes, c.body_grace_s, c.body_min_rate)
        # The headers as aiohttp parsed them (read-only; nothing here changes them): not copied.
        return XRequest(request.method, dict(request.query), request.headers, body)

    async def _authenticate(self, req: XRequest, address: str) -> str:
        header = req.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        key = secret = None
        if scheme.lower() == "basic":
            try:
                key, sep, secret = base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")
                if not sep:
                    key = None
            except (ValueError, UnicodeDecodeError):  # binascii.Error, or a non-ASCII token
                key = None
        if key is None or secret is None:
            metrics.GATEWAY_AUTH_FAILURES.labels("missing").inc()
            self.guard.failed(address, None)
            raise self._unauthorized("HTTP Basic credentials are required")
        known, school = self.auth.cached(key, secret)
        if not known:
            school = await self._verify(address, key, secret)
        if school is None:
            metrics.GATEWAY_AUTH_FAILURES.labels("invalid").inc()
            self.guard.failed(address, key)
            raise self._unauthorized("unknown key or wrong secret")
        self.guard.authenticated(key)
        req.key = key
        origin = req.headers.get("Origin")
        if origin is not None and self.origins is not None and not self.origins.origin_allowed(origin, school):
            # A browser page on an origin this school did not allow (see .cors): refused before acting.
            raise XapiError(403, "cors.origin", f"origin {origin} is not allowed for this credential's school "
                            "(learnpulse credentials update --allow-origin)")  # fmt: skip
        return school

    async def _verify(self, address: str, key: str, secret: str) -> str | None:
        """Check a pair the credential cache does not know: one scrypt, limited per address and
        key, one at a time (one core at most). Concurrent requests with the same pair (a
        client's connections starting together) share one check and one attempt."""
        pair = (key, hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest())
        shared = self._verifying.get(pair)
        if shared is None:
            self.guard.attempt(address, key)
            shared = self._verifying[pair] = asyncio.ensure_future(self._verify_once(key, secret))
            shared.add_done_callback(lambda _f: self._verifying.pop(pair, None))
        return await asyncio.shield(shared)

    async def _verify_once(self, key: str, secret: str) -> str | None:
        self.guard.verifying += 1
        try:
            async with self._verify_slot:
                return await asyncio.to_thread(self.auth.authenticate, key, secret)
        finally:
            self.guard.verifying -= 1

    @staticmethod
    def _unauthorized(message: str) -> XapiError:
        return XapiError(401, "auth", message, headers={"WWW-Authenticate": 'Basic realm="learnpulse LRS"'})

    # -- writes ----------------------------------------------------------------------
    def _payload(self, req: XRequest) -> tuple[bytes, dict[str, multipart.Part] | None]:
        """The statements JSON and, for multipart/mixed, the attachment parts by SHA-2."""
        ctype = req.headers.get("Content-Type")
        mt = multipart.media_type(ctype)
        if mt == "application/json":
            return req.body, None
        if mt == "multipart/mixed":
            parts = multipart.parse(req.body, multipart.boundary_of(ctype or ""))
            if multipart.media_type(parts[0].headers.get("content-type")) != "application/json":
                raise bad_request(
                    "multipart.first-part", "the first part of a multipart/mixed request must be application/json "
                    "holding the statements (Communication §1.5.2.s2.b2)",
                )  # fmt: skip
            return parts[0].body, multipart.attachment_parts(parts)
        raise bad_request(
            "content-type", f"statements must be sent as application/json or multipart/mixed, not {ctype!r}"
        )

    def _parse(self, raw: bytes) -> Any:
        return parse_request_json(raw)

    def _check_attachments(self, statements: list[dict[str, Any]], parts: dict[str, multipart.Part] | None) -> None:
        """Every attachment without fileUrl has its part; every part belongs to an attachment."""
        declared: set[str] = set()
        for i, s in enumerate(statements):
            obj = s["object"]
            if "attachments" not in s and not (obj.get("objectType") == "SubStatement" and "attachments" in obj):
                continue  # the common case: no attachments at all
            for sha in attachments_needing_parts(s):
                if parts is None:
                    raise bad_request(
                        "attachments.needs-multipart",
                        f"attachment {sha} has no fileUrl, so its content must be sent as a multipart/mixed part "
                        "(Communication §1.5.2.s2.b1)",
                        f"$[{i}].attachments",
                    )
                if sha.lower() not in parts:
                    raise bad_request(
                        "attachments.missing-part",
                        f"no multipart part with {multipart.HASH_HEADER} {sha} (Communication §1.5.2.s3.b5)",
                        f"$[{i}].attachments",
                    )
            for atts in (s.get("attachments"), obj.get("attachments")):
                declared.update(a["sha2"].lower() for a in atts or ())
            for sha in signature_sha2s(s):
                part = (parts or {}).get(sha)
                if part is not None:
                    check_signature(s, part.body, f"$[{i}].attachments")
        for sha in parts or ():
            if sha not in declared:
                raise bad_request(
                    "attachments.part.unmatched",
                    f"multipart part {sha} matches no attachment sha2 of the statements (Communication §1.5.2.s1.b4)",
                    "$parts",
                )

    async def _put(self, req: XRequest, school: str, version: str) -> web.Response:
        extra = set(req.query) - {"statementId"}
        if extra:
            raise bad_request("put.query", f"PUT /statements takes only statementId, found {sorted(extra)}", "$query")
        sid = req.query.get("statementId")
        if sid is None:
            raise bad_request("put.statementId", "PUT /statements needs the statementId parameter (§2.1.1)", "$query")
        if not is_uuid(sid):
            raise bad_request("put.statementId", f"statementId must be a UUID, found {sid!r}", "$query.statementId")
        raw, parts = self._payload(req)
        doc = self._parse(raw)
        if not isinstance(doc, dict):
            raise bad_request("put.body", "PUT /statements takes exactly one statement object (§2.1.1)")
        policy = self.intake.policy_of(req.key)
        violations = validate_statement_tolerant(doc, version=version, tolerate=policy.tolerated)
        if "id" in doc:
            if str(doc["id"]).lower() != sid.lower():
                raise bad_request(
                    "put.id-mismatch", f"statement id {doc['id']} differs from statementId {sid} (§2.1.1.s3.b3)", "$.id"
                )
        else:
            doc = {"id": sid, **doc}
        self._check_attachments([doc], parts)
        written = self._write(school, version, [doc], parts, [violations])
        del doc  # _write lets it go before it waits for Kafka
        await written
        return web.Response(status=204, headers=self._headers(version))

    async def _post(self, req: XRequest, school: str, version: str) -> web.Response:
        if req.query:
            raise bad_request(
                "post.query", f"POST /statements takes no query parameters, found {sorted(req.query)}", "$query"
            )
        raw, parts = self._payload(req)
        payload = self._parse(raw)
        if isinstance(payload, list) and len(payload) > self.config.max_batch:
            metrics.GATEWAY_REFUSALS.labels("batch.too-large").inc()
            raise XapiError(
                413, "batch.too-large",
                f"the batch holds {len(payload)} statements; this LRS accepts at most {self.config.max_batch} "
                "per request: split it",
            )  # fmt: skip
        policy = self.intake.policy_of(req.key)
        statements, violations = validate_statements_tolerant(payload, version=version, tolerate=policy.tolerated)
        self._check_attachments(statements, parts)
        written = self._write(school, version, statements, parts, violations)
        del payload, statements  # _write lets them go before it waits for Kafka
        ids = await written
        if ids is None:  # every statement was already stored, identical: nothing changed
            return web.Response(status=204, headers=self._headers(version))
        return web.Response(body=orjson.dumps(ids), content_type="application/json", headers=self._headers(version))

    def _write(
        self,
        school: str,
        version: str,
        statements: list[dict[str, Any]],
        parts: dict[str, multipart.Part] | None,
        violations: list[tuple[str, ...]] | None = None,
    ) -> Coroutine[Any, Any, list[str] | None]:
        """Store the statements all-or-nothing; the ids in request order, or None if all existed.

        ``violations``: per statement, the rule ids its credential's policy tolerated.
        Returns the writer's coroutine itself (the caller awaits it): one coroutine less in
        the chain every wake-up of the request passes through.
        """
        if version != V1:
            for s in statements:
                s.setdefault("version", "2.0.0")
        before_send = None
        if parts:

            async def attachments_first(new: list[dict[str, Any]], stored_ms: int) -> None:
                # Attachment contents first: a statement must never be readable without them.
                await self._store_attachments(school, new, parts, stored_ms)

            before_send = attachments_first
        return self.writer.write(school, version, statements, before_send, violations)

    async def _store_attachments(
        self, school: str, statements: list[dict[str, Any]], parts: dict[str, multipart.Part], stored_ms: int
    ) -> None:
        if self.attachments is None and self.store is None:
            raise XapiError(503, "store.unavailable", "this gateway has no attachment store")
        items: dict[str, tuple[str, str, bytes]] = {}
        for s in statements:
            for atts in (s.get("attachments"), (s.get("object") or {}).get("attachments")):
                for a in atts or ():
                    sha = a["sha2"].lower()
                    if sha in parts and sha not in items:
                        items[sha] = (sha, a["contentType"], parts[sha].body)
        if not items:
            return
        if self.attachments is not None:  # the transactional store: no ClickHouse on the write path
            await asyncio.to_thread(self.attachments.put, school, list(items.values()), stored_ms)
        else:
            await asyncio.to_thread(self.store.put_attachments, school, list(items.values()), stored_ms)  # type: ignore[union-attr]

    # -- reads -----------------------------------------------------------------------
    async def _read(self, req: XRequest, school: str, version: str) -> web.Response:
        params = req.query
        single = parse_single(params)
        if single is not None:
            return await self._read_one(single, req, school, version)
        if self.store is None:
            raise XapiError(503, "store.unavailable", "this gateway has no statement store to read from")
        if "more" in params:
            if len(params) != 1:
                raise bad_request("query.more", "a more link carries the whole query; add no other parameters")
            q = parse_cursor(params["more"], self.cursors, self.config.max_limit)
        else:
            q = parse_query(params, self.config.max_limit)
        filters = q.filters()
        rows, more = await asyncio.to_thread(self.store.query, school, **filters, limit=q.limit)
        through = self.consistent_through_ms()
        if rows and self._consistent_through is not None and max(r[0] for r in rows) > through:
            # Consistent-Through is never before the stored of a statement returned
            # (Communication §2.1.3.s2.b5). The sink may have caught up since the last
            # refresh; if it still has not, answer the snapshot the header covers (while
            # the sink's progress is unknown there is nothing to promise nor to hold back).
            try:
                await self._refresh_on_demand()
            except Exception as err:  # noqa: BLE001 - the snapshot below keeps the answer right
                log.warning("consistent-through refresh failed: %r", err)
            through = self.consistent_through_ms()
            if self._sink_through is not None and max(r[0] for r in rows) > through:
                until = filters["until_ms"]
                filters["until_ms"] = through if until is None else min(until, through)
                rows, more = await asyncio.to_thread(self.store.query, school, **filters, limit=q.limit)
        accept_language = req.headers.get("Accept-Language")
        bodies = [self._render(raw, q.format, accept_language) for _, _, raw in rows]
        more_url = f"{self.config.prefix}/statements?more={q.next_cursor(rows[-1][:2], self.cursors)}" if more and rows else ""
        body = b'{"statements":[' + b",".join(bodies) + b'],"more":' + orjson.dumps(more_url) + b"}"
        headers = self._headers(version, through)
        if rows:
            headers["Last-Modified"] = http_date(max(r[0] for r in rows))
        return await self._respond(body, q.attachments, [orjson.loads(b) for b in bodies] if q.attachments else [],
                                   school, headers)  # fmt: skip

    async def _read_one(self, q: SingleQuery, req: XRequest, school: str, version: str) -> web.Response:
        found = await self._find_one(school, q.statement_id.lower(), q.voided)
        if found is None:
            what = "voided statement" if q.voided else "statement"
            raise XapiError(404, "statement.not-found", f"no {what} {q.statement_id}")
        raw, stored_ms = found
        body = self._render(raw, q.format, req.headers.get("Accept-Language"))
        headers = self._headers(version)
        headers["Last-Modified"] = http_date(stored_ms)
        return await self._respond(body, q.attachments, [orjson.loads(body)] if q.attachments else [], school, headers)

    async def _find_one(self, school: str, sid: str, voided: bool) -> tuple[bytes, int] | None:
        """``(stored JSON, stored_ms)`` of one statement: from the index's copy from the moment it
        was acknowledged until the sinks have it (read-your-writes, on every gateway), then from
        ClickHouse: what an erasure removed there, or a sink dropped as a forgotten learner's,
        is not answered from the copy."""
        # One trip to the index (a thread hop and a read transaction): under load each hop
        # waits its turn on the event loop again.
        entry, voided_here = await self.index.read_one(school, sid)
        in_index = entry is not None and entry.accepted and entry.body is not None and not self._sunk(entry)
        if voided_here and not voided:
            return None  # voided: not returned by statementId (Communication §2.1.4), whatever ClickHouse has yet
        if in_index and (voided_here or not voided):
            return entry.body, entry.stored_ms  # type: ignore[union-attr,return-value]
        if self.store is None:
            raise XapiError(503, "store.unavailable", "this gateway has no statement store to read from")
        found = await asyncio.to_thread(self.store.get, school, sid, voided)
        if found is None and voided_here:
            # Voided by a statement the sinks have not written yet.
            found = await asyncio.to_thread(self.store.get, school, sid, False)
        return found

    def _sunk(self, entry: IndexEntry) -> bool:
        """Whether the statements sink has certainly passed this entry (written it, or dropped it
        as a forgotten learner's): acknowledged before the sink's caught-up time (less the
        clock margin between hosts). Unknown progress, or no statement store: not sunk."""
        if self.store is None or self._sink_through is None:
            return False
        return entry.acked_ms < self._sink_through - self.config.clock_margin_ms

    async def _attachment_contents(self, school: str, wanted: list[str]) -> dict[str, tuple[str, bytes]]:
        """From the transactional store; those missing there (stored before it held them) from ClickHouse."""
        found: dict[str, tuple[str, bytes]] = {}
        if self.attachments is not None:
            found = await asyncio.to_thread(self.attachments.get, school, wanted)
        missing = [sha for sha in wanted if sha not in found]
        if missing and self.store is not None:
            found.update(await asyncio.to_thread(self.store.attachments, school, missing))
        return found

    @staticmethod
    def _render(raw: bytes, fmt: str, accept_language: str | None) -> bytes:
        if fmt == "exact":
            return raw  # byte-for-byte as stored
        st = orjson.loads(raw)
        return orjson.dumps(ids_format(st) if fmt == "ids" else canonical_format(st, accept_language))

    async def _respond(
        self, body: bytes, attachments: bool, statements: list[dict[str, Any]], school: str, headers: dict[str, str]
    ) -> web.Response:
        if not attachments:
            return web.Response(body=body, content_type="application/json", headers=headers)
        wanted: list[str] = []
        for s in statements:
            for atts in (s.get("attachments"), (s.get("object") or {}).get("attachments")):
                for a in atts or ():
                    sha = str(a.get("sha2", "")).lower()
                    if sha and sha not in wanted:
                        wanted.append(sha)
        found = await self._attachment_contents(school, wanted) if wanted else {}
        out, ctype = multipart.build(body, [(sha, *found[sha]) for sha in wanted if sha in found])
        headers["Content-Type"] = ctype
        return web.Response(body=out, headers=headers)


GATEWAY_KEY = web.AppKey("gateway", Gateway)

# Room an envelope needs around its largest statement (school, learner, course, cohort).
ENVELOPE_MARGIN = 64 * 1024


def check_limits_agree(config: GatewayConfig, max_message_bytes: int) -> None:
    """Refuse limits under which an accepted request could fail in Kafka.

    A request under ``max_body_bytes`` is split into envelopes of at most one statement
    over 256 KiB each, so the only record that can outgrow Kafka's message limit is one
    holding a single statement: ``max_statement_bytes`` plus the envelope must fit.
    """
    if config.max_statement_bytes + ENVELOPE_MARGIN > max_message_bytes:
        raise ValueError(
            f"max_statement_bytes {config.max_statement_bytes} + {ENVELOPE_MARGIN} bytes of envelope exceeds the "
            f"Kafka message limit {max_message_bytes}: lower it, or raise max.message.bytes and max_request_bytes"
        )


def make_runner(app: web.Application) -> web.AppRunner:
    """The runner to serve a gateway app with: its header timeout is aiohttp's keep-alive
    timeout, which also closes a connection that never completes its request's headers."""
    config = app[GATEWAY_KEY].config if GATEWAY_KEY in app else GatewayConfig()
    return web.AppRunner(app, access_log=None, keepalive_timeout=config.header_timeout_s)


def make_gateway_app(
    config: GatewayConfig,
    *,
    authenticator: Authenticator,
    sender: TransactionalSender,
    store: StatementStore | None,
    consistent_through: Callable[[], int | None] | None,
    pseudonym_secret: bytes,
    index: StatementIndex,
    index_reader: StatementIndex | None = None,
    attachments: AttachmentStore | None = None,
    profiles: Mapping[str, SchoolProfile] | None = None,
    documents: DocumentStore | None = None,
    documents_config: DocumentsConfig = DocumentsConfig(),
    activities: ActivityLookup | None = None,
    origins: OriginPolicy | None = None,
    quarantine: QuarantineWriter | None = None,
) -> web.Application:
    """The Statements API under ``config.prefix`` plus ``/metrics``.

    With ``documents``, also the State, Activity Profile and Agent Profile resources,
    ``/activities`` (definitions from ``activities`` when given) and ``/agents``
    (:mod:`.documents`). With ``origins``, CORS on every resource (:mod:`.cors`). With
    ``quarantine``, every statement write refused with 400 is kept there (:mod:`.intake`).

    The app starts ``sender`` on start-up and closes it on clean-up. ``store`` answers
    reads and conflict look-ups (``reporting.lrs.LrsStore``); ``consistent_through``
    returns epoch ms up to which the sink committed everything (``reporting.progress``).
    ``index`` is the accepted-id index every gateway of the deployment shares
    (``producers.lrsstore``; ``index_reader``, if given, a second connection for reads);
    ``attachments`` holds attachment contents (else ``store`` does).
    """
    check_limits_agree(config, sender.params.max_request_bytes)
    gw = Gateway(config, authenticator, sender, store, consistent_through, pseudonym_secret,
                 IndexClient(index, index_reader), profiles)  # fmt: skip
    middlewares = [cors_middleware(origins, config.prefix)] if origins is not None else []
    middlewares.append(unexpected_error_middleware)  # inside CORS: a 500 carries the grant
    app = web.Application(client_max_size=config.max_body_bytes, middlewares=middlewares)
    app[GATEWAY_KEY] = gw
    gw.origins = origins
    gw.attachments = attachments
    gw.intake.quarantine = quarantine
    app.on_startup.append(gw.on_startup)
    app.on_cleanup.append(gw.on_cleanup)
    app.router.add_route("*", f"{config.prefix}/statements", gw.statements)
    app.router.add_get(f"{config.prefix}/about", gw.about)
    if documents is not None:
        DocumentResources(gw, documents, documents_config, activities).mount(app, config.prefix)
    app.router.add_get("/metrics", gw.metrics_endpoint)
    return app


__all__ = [
    "ENVELOPE_MARGIN", "GATEWAY_KEY", "Authenticator", "Gateway", "GatewayConfig", "check_limits_agree",
    "make_gateway_app", "make_runner",
]  # fmt: skip
