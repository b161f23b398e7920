"""Reading a request body with a size limit and a time limit that follows its progress.

A client that sends its body a byte at a time ("slow loris") held a connection, a
handler and its buffer for as long as it liked. The body must now arrive at a minimum
average rate: by any moment it must have sent ``min_rate`` bytes per second since the
handler started reading, after a ``grace_s`` head start. A 1 KiB statement therefore has
``grace_s`` seconds and a 16 MiB batch ``grace_s`` + 256 s at the default 64 KiB/s; a
trickle of a few bytes a second is answered 408 after ``grace_s`` whatever the length.
Headers are bounded separately: aiohttp closes a connection that has not completed a
request within its keep-alive timeout (``server_options``).
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from schemas import metrics

from .protocol import XapiError


def too_large(size: int | None, limit: int) -> XapiError:
    metrics.GATEWAY_REFUSALS.labels("request.too-large").inc()
    seen = f"{size} bytes" if size is not None else "more"
    return XapiError(
        413, "request.too-large",
        f"request body is {seen}; this LRS accepts at most {limit} bytes per request "
        "(Communication §1.5.2.s3.b7): send smaller batches",
    )  # fmt: skip


def _too_slow(received: int, grace_s: float, min_rate: int) -> XapiError:
    metrics.GATEWAY_REFUSALS.labels("request.timeout").inc()
    return XapiError(
        408, "request.timeout",
        f"the request body arrived too slowly ({received} bytes so far): this LRS needs it within {grace_s:g} s "
        f"plus 1 s per {min_rate} bytes",
        headers={"Connection": "close"},
    )  # fmt: skip


async def read_body(request: web.Request, max_bytes: int, grace_s: float, min_rate: int) -> bytes:
    """The whole body; 413 ``request.too-large`` past ``max_bytes``, 408 ``request.timeout`` if too slow."""
    length = request.content_length
    if length is not None and length > max_bytes:
        raise too_large(length, max_bytes)
    stream = request.content
    if stream.is_eof():
        # The whole body came with the headers (every small request): it is in memory,
        # so there is nothing to time, only the size to check (a chunked body has no length).
        body = stream.read_nowait()
        if len(body) > max_bytes:
            raise too_large(None, max_bytes)
        return body
    started = time.monotonic()
    chunks: list[bytes] = []
    received = 0
    while True:
        allowed = started + grace_s + received / min_rate - time.monotonic()
        if allowed <= 0:
            raise _too_slow(received, grace_s, min_rate)
        try:
            async with asyncio.timeout(allowed):
                chunk = await stream.readany()
        except TimeoutError:
            raise _too_slow(received, grace_s, min_rate) from None
        if not chunk:
            break
        received += len(chunk)
        if received > max_bytes:
            raise too_large(None, max_bytes)
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
