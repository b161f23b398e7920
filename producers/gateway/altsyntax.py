"""Alternate request syntax (xAPI 1.0.3 Communication §1.3): a request tunnelled through a form POST.

``POST /statements?method=PUT`` with an ``application/x-www-form-urlencoded`` body whose
``content`` is the request body, whose header-named fields (Authorization,
X-Experience-API-Version, Content-Type, Content-Length, If-Match, If-None-Match) are the
headers, and whose other fields are the query parameters. IEEE 9274.1.1 (xAPI 2.0)
removed the syntax, so a 2.0 request carrying ``method`` is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from .multipart import media_type
from .protocol import V2, VERSION_HEADER, bad_request, negotiate

_HEADER_FIELDS = frozenset(
    name.lower()
    for name in ("Authorization", VERSION_HEADER, "Content-Type", "Content-Length", "If-Match", "If-None-Match")
)
# DELETE too: the document resources take it (Communication §1.3.s3.b2).
_METHODS = frozenset({"GET", "HEAD", "PUT", "POST", "DELETE"})


@dataclass
class XRequest:
    """A request as the xAPI handlers see it, whichever syntax carried it."""

    method: str
    query: dict[str, str]
    # The request's own (read-only) headers, or the alternate syntax's rebuilt ones.
    headers: CIMultiDictProxy | CIMultiDict
    body: bytes
    alternate: bool = False
    # The credential key, once the request is authenticated (its ingestion policy's key).
    key: str | None = None


def unwrap(req: XRequest, default_version: str) -> XRequest:
    """Turn an alternate-syntax POST into the request it carries (raises 400 when malformed)."""
    if negotiate(req.headers.get(VERSION_HEADER)) == V2:
        raise bad_request("alternate.removed", "IEEE 9274.1.1 (xAPI 2.0) removed the alternate request syntax")
    method = req.query.get("method", "")
    if set(req.query) != {"method"}:
        raise bad_request(
            "alternate.query",
            "with the alternate request syntax the query string may hold only 'method' (§1.3.s3.b3)",
            "$query",
        )
    if req.method != "POST":
        raise bad_request("alternate.method", "the alternate request syntax must be issued as POST (§1.3.s3.b1)")
    target = method.upper()
    # Any case: the ADL suite sends "method=post" and expects it served (Communication §1.3.s3.b2).
    if target not in _METHODS:
        raise bad_request(
            "alternate.method", f"method must be one of GET, HEAD, PUT, POST, DELETE; found {method!r}", "$query.method"
        )
    if media_type(req.headers.get("Content-Type")) != "application/x-www-form-urlencoded":
        raise bad_request(
            "alternate.content-type",
            "the alternate request syntax needs an application/x-www-form-urlencoded body (§1.3.s3.b4)",
        )
    try:
        form = parse_qsl(req.body.decode("utf-8"), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError as err:
        raise bad_request("alternate.encoding", f"form body is not UTF-8: {err}") from err
    headers = CIMultiDict(req.headers)
    # The outer Content-Type/Length describe the form, not the tunnelled request.
    headers.popall("Content-Type", None)
    headers.popall("Content-Length", None)
    query: dict[str, str] = {}
    body = b""
    for name, value in form:
        if name == "content":
            body = value.encode("utf-8")  # interpreted as a UTF-8 string (§1.3.s3.b5)
        elif name.lower() in _HEADER_FIELDS:
            headers[name] = value
        else:
            query[name] = value
    if (negotiate(headers.get(VERSION_HEADER)) or default_version) == V2:
        raise bad_request("alternate.removed", "IEEE 9274.1.1 (xAPI 2.0) removed the alternate request syntax")
    if body and "Content-Type" not in headers:
        headers["Content-Type"] = "application/json"
    return XRequest(target, query, headers, body, alternate=True)


def headers_only_for_head(req: XRequest | None, response: web.StreamResponse) -> web.StreamResponse:
    """The answer to a HEAD carried by the alternate syntax: the GET's status and headers, no body.

    A real HEAD has its body dropped by aiohttp; a tunnelled one travels as a POST, so the
    body would go out unless taken off here.
    """
    if req is None or not req.alternate or req.method != "HEAD" or not isinstance(response, web.Response):
        return response
    if response.body is None:
        return response
    return web.Response(status=response.status, headers=response.headers)
