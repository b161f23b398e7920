"""tincan's ``RemoteLRS``, adapted for a bridge that must forward statements exactly.

tincan 1.0 (Rustici, 2014) imports and runs on Python 3.11, but three things make its
statement calls unusable here as they are:

- ``query_statements``/``more_statements`` turn the response into tincan objects. That
  conversion is lossy (it renames keys in place, drops what it does not model) and
  strict where xAPI is not: a statement id that is a valid xAPI UUID but not of the
  RFC 4122 variant raises ``ValueError`` and loses the whole page.
- ``_send_request`` opens connections without a timeout, so a stalled LRS hangs the
  bridge for ever.
- Query values are sent with ``str()``: booleans become ``True`` rather than ``true``.

:class:`StatementsClient` keeps tincan's ``RemoteLRS`` (endpoint normalisation, Basic
auth, version header, ``HTTPRequest``/``LRSResponse``) and replaces only those parts:
requests carry a timeout, and statement pages are returned as the raw parsed JSON.
"""

from __future__ import annotations

import http.client
from typing import Any, ClassVar
from urllib.parse import urlencode, urljoin, urlsplit

import orjson
from tincan import RemoteLRS
from tincan.http_request import HTTPRequest
from tincan.lrs_response import LRSResponse


class LrsError(Exception):
    """The LRS answered with an error that retrying will not fix (4xx other than 408/429)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"LRS answered {status}: {message}")
        self.status = status


class LrsUnavailable(Exception):
    """The LRS could not be reached or is temporarily failing (network, 5xx, 408, 429): retry later."""


class StatementsClient(RemoteLRS):
    """A tincan ``RemoteLRS`` whose statement queries return raw StatementResult JSON."""

    # tincan objects accept only declared properties.
    _props: ClassVar[list[str]] = [*RemoteLRS._props, "timeout"]

    def __init__(self, *args: Any, timeout: float = 30.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timeout = timeout

    def _send_request(self, request: HTTPRequest) -> LRSResponse:
        headers = {"X-Experience-API-Version": self.version}
        if self.auth is not None:
            headers["Authorization"] = self.auth
        headers.update(request.headers or {})
        url = request.resource if request.resource.startswith("http") else self.endpoint + request.resource
        parts = urlsplit(url)
        query = "&".join(q for q in (parts.query, urlencode(request.query_params or {})) if q)
        target = (parts.path or "/") + (f"?{query}" if query else "")
        conn_cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        conn = conn_cls(parts.hostname, parts.port, timeout=self.timeout)
        try:
            conn.request(request.method, target, body=request.content, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as err:  # timeouts are OSError too
            raise LrsUnavailable(f"{request.method} {url}: {err!r}") from err
        finally:
            conn.close()
        success = 200 <= response.status < 300 or (response.status == 404 and bool(request.ignore404))
        return LRSResponse(success=success, request=request, response=response, data=data)

    def _statement_result(self, request: HTTPRequest) -> dict[str, Any]:
        res = self._send_request(request)
        status = res.response.status
        if not res.success:
            # tincan's LRSResponse keeps the body decoded to str.
            data = res.data or ""
            body = (data.decode("utf-8", "replace") if isinstance(data, bytes) else data)[:500]
            if status >= 500 or status in (408, 429):
                raise LrsUnavailable(f"LRS answered {status}: {body}")
            raise LrsError(status, body)
        try:
            doc = orjson.loads(res.data)
        except orjson.JSONDecodeError as err:
            raise LrsUnavailable(f"LRS answered {status} with a body that is not JSON: {err}") from err
        if not isinstance(doc, dict) or not isinstance(doc.get("statements"), list):
            raise LrsUnavailable("LRS answer is not a StatementResult (no statements array)")
        return doc

    def fetch_statements(self, params: dict[str, str]) -> dict[str, Any]:
        """GET statements with ``params`` (already strings, e.g. ``{"ascending": "true"}``)."""
        request = HTTPRequest(method="GET", resource="statements")
        request.query_params = params
        return self._statement_result(request)

    def fetch_more(self, more: str) -> dict[str, Any]:
        """Follow a StatementResult ``more`` IRL (relative to the server root, or absolute)."""
        return self._statement_result(HTTPRequest(method="GET", resource=urljoin(self.endpoint, more)))
