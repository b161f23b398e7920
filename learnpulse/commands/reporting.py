"""Reporting commands: read-only SQL against the pipeline's ClickHouse."""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

import click
import orjson

from ..errors import UserError
from ..settings import Settings


def _via_owner(settings: Settings, sql: str) -> dict | None:
    """Ask the process that owns embedded chDB; None when no such process answers."""
    url = f"http://127.0.0.1:{settings.web_port}/api/sql"
    req = urllib.request.Request(url, data=sql.encode(), method="POST", headers={"Content-Type": "text/plain"})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return orjson.loads(resp.read())
    except urllib.error.HTTPError as err:
        body = orjson.loads(err.read() or b"{}")
        raise UserError(body.get("error", f"HTTP {err.code}")) from err
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def _direct(settings: Settings, sql: str) -> dict:
    from reporting.sql import QueryRejected, readonly_query

    from ..pipeline import open_clickhouse

    ch = open_clickhouse(settings, migrate_schema=False)
    try:
        result = readonly_query(ch, sql)
    except QueryRejected as err:
        raise UserError(str(err)) from err
    finally:
        ch.close()
    return {"columns": result.columns, "types": result.types, "rows": result.rows, "truncated": result.truncated}


def _print(result: dict, fmt: str) -> None:
    columns, rows = result["columns"], result["rows"]
    if fmt == "json":
        for row in rows:
            click.echo(orjson.dumps(dict(zip(columns, row)), default=str).decode())
    elif fmt == "tsv":
        click.echo("\t".join(columns))
        for row in rows:
            click.echo("\t".join("" if v is None else str(v) for v in row))
    else:
        cells = [[str(c) for c in columns]] + [["NULL" if v is None else str(v) for v in row] for row in rows]
        widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
        for n, r in enumerate(cells):
            click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
            if n == 0:
                click.echo("  ".join("-" * w for w in widths))
    if result["truncated"]:
        click.echo(f"(first {len(rows)} rows shown)", err=True)


def register(main: click.Group) -> None:
    """Add this area's subcommands to ``main``."""

    @main.command()
    @click.argument("query", required=False)
    @click.option("--file", "-f", type=click.File("r"), help="Read the query from a file ('-' for stdin).")
    @click.option("--format", "fmt", type=click.Choice(["table", "tsv", "json"]), default="table", show_default=True)
    @click.pass_obj
    def sql(settings: Settings, query: str | None, file, fmt: str) -> None:
        """Run one read-only SELECT; `{db}` names the pipeline's database.

        \b
        Example: learnpulse sql "SELECT school, count() FROM {db}.statements FINAL GROUP BY school"
        With embedded ClickHouse the query goes through the running demo/serve process (which
        owns chDB); with no such process, or with a ClickHouse server, it connects itself.
        """
        text = file.read() if file else query
        if not text:
            raise UserError("give a query as an argument or with --file")
        result = None
        if settings.clickhouse_url.startswith("chdb:"):
            result = _via_owner(settings, text)
        if result is None:
            result = _direct(settings, text)
        _print(result, fmt)
        sys.stdout.flush()
