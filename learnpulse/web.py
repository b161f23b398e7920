"""The HTTP surface of the process that owns ClickHouse access: live view, summary API, metrics."""

from __future__ import annotations

import asyncio
import threading

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from reporting.dashboard import add_dashboard_routes
from reporting.sql import add_sql_routes
from schemas.clickhouse.engine import ClickHouse


def make_app(ch: ClickHouse) -> web.Application:
    """The web surface of the ClickHouse-owning process: dashboard, its API, /metrics."""

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    add_dashboard_routes(app, ch)
    add_sql_routes(app, ch)
    app.router.add_get("/metrics", metrics)
    return app


class WebThread:
    """An aiohttp app served from a thread with its own event loop; ``stop`` cleans it up.

    Stopping runs the app's cleanup hooks (the gateway closes its Kafka producers there)
    before the process closes ClickHouse, so nothing is still querying chDB at exit.
    """

    def __init__(self, app: web.Application, port: int, host: str) -> None:
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(app, access_log=None)
        self._ready = threading.Event()
        self._failure: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, args=(host,), name=f"web-{port}", daemon=True)

    def _run(self, host: str) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._runner.setup())
            loop.run_until_complete(web.TCPSite(self._runner, host, self.port).start())
        except OSError as err:
            self._failure.append(err)
            self._ready.set()
            loop.run_until_complete(self._runner.cleanup())
            return
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(self._runner.cleanup())
        loop.close()

    def start(self) -> WebThread:
        self._thread.start()
        self._ready.wait(30)
        if self._failure:
            raise OSError(f"port {self.port} is taken: {self._failure[0]}")
        return self

    def stop(self, timeout: float = 20) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)


def start_web_thread(app: web.Application, port: int, host: str = "127.0.0.1") -> WebThread:
    """Serve ``app`` on ``host``:``port`` from a thread; raises OSError if the port is taken."""
    return WebThread(app, port, host).start()
