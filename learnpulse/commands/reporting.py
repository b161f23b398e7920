"""Reporting commands: read-only SQL against the pipeline's ClickHouse."""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

import click
import orjson

from ..errors import UserError
from ..settings import Settings


def _via_owner(settings: Settings, sql: str, token: str | None) -> dict | None:
    """Ask the process that owns embedded chDB; None when no such process answers."""
    from ..researchers import read_owner_token

    token = token or read_owner_token(settings.home)
    if token is None:
        return None
    url = f"http://127.0.0.1:{settings.web_port}/api/sql"
    req = urllib.request.Request(
        url, data=orjson.dumps({"sql": sql}), method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=settings.research.max_execution_s + 60) as resp:
            return orjson.loads(resp.read())
    except urllib.error.HTTPError as err:
        try:
            body = orjson.loads(err.read() or b"{}")
        except orjson.JSONDecodeError:
            body = {}
        if err.code == 401 and not body.get("rule", "").startswith("sql."):
            return None
        raise UserError(body.get("error", f"HTTP {err.code}")) from err
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def _direct(settings: Settings, sql: str) -> dict:
    from reporting.sql import QueryRejected, research_query

    from ..pipeline import open_clickhouse
    from ..web import research_runner

    ch = open_clickhouse(settings, migrate_schema=False)
    runner = research_runner(settings, ch)
    try:
        result = research_query(runner, ch.database, sql)
    except QueryRejected as err:
        raise UserError(str(err)) from err
    finally:
        runner.close()
        ch.close()
    return {"columns": result.columns, "types": result.types, "rows": result.rows, "truncated": result.truncated,
            "limit": result.limit}  # fmt: skip


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
        click.echo(f"(first {len(rows)} rows shown: {result.get('limit') or 'limit reached'})", err=True)


def register(main: click.Group) -> None:
    """Add this area's subcommands to ``main``."""

    @main.command()
    @click.argument("query", required=False)
    @click.option("--file", "-f", type=click.File("r"), help="Read the query from a file ('-' for stdin).")
    @click.option("--format", "fmt", type=click.Choice(["table", "tsv", "json"]), default="table", show_default=True)
    @click.option("--token", envvar="LEARNPULSE_RESEARCH_TOKEN", help="Researcher token (default: the local owner's).")
    @click.pass_obj
    def sql(settings: Settings, query: str | None, file, fmt: str, token: str | None) -> None:
        """Run one read-only SELECT on the research tables; `{db}` names the pipeline's database.

        \b
        Example: learnpulse sql "SELECT school, count() FROM {db}.statements FINAL GROUP BY school"
        With embedded ClickHouse the query goes through the running demo/serve process (which
        owns chDB); with no such process, or with a ClickHouse server, it connects itself.
        Checked and limited as POST /api/sql is (reporting/README.md).
        """
        text = file.read() if file else query
        if not text:
            raise UserError("give a query as an argument or with --file")
        result = None
        if settings.clickhouse_url.startswith("chdb:"):
            result = _via_owner(settings, text, token)
        if result is None:
            result = _direct(settings, text)
        _print(result, fmt)
        sys.stdout.flush()

    @main.group()
    def researchers() -> None:
        """Researcher tokens for research SQL (POST /api/sql; stored as SHA-256 only)."""

    @researchers.command("add")
    @click.argument("name")
    @click.pass_obj
    def researchers_add(settings: Settings, name: str) -> None:
        """Create NAME's token (replacing an older one) and print it once."""
        from ..researchers import add_researcher, researchers_path

        token = add_researcher(settings.research.tokens_file or researchers_path(settings.home), name)
        click.echo(f"researcher: {name}")
        click.echo(f"token:      {token}")
        click.echo("(shown once; send it as `Authorization: Bearer <token>` to /api/sql)", err=True)

    @researchers.command("list")
    @click.pass_obj
    def researchers_list(settings: Settings) -> None:
        """Researchers with a token (names and creation times; tokens are not stored)."""
        from ..researchers import list_researchers, researchers_path

        for r in list_researchers(settings.research.tokens_file or researchers_path(settings.home)):
            click.echo(f"{r.name}\t{r.created}")

    @researchers.command("remove")
    @click.argument("name")
    @click.pass_obj
    def researchers_remove(settings: Settings, name: str) -> None:
        """Revoke NAME's token (the serving process notices within seconds)."""
        from ..researchers import remove_researcher, researchers_path

        if not remove_researcher(settings.research.tokens_file or researchers_path(settings.home), name):
            raise UserError(f"no researcher {name!r}")
        click.echo(f"removed {name}")
