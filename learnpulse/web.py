"""The HTTP surface of the process that owns ClickHouse access: sign-in, live view, its API, research SQL, metrics."""

from __future__ import annotations

import asyncio
import threading

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from producers.gateway.app import make_runner
from producers.gateway.forwarded import relayed
from reporting.dashboard import add_dashboard_routes
from reporting.sql import add_sql_routes, allowed_hosts
from schemas.clickhouse.engine import ClickHouse, QueryLimits, ReadonlyRunner
from sinks.engines import readonly_runner

from .operators import OperatorAccounts, operators_path
from .researchers import OwnerToken, ResearcherTokens, researchers_path
from .settings import Settings
from .signin import SIGNIN_PATH, SignIn


def research_limits(settings: Settings) -> QueryLimits:
    r = settings.research
    return QueryLimits(
        max_execution_s=r.max_execution_s, max_memory_bytes=r.max_memory_bytes, max_result_rows=r.max_result_rows,
        max_result_bytes=r.max_result_bytes, max_rows_to_read=r.max_rows_to_read, max_threads=r.max_threads,
    )  # fmt: skip


def research_runner(settings: Settings, ch: ClickHouse) -> ReadonlyRunner:
    """Research queries' own connection beside ``ch`` (another chDB handle / server connection)."""
    return readonly_runner(ch, research_limits(settings), settings.research.url)


def flag_rules(settings: Settings):
    """A school's flag thresholds as the stream worker applies them (per-school overrides included)."""
    from reporting.drilldown import FlagRules

    from .commands.streams import streams_config

    params = streams_config(settings).health

    def of(school: str) -> FlagRules:
        t = params.per_school.get(school, params.defaults)
        return FlagRules(t.inactive_days, t.low_active_fraction, t.stalled_attempts, t.stalled_within_days)

    return of


def make_app(ch: ClickHouse, settings: Settings | None = None, port: int | None = None) -> web.Application:
    """The web surface of the ClickHouse-owning process: dashboard, its API, research SQL, /metrics.

    ``port``: the port it will listen on (accepted ``Host`` values of ``/api/sql``); default
    ``settings.web_port``.
    """
    explicit = settings is not None
    settings = settings or Settings()

    async def metrics(request: web.Request) -> web.Response:
        # For Prometheus, which asks this process directly; not for what a proxy relays.
        if relayed(request, settings.operators.trusted_proxies):
            raise web.HTTPNotFound()
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    # Operators sign in; every dashboard answer is scoped to who signed in.
    accounts = OperatorAccounts(settings.operators.accounts_file or operators_path(settings.home))
    signin = SignIn(accounts, settings.operators)
    signin.install(app)
    add_dashboard_routes(app, ch, SIGNIN_PATH, flag_rules(settings))
    runner = research_runner(settings, ch)
    tokens = ResearcherTokens(settings.research.tokens_file or researchers_path(settings.home))
    # Research SQL keeps its bearer tokens only: operator sessions never reach it (researchers
    # see pseudonyms; an operator's scope is not a research query's). The local owner token only where the caller named the home it belongs in.
    authenticators = [tokens, OwnerToken(settings.home)] if explicit else [tokens]
    hosts = allowed_hosts(port or settings.web_port, [settings.bind_host])
    add_sql_routes(app, runner, ch.database, authenticators, hosts)

    async def close_runner(_app: web.Application) -> None:
        await asyncio.to_thread(runner.close)

    app.on_cleanup.append(close_runner)
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
        # The gateway's runner: a connection that never completes its headers is closed
        # (slow clients), for the LRS mounted here (demo) and the dashboard alike.
        self._runner = make_runner(app)
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
