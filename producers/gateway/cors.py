"""CORS for the LRS (every resource under the prefix): course content runs on other origins.

Browsers send a preflight ``OPTIONS`` (no credentials) before a cross-origin PUT/DELETE or
any request carrying ``Authorization`` or ``X-Experience-API-Version``. Which origins may
call is configured per school (``learnpulse credentials add/update --allow-origin``;
default: none, so no browser page can call the LRS until a school allows it):

- a preflight is granted when some school allows the origin (it carries no credentials,
  so the school is not known yet); otherwise 403 and no ``Access-Control-Allow-*``;
- the actual request's answer carries ``Access-Control-Allow-Origin`` for such origins,
  errors included, so the page can read them; the gateway then refuses with 403 a request
  whose credential's school does not allow its ``Origin`` (before acting on it);
- credentials travel only in ``Authorization`` (HTTP Basic), never in cookies, so
  ``Access-Control-Allow-Credentials`` is not sent.
"""

from __future__ import annotations

from typing import Protocol
from urllib.parse import urlsplit

import orjson
from aiohttp import web

from schemas import metrics

from .protocol import CONSISTENT_HEADER, VERSION_HEADER

ALLOW_METHODS = ("GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS")
# Request headers an xAPI client sends (plus those browsers always allow).
ALLOW_HEADERS = (
    "Authorization", "Content-Type", VERSION_HEADER, "If-Match", "If-None-Match", "Accept-Language",
    "Accept", "Content-Language",
)  # fmt: skip
EXPOSE_HEADERS = ("ETag", "Last-Modified", VERSION_HEADER, CONSISTENT_HEADER)
PREFLIGHT_MAX_AGE_S = 600
_ALLOWED_LOWER = frozenset(h.lower() for h in ALLOW_HEADERS)


class OriginPolicy(Protocol):
    """Which browser origins may call the LRS (``learnpulse.credentials.CredentialStore``)."""

    def origin_allowed(self, origin: str, school: str | None) -> bool:
        """Whether ``school`` allows ``origin``; with ``school`` None, whether any school does."""
        ...


def normalize_origin(value: str) -> str:
    """``scheme://host[:port]`` in lower case, the form browsers send in ``Origin``.

    Raises ValueError for anything else (a path, a wildcard, another scheme).
    """
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise ValueError(f"an origin is http(s)://host[:port] without a path, not {value!r}")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"an origin has no query, fragment or user info: {value!r}")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}[parts.scheme]
    port = f":{parts.port}" if parts.port is not None and parts.port != default else ""
    return f"{parts.scheme}://{host}{port}"


def cors_middleware(policy: OriginPolicy, prefix: str):
    """An aiohttp middleware answering preflights and adding CORS headers under ``prefix``."""

    @web.middleware
    async def cors(request: web.Request, handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is None or not (request.path == prefix or request.path.startswith(prefix + "/")):
            return await handler(request)
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            return _preflight(request, origin, policy)
        try:
            response = await handler(request)
        except web.HTTPException as raised:  # the router's 404/405: the page must be able to read them too
            _grant(raised.headers, origin, policy)
            raise
        _grant(response.headers, origin, policy)
        return response

    return cors


def _grant(headers, origin: str, policy: OriginPolicy) -> None:
    if policy.origin_allowed(origin, None):
        headers["Access-Control-Allow-Origin"] = origin
        headers["Access-Control-Expose-Headers"] = ", ".join(EXPOSE_HEADERS)
    headers.add("Vary", "Origin")


def _preflight(request: web.Request, origin: str, policy: OriginPolicy) -> web.Response:
    method = request.headers["Access-Control-Request-Method"].strip().upper()
    asked = [h.strip() for h in request.headers.get("Access-Control-Request-Headers", "").split(",") if h.strip()]
    refused = None
    if not policy.origin_allowed(origin, None):
        refused = f"origin {origin} is not allowed by any school (learnpulse credentials update --allow-origin)"
    elif method not in ALLOW_METHODS:
        refused = f"method {method} is not served"
    elif any(h.lower() not in _ALLOWED_LOWER for h in asked):
        refused = f"request headers {[h for h in asked if h.lower() not in _ALLOWED_LOWER]} are not allowed"
    if refused is not None:
        metrics.CORS_PREFLIGHTS.labels("refused").inc()
        body = orjson.dumps({"error": {"status": 403, "rule": "cors.preflight", "message": refused, "path": "$"}})
        return web.Response(status=403, body=body, content_type="application/json", headers={"Vary": "Origin"})
    metrics.CORS_PREFLIGHTS.labels("granted").inc()
    return web.Response(
        status=204,
        headers={
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": ", ".join(ALLOW_METHODS),
            "Access-Control-Allow-Headers": ", ".join(ALLOW_HEADERS),
            "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_S),
            "Vary": "Origin",
        },
    )


__all__ = ["ALLOW_HEADERS", "EXPOSE_HEADERS", "OriginPolicy", "cors_middleware", "normalize_origin"]
