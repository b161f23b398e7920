"""Read-only SQL for researchers and operators (``learnpulse sql``, ``POST /api/sql``).

In embedded mode only the process that owns chDB can read it, so ad-hoc queries go through
that process. A query is accepted only if it is one SELECT: ClickHouse itself must be able
to ``DESCRIBE`` it as a subquery (which also gives the column names), and it runs with
``readonly=1`` so nothing can write or change settings even if the check were fooled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.clickhouse.engine import ClickHouse

MAX_ROWS = 10_000


class QueryRejected(Exception):
    """The text is not a single read-only SELECT; the message says why."""


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    types: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool


def readonly_query(ch: ClickHouse, sql: str, max_rows: int = MAX_ROWS) -> QueryResult:
    """Run one SELECT read-only; ``{db}`` names the pipeline's database.

    Raises :class:`QueryRejected` for anything else (several statements, INSERT, DDL, a
    FORMAT or SETTINGS clause of its own) with ClickHouse's reason.
    """
    text = sql.strip().rstrip(";").strip()
    if not text:
        raise QueryRejected("empty query")
    # The newline keeps a trailing `-- comment` in the user's text from swallowing ours.
    try:
        # (DESCRIBE only analyses; it takes no SETTINGS on old servers.)
        described = ch.query(f"DESCRIBE ({text}\n)")
    except Exception as err:  # ClickHouse's own parse/permission error is the reason
        raise QueryRejected(f"not a single read-only SELECT: {_short(err)}") from err
    columns = [str(r[0]) for r in described]
    types = [str(r[1]) for r in described]
    try:
        # Run as written (a wrapping SELECT could reorder rows); stop reading early instead.
        rows = ch.query(
            f"{text}\nSETTINGS max_result_rows = {int(max_rows) + 1}, result_overflow_mode = 'break', readonly = 1"
        )
    except Exception as err:
        raise QueryRejected(_short(err)) from err
    return QueryResult(columns, types, rows[:max_rows], len(rows) > max_rows)


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[:500]


def add_sql_routes(app: Any, ch: ClickHouse) -> None:
    """``POST /api/sql`` (body: the query text) → JSON ``{columns, types, rows, truncated}``.

    Answers loopback clients only: it is how ``learnpulse sql`` reaches an embedded chDB
    owned by this process, not a public query service.
    """
    import asyncio

    from aiohttp import web

    async def run(request: web.Request) -> web.Response:
        if request.remote not in ("127.0.0.1", "::1"):
            return web.json_response({"error": "only loopback clients may run SQL here"}, status=403)
        text = await request.text()
        try:
            result = await asyncio.to_thread(readonly_query, ch, text)
        except QueryRejected as err:
            return web.json_response({"error": str(err)}, status=400)
        body = {
            "columns": result.columns,
            "types": result.types,
            "rows": [[_jsonable(v) for v in row] for row in result.rows],
            "truncated": result.truncated,
        }
        return web.json_response(body)

    app.router.add_post("/api/sql", run)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)
