"""The answer to a request whose handler failed unexpectedly: a JSON 500, never a dropped answer.

aiohttp answers an escaped exception with a bare 500 produced outside the middlewares, so
a browser page on another origin gets no CORS grant and sees only "Network Error". This
middleware sits inside the CORS one: the 500 carries the grant and the error envelope every
other refusal has, and the exception is logged with the request line.
"""

from __future__ import annotations

import logging

import orjson
from aiohttp import web

log = logging.getLogger("learnpulse.gateway")


@web.middleware
async def unexpected_error_middleware(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except (web.HTTPException, ConnectionError):
        raise  # answers aiohttp makes itself, and clients that went away
    except Exception:  # noqa: BLE001 - everything else is our defect: answer it, log it
        log.exception("unexpected error answering %s %s", request.method, request.path)
        body = orjson.dumps({"error": {"status": 500, "rule": "internal", "path": "$",
                                       "message": "the LRS failed to answer this request; it is logged"}})  # fmt: skip
        return web.Response(status=500, body=body, content_type="application/json")


__all__ = ["unexpected_error_middleware"]
