"""xAPI transport rules shared by every handler: versions, errors, headers, time formats."""

from __future__ import annotations

import re
from email.utils import formatdate

import orjson
from aiohttp import web

VERSION_HEADER = "X-Experience-API-Version"
CONSISTENT_HEADER = "X-Experience-API-Consistent-Through"
HASH_HEADER = "X-Experience-API-Hash"

V1 = "1.0.3"
V2 = "2.0.0"

# xAPI 1.0.3 Communication §3.3: "1.0" means 1.0.0 and any 1.0.x is served as the latest
# patch, 1.0.3; IEEE 9274.1.1 likewise for "2.0"/"2.0.x". Anything older (0.9, 0.95) or
# unknown is refused with 400.
_V1 = re.compile(r"1\.0(?:\.\d+)?\Z")
_V2 = re.compile(r"2\.0(?:\.\d+)?\Z")


def negotiate(header: str | None) -> str | None:
    """The xAPI version a request is served under (``"1.0.3"``/``"2.0.0"``), or None if unsupported."""
    if header is None:
        return None
    value = header.strip()
    if _V1.match(value):
        return V1
    if _V2.match(value):
        return V2
    return None


class XapiError(Exception):
    """An HTTP error answer: status, a stable rule id, a message and the JSON path concerned."""

    def __init__(self, status: int, rule: str, message: str, path: str = "$", headers: dict[str, str] | None = None):
        super().__init__(f"{status} {rule}: {message}")
        self.status = status
        self.rule = rule
        self.message = message
        self.path = path
        self.headers = headers or {}

    def response(self, version: str) -> web.Response:
        body = orjson.dumps(
            {"error": {"status": self.status, "rule": self.rule, "message": self.message, "path": self.path}}
        )
        return web.Response(
            status=self.status,
            body=body,
            content_type="application/json",
            headers={VERSION_HEADER: version, **self.headers},
        )


def bad_request(rule: str, message: str, path: str = "$") -> XapiError:
    return XapiError(400, rule, message, path)


def http_date(ms: int) -> str:
    """RFC 7231 IMF-fixdate for ``Last-Modified`` (second precision, as HTTP dates have)."""
    return formatdate(ms / 1000, usegmt=True)
