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


def start_web_thread(app: web.Application, port: int, host: str = "127.0.0.1") -> threading.Thread:
    """Serve ``app`` on ``host``:``port`` from a daemon thread with its own event loop."""
    ready = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        loop = asyncio.new_event_loop()
        runner = web.AppRunner(app, access_log=None)
        loop.run_until_complete(runner.setup())
        try:
            loop.run_until_complete(web.TCPSite(runner, host, port).start())
        except OSError as err:
            failure.append(err)
            ready.set()
            return
        ready.set()
        loop.run_forever()

    t = threading.Thread(target=run, name="web", daemon=True)
    t.start()
    ready.wait(10)
    if failure:
        raise OSError(f"web port {port} is taken: {failure[0]}")
    return t
