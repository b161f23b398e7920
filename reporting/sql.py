"""Research SQL (``learnpulse sql``, ``POST /api/sql``): checked, then run read-only under limits.

Nothing of the text reaches ClickHouse before :mod:`reporting.sqlcheck` passed it (one
SELECT, research tables only, no function that reaches files or the network). It then runs
on a connection of its own (``schemas.clickhouse.engine.ReadonlyRunner``: another chDB
handle, or another server connection) with ``readonly=1`` and the time, memory, rows-read,
result rows and bytes limits, one query at a time, and is cancelled when the client goes.

``POST /api/sql`` takes ``{"sql": "…"}`` as ``application/json`` only (415 otherwise), with
``Authorization: Bearer <token>`` (401 without a valid one): no cookie is read, and an
``Origin`` or ``Host`` that is not this server's is refused (403), so a web page an operator
visits cannot run queries. Every refusal is a 4xx with a rule id, never a 500.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from schemas import metrics as M
from schemas.clickhouse.engine import (
    ClickHouseError,
    ClickHouseUnavailable,
    QueryCancelled,
    ReadonlyRunner,
)
from schemas.clickhouse.tables import RESEARCH_TABLES

from .sqlcheck import RULES, QueryRefused, check_query

log = logging.getLogger("learnpulse.sql")

# ClickHouse error codes of a query that hit one of its limits or rights, and their rules.
LIMIT_RULES = {
    159: "sql.limit.time",  # TIMEOUT_EXCEEDED
    241: "sql.limit.memory",  # MEMORY_LIMIT_EXCEEDED
    158: "sql.limit.rows_to_read",  # TOO_MANY_ROWS
    307: "sql.limit.bytes_to_read",  # TOO_MANY_BYTES
    396: "sql.limit.result",  # TOO_MANY_ROWS_OR_BYTES
    164: "sql.readonly",  # READONLY
    497: "sql.access",  # ACCESS_DENIED
}
MAX_BODY_BYTES = 64 * 1024


class QueryRejected(Exception):
    """The query was refused or failed for a reason of its own; ``rule`` says which, ``status`` the HTTP code."""

    def __init__(self, rule: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.rule = rule
        self.status = status


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    types: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool
    # The limit that cut the answer ("sql.limit.result_rows" / "sql.limit.result_bytes"), if any.
    limit: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "columns": self.columns,
            "types": self.types,
            "rows": [[_jsonable(v) for v in row] for row in self.rows],
            "truncated": self.truncated,
            "limit": self.limit,
        }


def research_query(
    runner: ReadonlyRunner,
    database: str,
    text: str,
    *,
    tables: Iterable[str] = RESEARCH_TABLES,
    cancel: threading.Event | None = None,
) -> QueryResult:
    """Check ``text`` (``{db}`` names ``database``) and run it on ``runner``; raise :class:`QueryRejected`."""
    try:
        checked = check_query(text, database, tables)
    except QueryRefused as err:
        M.SQL_QUERIES.labels("refused", err.rule).inc()
        raise QueryRejected(err.rule, f"{err.rule}: {err.detail} ({RULES[err.rule]})") from err
    started = time.monotonic()
    try:
        result = runner.run(checked.sql, cancel)
    except QueryCancelled as err:
        M.SQL_QUERIES.labels("cancelled", "").inc()
        raise QueryRejected("sql.cancelled", "sql.cancelled: the query was cancelled", 499) from err
    except ClickHouseUnavailable as err:
        M.SQL_QUERIES.labels("unavailable", "").inc()
        raise QueryRejected("sql.unavailable", f"sql.unavailable: ClickHouse is not available: {_short(err)}",
                            503) from err  # fmt: skip
    except ClickHouseError as err:
        rule = LIMIT_RULES.get(err.code or 0, "sql.engine")
        M.SQL_QUERIES.labels("refused", rule).inc()
        raise QueryRejected(rule, f"{rule}: {_short(err)}") from err
    M.SQL_SECONDS.observe(time.monotonic() - started)
    limit = None if result.truncated_by is None else f"sql.limit.result_{result.truncated_by}"
    M.SQL_QUERIES.labels("truncated" if limit else "ok", limit or "").inc()
    return QueryResult(result.columns, result.types, result.rows, limit is not None, limit)


def _short(err: BaseException) -> str:
    # Old servers put the reason on the line after "Code: N." and a stack trace after it.
    text = " ".join(str(err).split("Stack trace", 1)[0].split()) or type(err).__name__
    return text[:500]


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


# -- HTTP ----------------------------------------------------------------------------------
# Who is asking: the token of an ``Authorization: Bearer`` header → a principal name, or
# None. Researcher tokens today; the operators' sign-in plugs in as another authenticator.
Authenticator = Callable[[str], "str | None"]

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def allowed_hosts(port: int, extra: Iterable[str] = ()) -> frozenset[str]:
    """``Host`` values this server answers to: loopback names and ``extra`` host names, with ``port``."""
    names = [*LOOPBACK_HOSTS, *extra]
    return frozenset(f"{h}:{port}".lower() for h in names if h and h not in ("0.0.0.0", "::"))


def add_sql_routes(
    app: Any,
    runner: ReadonlyRunner,
    database: str,
    authenticators: list[Authenticator],
    hosts: frozenset[str],
    *,
    wait_s: float = 5.0,
) -> None:
    """``POST /api/sql``: see the module docstring. ``hosts``: accepted ``Host`` values (:func:`allowed_hosts`)."""
    from aiohttp import web

    # One research query at a time, on a thread of its own (not the loop's default pool).
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="research-sql")
    slot = asyncio.Semaphore(1)

    def refuse(status: int, rule: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
        if status != 499:
            M.SQL_QUERIES.labels("refused", rule).inc()
        return web.json_response({"error": message, "rule": rule}, status=status, headers=headers)

    def who(request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        for authenticate in authenticators:
            name = authenticate(token.strip())
            if name:
                return name
        return None

    async def run(request: web.Request) -> web.StreamResponse:
        host = request.headers.get("Host", "").lower()
        if host not in hosts:
            return refuse(403, "sql.host", f"sql.host: Host {host!r} is not this server's")
        origin = request.headers.get("Origin")
        if origin is not None and origin.lower() not in {f"{s}://{host}" for s in ("http", "https")}:
            return refuse(403, "sql.origin", f"sql.origin: cross-origin requests are refused ({origin!r})")
        if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
            return refuse(403, "sql.origin", "sql.origin: cross-site requests are refused")
        principal = who(request)
        if principal is None:
            return refuse(401, "sql.auth", "sql.auth: send Authorization: Bearer <researcher token>",
                          {"WWW-Authenticate": 'Bearer realm="learnpulse research SQL"'})  # fmt: skip
        if request.content_type != "application/json":
            return refuse(415, "sql.content_type", "sql.content_type: send the query as application/json {\"sql\": \"…\"}")
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return refuse(413, "sql.body_size", f"sql.body_size: at most {MAX_BODY_BYTES} bytes")
        try:
            raw = await request.content.read(MAX_BODY_BYTES + 1)
            if len(raw) > MAX_BODY_BYTES:
                return refuse(413, "sql.body_size", f"sql.body_size: at most {MAX_BODY_BYTES} bytes")
            import orjson

            doc = orjson.loads(raw)
        except ValueError:
            return refuse(400, "sql.body", "sql.body: the body is not JSON")
        if not isinstance(doc, dict) or not isinstance(doc.get("sql"), str):
            return refuse(400, "sql.body", 'sql.body: send {"sql": "<one SELECT>"}')
        try:
            await asyncio.wait_for(slot.acquire(), wait_s)
        except TimeoutError:
            return refuse(429, "sql.busy", "sql.busy: another research query is running; retry later",
                          {"Retry-After": str(max(1, int(runner.limits.max_execution_s)))})  # fmt: skip
        cancel = threading.Event()
        try:
            loop = asyncio.get_running_loop()
            future = loop.run_in_executor(
                pool, lambda: research_query(runner, database, doc["sql"], cancel=cancel)
            )
            while True:
                done, _ = await asyncio.wait({future}, timeout=0.25)
                if done:
                    break
                transport = request.transport
                if transport is None or transport.is_closing():
                    cancel.set()  # the client went away: stop the query
            result = future.result()
        except asyncio.CancelledError:
            cancel.set()
            raise
        except QueryRejected as err:
            if err.status == 499:
                return refuse(499, err.rule, str(err))
            return refuse(err.status, err.rule, str(err))
        except Exception as err:  # noqa: BLE001 - never a 500 for a research query
            log.exception("research query failed unexpectedly")
            return refuse(503, "sql.unavailable", f"sql.unavailable: {_short(err)}")
        finally:
            slot.release()
        log.info("research query by %s: %d rows%s", principal, len(result.rows),
                 f" (cut by {result.limit})" if result.limit else "")  # fmt: skip
        return web.json_response(result.as_json())

    async def close_pool(_app: Any) -> None:
        pool.shutdown(wait=False, cancel_futures=True)

    app.router.add_post("/api/sql", run)
    app.on_cleanup.append(close_pool)
