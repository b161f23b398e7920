"""The end-to-end benchmark's load generator against a small local HTTP server: open-loop pacing,
one statement per POST with the credential and version headers, answers counted by status."""

from __future__ import annotations

import asyncio
import threading
import time

import orjson
from aiohttp import web

from benchmarks.end_to_end.traffic import Load, Shape
from benchmarks.ports import free_port


class _Server:
    """An aiohttp server in a thread of its own: answers 200, or 503 for every fifth request."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        self.arrivals: list[float] = []
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.port = 0
        self.thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)

    async def _statements(self, request: web.Request) -> web.Response:
        self.arrivals.append(time.monotonic())
        self.bodies.append(orjson.loads(await request.read()))
        self.headers.append(dict(request.headers))
        if len(self.bodies) % 5 == 0:
            return web.Response(status=503)
        return web.Response(body=b'["id"]', content_type="application/json")

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_post("/xapi/statements", self._statements)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = runner.addresses[0][1]
        self._stop = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def __enter__(self) -> _Server:
        self.thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *_exc) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(10)


def test_the_load_paces_single_statement_posts_and_counts_answers_by_status():
    with _Server() as server:
        load = Load(f"http://127.0.0.1:{server.port}/xapi", ("key", "secret"), Shape("s1", learners=50),
                    clients=32, batch=1)  # fmt: skip
        started = time.monotonic()
        step = load.run(rate=100, duration=2)
        took = time.monotonic() - started
    assert step.offered == 200
    assert step.sent == 200 and len(server.bodies) == 200
    assert step.statuses == {200: 160, 503: 40}
    assert step.accepted == 160 and len(step.latencies) == 200
    # Open loop: spread over the step, not sent at once (generous: a busy machine is slower, never faster).
    assert took >= 1.9
    assert server.arrivals[-1] - server.arrivals[0] >= 1.8
    # One statement object per POST, each from a learner of the shape, with the headers an LRS client sends.
    assert all(isinstance(b, dict) and b["actor"]["account"]["name"].startswith("learner-") for b in server.bodies)
    assert len({b["id"] for b in server.bodies}) == 200
    h = server.headers[0]
    assert h["Authorization"] == "Basic a2V5OnNlY3JldA==" and h["X-Experience-API-Version"] == "1.0.3"
    assert h["Content-Type"] == "application/json"


def test_a_server_that_is_not_there_is_counted_as_errors_not_raised():
    load = Load(f"http://127.0.0.1:{free_port()}/xapi", ("key", "secret"), Shape("s1"), clients=2, batch=1, timeout=5)
    step = load.run(rate=20, duration=0.5)
    assert step.offered == 10 and step.sent == 10 and step.accepted == 0
    assert all(isinstance(status, str) for status in step.statuses)


class _ChunkingServer(_Server):
    """Answers in chunks, or with a closing connection every third request."""

    async def _statements(self, request: web.Request) -> web.StreamResponse:
        self.arrivals.append(time.monotonic())
        self.bodies.append(orjson.loads(await request.read()))
        if len(self.bodies) % 3 == 0:
            closing = web.Response(status=204)
            closing.force_close()
            return closing
        resp = web.StreamResponse(status=200)
        resp.enable_chunked_encoding()
        resp.content_type = "application/json"
        await resp.prepare(request)
        await resp.write(b'["i')
        await resp.write(b'd"]')
        await resp.write_eof()
        return resp


def test_chunked_answers_and_closed_connections_are_read_to_their_end():
    with _ChunkingServer() as server:
        load = Load(f"http://127.0.0.1:{server.port}/xapi", ("key", "secret"), Shape("s1", learners=50),
                    clients=16, batch=1)  # fmt: skip
        step = load.run(rate=60, duration=1)
    assert step.sent == 60 and len(server.bodies) == 60
    assert step.statuses == {200: 40, 204: 20}, step.statuses
