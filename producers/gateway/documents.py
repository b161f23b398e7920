"""The LRS document resources: State, Activity Profile, Agent Profile, plus /activities and /agents.

xAPI 1.0.3 Communication §2.2–2.7 and §3.1, IEEE 9274.1.1 (xAPI 2.0) §4.1.6 and §4.1.4.
Documents live in a transactional store (``schemas.lrs_store.DocumentStore``), never in
Kafka or ClickHouse; every request is scoped to the credential's school, and the ``agent``
of a State or Agent Profile is keyed by its learner pseudonym (``schemas.identity``), so
``learnpulse forget-learner`` can erase them.

Concurrency (the store's compare-and-set makes each decision atomic, also across processes):

- ``If-Match: "<etag>"`` / ``*`` and ``If-None-Match: *`` / ``"<etag>"`` are honoured on PUT,
  POST and DELETE of every document resource; a failed one is 412 and changes nothing.
- A PUT without either header on an existing document is 409 on the Activity and Agent
  Profile resources (1.0.3 §3.1.s4.b13) and, under xAPI 2.0, on State too (9274.1.1
  §4.1.4); 1.0.3 lets State be PUT without them (§3.1.s3).
- POST merges JSON objects (§2.2.s7): read, merge, write if the document is still what was
  read, else read again. A POST to an absent document stores it as a PUT would (§2.2.s7);
  to an existing one both documents must be JSON objects (§2.2.s8.b1), else 400.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from schemas import metrics
from schemas.clickhouse.engine import ClickHouseUnavailable
from schemas.errors import InvalidStatement
from schemas.identity import pseudonym
from schemas.lrs_store import Document, DocumentKey, DocumentKind, DocumentStore, Precondition, PreconditionFailed
from schemas.xapi.formats import is_iri, is_uuid

from .altsyntax import XRequest, headers_only_for_head, unwrap
from .forwarded import client_address
from .jsonguard import check_depth, check_unique_keys
from .multipart import media_type
from .protocol import V2, VERSION_HEADER, XapiError, bad_request, http_date, negotiate
from .query import _timestamp, agent_ifi

if TYPE_CHECKING:
    from .app import Gateway

log = logging.getLogger("learnpulse.gateway.documents")

# Reads of a merge retried when another writer changed the document in between.
_MERGE_ATTEMPTS = 50
_AGENT_KEYS = frozenset({"objectType", "name", "mbox", "mbox_sha1sum", "openid", "account"})


@dataclass(frozen=True)
class DocumentsConfig:
    # 413 above this many bytes of document content (xAPI 1.0.3 Communication §3.2.s2.b7).
    max_document_bytes: int = 2 * 1024 * 1024


# Activity definitions by (school, activity id), for GET /activities (None: not known).
ActivityLookup = Callable[[str, str], "dict[str, Any] | None"]


@dataclass(frozen=True)
class _Resource:
    name: str  # metrics label and path
    kind: DocumentKind | None
    id_param: str | None  # stateId / profileId
    methods: frozenset[str]
    params: frozenset[str]  # every parameter the resource recognizes (§3.2.s3.b7)


_DOC_METHODS = frozenset({"GET", "HEAD", "PUT", "POST", "DELETE"})
STATE = _Resource("state", DocumentKind.STATE, "stateId", _DOC_METHODS,
                  frozenset({"activityId", "agent", "registration", "stateId", "since"}))  # fmt: skip
ACTIVITY_PROFILE = _Resource("activity_profile", DocumentKind.ACTIVITY_PROFILE, "profileId", _DOC_METHODS,
                             frozenset({"activityId", "profileId", "since"}))  # fmt: skip
AGENT_PROFILE = _Resource("agent_profile", DocumentKind.AGENT_PROFILE, "profileId", _DOC_METHODS,
                          frozenset({"agent", "profileId", "since"}))  # fmt: skip
ACTIVITIES = _Resource("activities", None, None, frozenset({"GET", "HEAD"}), frozenset({"activityId"}))
AGENTS = _Resource("agents", None, None, frozenset({"GET", "HEAD"}), frozenset({"agent"}))


def quoted(etag: str) -> str:
    """The ETag header value: the hex SHA-1 in quotes (1.0.3 Communication §3.1.s4.b4)."""
    return f'"{etag}"'


def _etag_list(header: str) -> list[str] | None:
    """Entity tags of an If-Match/If-None-Match header; None for ``*``.

    Weak tags (``W/"…"``) are dropped: If-Match compares strongly (RFC 7232 §3.1) and our
    tags are strong. An unquoted token is taken as the tag a careless client meant.
    """
    value = header.strip()
    if value == "*":
        return None
    tags = []
    for part in value.split(","):
        tag = part.strip()
        if not tag or tag.startswith("W/"):
            continue
        tags.append(tag.strip('"').lower())
    return tags


@dataclass(frozen=True)
class _Conditions:
    if_match: list[str] | None  # None: header absent; [] never matches; ["*"] any
    if_none_match: list[str] | None

    @property
    def given(self) -> bool:
        return self.if_match is not None or self.if_none_match is not None

    def holds(self, current: Document | None) -> bool:
        if self.if_match is not None:
            if current is None:
                return False
            if self.if_match != ["*"] and current.etag not in self.if_match:
                return False
        if self.if_none_match is not None and current is not None:
            if self.if_none_match == ["*"] or current.etag in self.if_none_match:
                return False
        return True


def _conditions(req: XRequest) -> _Conditions:
    def parse(name: str) -> list[str] | None:
        raw = req.headers.get(name)
        if raw is None:
            return None
        tags = _etag_list(raw)
        return ["*"] if tags is None else tags

    return _Conditions(parse("If-Match"), parse("If-None-Match"))


def _precondition_failed(what: str) -> XapiError:
    return XapiError(
        412, "concurrency.precondition-failed",
        f"{what}: the document was changed or created since you read it; nothing was modified "
        "(Communication §3.1.s4.b9). GET it again and retry with its current ETag in If-Match.",
    )  # fmt: skip


def _needs_precondition_error(resource: _Resource, version: str) -> XapiError:
    rule = "IEEE 9274.1.1 §4.1.4" if version == V2 else "Communication §3.1.s4.b13"
    return XapiError(
        409, "concurrency.precondition-required",
        f"a document with this id already exists and the PUT carried neither If-Match nor If-None-Match ({rule}); "
        "nothing was modified. Check the current state of the document (GET), then PUT again with its ETag "
        "in If-Match (or If-None-Match: * to create only).",
    )  # fmt: skip


class DocumentResources:
    """Request handlers for the document resources, on a :class:`~producers.gateway.app.Gateway`."""

    def __init__(
        self,
        gateway: Gateway,
        store: DocumentStore,
        config: DocumentsConfig = DocumentsConfig(),
        activities: ActivityLookup | None = None,
    ) -> None:
        self.gw = gateway
        self.store = store
        self.config = config
        self.activities = activities

    def mount(self, app: web.Application, prefix: str) -> None:
        for path, resource in (
            ("/activities/state", STATE),
            ("/activities/profile", ACTIVITY_PROFILE),
            ("/agents/profile", AGENT_PROFILE),
            ("/activities", ACTIVITIES),
            ("/agents", AGENTS),
        ):
            app.router.add_route("*", prefix + path, self._handler(resource))

    def _handler(self, resource: _Resource):
        async def handle(request: web.Request) -> web.StreamResponse:
            return await self._serve(resource, request)

        return handle

    # -- request envelope (version, alternate syntax, credentials, metrics) ---------------
    async def _serve(self, resource: _Resource, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        version = self.gw.config.default_version
        method = request.method
        req: XRequest | None = None
        try:
            address = client_address(request, self.gw.config.trusted_proxies)
            self.gw.guard.request(address)
            req = await self.gw._xrequest(request)
            if "method" in req.query:
                req = unwrap(req, self.gw.config.default_version)
            method = req.method
            if method not in resource.methods:
                allow = ", ".join(sorted(resource.methods))
                raise XapiError(405, "method", f"{method} is not supported on this resource",
                                headers={"Allow": allow})  # fmt: skip
            served = negotiate(req.headers.get(VERSION_HEADER))
            if served is None:
                raise bad_request(
                    "version.header",
                    f"{VERSION_HEADER} must be 1.0.x or 2.0.x, found {req.headers.get(VERSION_HEADER)!r} "
                    "(Communication §3.3)",
                )
            version = served
            school = await self.gw._authenticate(req, address)
            response = await self._dispatch(resource, req, school, version)
            response.headers[VERSION_HEADER] = version
        except XapiError as err:
            response = err.response(version)
        except InvalidStatement as err:
            response = XapiError(400, err.rule, err.message, err.path).response(version)
        metrics.DOCUMENT_REQUESTS.labels(resource.name, method, str(response.status)).inc()
        metrics.DOCUMENT_REQUEST_SECONDS.labels(resource.name, method).observe(time.perf_counter() - started)
        return headers_only_for_head(req, response)

    async def _dispatch(self, resource: _Resource, req: XRequest, school: str, version: str) -> web.Response:
        unknown = set(req.query) - resource.params
        if unknown:
            raise bad_request(
                "query.unknown",
                f"parameters {sorted(unknown)} are not recognized on this resource; it takes "
                f"{sorted(resource.params)} (Communication §3.2.s3.b7)",
                "$query",
            )
        if resource is ACTIVITIES:
            return await self._activity(req, school)
        if resource is AGENTS:
            return self._person(req)
        return await self._document(resource, req, school, version)

    # -- parameters ----------------------------------------------------------------------
    @staticmethod
    def _required(req: XRequest, name: str) -> str:
        value = req.query.get(name)
        if value is None:
            raise bad_request(f"query.{name}.required", f"the {name} parameter is required", f"$query.{name}")
        return value

    def _activity_id(self, req: XRequest) -> str:
        value = self._required(req, "activityId")
        if not is_iri(value):
            raise bad_request("query.activityId.iri", f"activityId must be an IRI, found {value!r}", "$query.activityId")
        return value

    def _agent(self, req: XRequest) -> dict[str, Any]:
        """The ``agent`` parameter: one Agent object (not a Group) with exactly one valid IFI."""
        raw = self._required(req, "agent")
        agent_ifi(raw)  # JSON object, Agent/Group, exactly one well-formed IFI (400 otherwise)
        agent = orjson.loads(raw)
        path = "$query.agent"
        if agent.get("objectType", "Agent") != "Agent":
            raise bad_request(
                "query.agent.not-agent",
                "agent must be an Agent object, not a Group: to keep documents about an Identified Group, "
                "send its identifier in an Agent object (Communication §2.6)",
                path + ".objectType",
            )
        extra = set(agent) - _AGENT_KEYS
        if extra:
            raise bad_request("query.agent.properties", f"agent has properties an Agent does not: {sorted(extra)}", path)
        if "name" in agent and not isinstance(agent["name"], str):
            raise bad_request("query.agent.name", "agent name must be a string", path + ".name")
        return agent

    def _registration(self, req: XRequest) -> str | None:
        value = req.query.get("registration")
        if value is None:
            return None
        if not is_uuid(value):
            raise bad_request(
                "query.registration.uuid", f"registration must be a UUID, found {value!r}", "$query.registration"
            )
        return value.lower()

    # -- documents -----------------------------------------------------------------------
    async def _document(self, resource: _Resource, req: XRequest, school: str, version: str) -> web.Response:
        kind = resource.kind
        assert kind is not None and resource.id_param is not None
        activity = self._activity_id(req) if kind is not DocumentKind.AGENT_PROFILE else ""
        agent = (
            pseudonym(self.gw.secret, self._agent(req)) if kind is not DocumentKind.ACTIVITY_PROFILE else ""
        )
        registration = self._registration(req) if kind is DocumentKind.STATE else None
        doc_id = req.query.get(resource.id_param)
        method = req.method
        if "since" in req.query and method not in ("GET", "HEAD"):
            raise bad_request("query.since.context", f"since applies only to GET of the id list, not to {method}",
                              "$query.since")  # fmt: skip
        if doc_id is None:
            if method in ("GET", "HEAD"):
                since = _timestamp(req.query, "since")
                return await self._list(resource, school, activity, agent, registration, since)
            if method == "DELETE" and kind is DocumentKind.STATE:
                n = await asyncio.to_thread(self.store.delete_states, school, activity, agent, registration)
                metrics.DOCUMENT_CHANGES.labels(resource.name, "delete_many").inc(n)
                return web.Response(status=204)
            raise bad_request(
                f"query.{resource.id_param}.required",
                f"{method} needs the {resource.id_param} parameter", f"$query.{resource.id_param}",
            )  # fmt: skip
        key = DocumentKey(school, kind, activity, agent, registration or "", doc_id)
        if method in ("GET", "HEAD"):
            return await self._get(key)
        if method == "DELETE":
            return await self._delete(resource, key, _conditions(req))
        content = req.body
        if len(content) > self.config.max_document_bytes:
            raise XapiError(
                413, "document.too-large",
                f"the document is {len(content)} bytes; this LRS keeps documents of at most "
                f"{self.config.max_document_bytes} bytes (Communication §3.2.s2.b7)",
            )  # fmt: skip
        ctype = req.headers.get("Content-Type") or "application/octet-stream"
        if media_type(ctype) == "application/json":
            check_depth(content)  # nesting the merge could not serialize again: 400 json.depth
            try:
                parsed = orjson.loads(content)
            except orjson.JSONDecodeError as err:
                raise bad_request(
                    "document.json", f"the document is sent as application/json but is not valid JSON: {err} "
                    "(Communication §3.2.s3.b6)",
                ) from err  # fmt: skip
            check_unique_keys(content, parsed)
        needs_precondition = kind is not DocumentKind.STATE or version == V2
        if method == "PUT":
            return await self._put(resource, key, content, ctype, _conditions(req), needs_precondition, version)
        return await self._post(resource, key, content, ctype, _conditions(req))

    def _now_ms(self) -> int:
        return self.gw.clock_ms()

    async def _get(self, key: DocumentKey) -> web.Response:
        doc = await asyncio.to_thread(self.store.get, key)
        if doc is None:
            raise XapiError(404, "document.not-found", f"no document {key.document_id!r} here")
        return web.Response(
            body=doc.content,
            headers={"Content-Type": doc.content_type, "ETag": quoted(doc.etag),
                     "Last-Modified": http_date(doc.updated_ms)},
        )  # fmt: skip

    async def _list(
        self, resource: _Resource, school: str, activity: str, agent: str, registration: str | None, since: int | None
    ) -> web.Response:
        assert resource.kind is not None
        found = await asyncio.to_thread(
            self.store.list_ids, school, resource.kind, activity, agent, registration, since
        )
        body = orjson.dumps([doc_id for doc_id, _ in found])
        headers = {"Content-Type": "application/json", "ETag": quoted(hashlib.sha1(body).hexdigest())}
        if found:
            headers["Last-Modified"] = http_date(max(updated for _, updated in found))
        return web.Response(body=body, headers=headers)

    def _written(self, resource: _Resource, doc: Document, operation: str) -> web.Response:
        metrics.DOCUMENT_CHANGES.labels(resource.name, operation).inc()
        return web.Response(status=204, headers={"ETag": quoted(doc.etag), "Last-Modified": http_date(doc.updated_ms)})

    async def _put(
        self, resource: _Resource, key: DocumentKey, content: bytes, ctype: str, cond: _Conditions,
        needs_precondition: bool, version: str,
    ) -> web.Response:  # fmt: skip
        # The common cases are one conditional write, no read.
        if not cond.given:
            precondition = Precondition.ABSENT if needs_precondition else Precondition.NONE
            try:
                doc = await asyncio.to_thread(self.store.put, key, content, ctype, self._now_ms(), precondition)
            except PreconditionFailed:
                metrics.DOCUMENT_CONFLICTS.labels(resource.name, "missing_precondition").inc()
                raise _needs_precondition_error(resource, version) from None
            return self._written(resource, doc, "put")
        simple = None
        if cond.if_none_match is None and cond.if_match is not None and len(cond.if_match) == 1:
            tag = cond.if_match[0]
            simple = (Precondition.EXISTS, None) if tag == "*" else (Precondition.ETAG, tag)
        elif cond.if_match is None and cond.if_none_match == ["*"]:
            simple = (Precondition.ABSENT, None)
        if simple is not None:
            try:
                doc = await asyncio.to_thread(self.store.put, key, content, ctype, self._now_ms(), *simple)
            except PreconditionFailed:
                metrics.DOCUMENT_CONFLICTS.labels(resource.name, "precondition").inc()
                raise _precondition_failed("If-Match/If-None-Match did not hold") from None
            return self._written(resource, doc, "put")
        # Several tags: decide on a snapshot, write only if the snapshot is still current.
        return await self._read_modify_write(resource, key, cond, lambda _current: (content, ctype), "put")

    async def _post(
        self, resource: _Resource, key: DocumentKey, content: bytes, ctype: str, cond: _Conditions
    ) -> web.Response:
        posted: dict[str, Any] | None = None

        def merged(current: Document | None) -> tuple[bytes, str]:
            nonlocal posted
            if current is None:
                return content, ctype  # a POST to a new document stores it as a PUT would (§2.2.s7)
            if posted is None:
                posted = _json_object(content, ctype, "the posted document")
            base = _json_object(current.content, current.content_type, "the stored document")
            base.update(posted)  # top-level properties only (§2.2.s7.b2)
            return orjson.dumps(base), "application/json"

        return await self._read_modify_write(resource, key, cond, merged, "merge")

    async def _read_modify_write(
        self, resource: _Resource, key: DocumentKey, cond: _Conditions,
        change: Callable[[Document | None], tuple[bytes, str]], operation: str,
    ) -> web.Response:  # fmt: skip
        for _ in range(_MERGE_ATTEMPTS):
            current = await asyncio.to_thread(self.store.get, key)
            if not cond.holds(current):
                metrics.DOCUMENT_CONFLICTS.labels(resource.name, "precondition").inc()
                raise _precondition_failed("If-Match/If-None-Match did not hold")
            content, ctype = change(current)
            if len(content) > self.config.max_document_bytes:
                raise XapiError(
                    413, "document.too-large",
                    f"the merged document would be {len(content)} bytes; this LRS keeps documents of at most "
                    f"{self.config.max_document_bytes} bytes (Communication §3.2.s2.b7)",
                )  # fmt: skip
            expected = (Precondition.ABSENT, None) if current is None else (Precondition.ETAG, current.etag)
            try:
                doc = await asyncio.to_thread(self.store.put, key, content, ctype, self._now_ms(), *expected)
            except PreconditionFailed:
                metrics.DOCUMENT_CONFLICTS.labels(resource.name, "retried").inc()
                continue  # another writer changed it between our read and write: decide again
            return self._written(resource, doc, operation)
        raise XapiError(409, "document.contended", "the document kept changing while this request merged into it; "
                        "retry", headers={"Retry-After": "1"})  # fmt: skip

    async def _delete(self, resource: _Resource, key: DocumentKey, cond: _Conditions) -> web.Response:
        if cond.if_none_match is None and (cond.if_match is None or len(cond.if_match) == 1):
            if cond.if_match is None:
                expected: tuple[Precondition, str | None] = (Precondition.NONE, None)
            elif cond.if_match == ["*"]:
                expected = (Precondition.EXISTS, None)
            else:
                expected = (Precondition.ETAG, cond.if_match[0])
            try:
                deleted = await asyncio.to_thread(self.store.delete, key, *expected)
            except PreconditionFailed:
                metrics.DOCUMENT_CONFLICTS.labels(resource.name, "precondition").inc()
                raise _precondition_failed("If-Match did not hold") from None
        else:
            for _ in range(_MERGE_ATTEMPTS):
                current = await asyncio.to_thread(self.store.get, key)
                if not cond.holds(current):
                    metrics.DOCUMENT_CONFLICTS.labels(resource.name, "precondition").inc()
                    raise _precondition_failed("If-Match/If-None-Match did not hold")
                if current is None:
                    deleted = False
                    break
                try:
                    deleted = await asyncio.to_thread(self.store.delete, key, Precondition.ETAG, current.etag)
                    break
                except PreconditionFailed:
                    continue
            else:
                raise XapiError(409, "document.contended", "the document kept changing; retry",
                                headers={"Retry-After": "1"})  # fmt: skip
        if deleted:
            metrics.DOCUMENT_CHANGES.labels(resource.name, "delete").inc()
        return web.Response(status=204)

    # -- /activities and /agents ---------------------------------------------------------
    async def _activity(self, req: XRequest, school: str) -> web.Response:
        activity_id = self._activity_id(req)
        activity: dict[str, Any] | None = None
        if self.activities is not None:
            try:
                activity = await asyncio.to_thread(self.activities, school, activity_id)
            except ClickHouseUnavailable as err:
                log.warning("activity definitions unavailable, answering the bare Activity Object: %s", err)
        # Without a canonical definition the LRS still returns an Activity Object (§2.5.s2.b1).
        body = {"objectType": "Activity", "id": activity_id}
        if activity and activity.get("definition"):
            body["definition"] = activity["definition"]
        return _json_response(orjson.dumps(body))

    def _person(self, req: XRequest) -> web.Response:
        agent = self._agent(req)
        # This LRS knows no more about a person than the request says (§2.4.s3.b3).
        person: dict[str, Any] = {"objectType": "Person"}
        if "name" in agent:
            person["name"] = [agent["name"]]
        for ifi in ("mbox", "mbox_sha1sum", "openid", "account"):
            if ifi in agent:
                person[ifi] = [agent[ifi]]
        return _json_response(orjson.dumps(person))


def _json_response(body: bytes) -> web.Response:
    return web.Response(
        body=body, headers={"Content-Type": "application/json", "ETag": quoted(hashlib.sha1(body).hexdigest())}
    )


def _json_object(content: bytes, ctype: str, what: str) -> dict[str, Any]:
    """``content`` as a JSON object, or the 400 of Communication §2.2.s8.b1."""
    if media_type(ctype) != "application/json":
        raise bad_request(
            "document.merge.not-json",
            f"POST merges JSON documents: {what} has Content-Type {ctype!r}, not application/json; "
            "nothing was changed (Communication §2.2.s8.b1). Use PUT to replace the document.",
        )
    try:
        value = orjson.loads(content)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise bad_request(
            "document.merge.not-object",
            f"POST merges JSON objects: {what} is not a JSON object; nothing was changed "
            "(Communication §2.2.s8.b1). Use PUT to replace the document.",
        )
    return value


__all__ = ["ActivityLookup", "DocumentResources", "DocumentsConfig", "quoted"]
