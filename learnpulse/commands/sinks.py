"""Sink and schema commands: run the ClickHouse writers, migrate the schema."""

from __future__ import annotations


import click

from ..errors import UserError
from ..settings import Settings


def register(main: click.Group) -> None:
    """Add this area's subcommands to ``main``."""

    @main.group()
    def db() -> None:
        """ClickHouse schema."""

    @db.command("migrate")
    @click.pass_obj
    def db_migrate(settings: Settings) -> None:
        """Apply pending migrations (safe to run twice or concurrently)."""
        from schemas.clickhouse.migrate import migrate

        from ..pipeline import open_clickhouse

        ch = open_clickhouse(settings, migrate_schema=False)
        applied = migrate(ch, click.echo)
        click.echo(f"{len(applied)} migrations applied; schema up to date")

    @main.command()
    @click.pass_obj
    def serve(settings: Settings) -> None:
        """Run the sinks and the web surface (live view, /metrics) against ClickHouse."""
        from ..pipeline import open_clickhouse, start_sinks
        from ..web import make_app, start_web_thread

        ch = open_clickhouse(settings)
        sinks = start_sinks(settings, ch)
        start_web_thread(make_app(ch), settings.web_port)
        click.echo(f"serving on http://127.0.0.1:{settings.web_port}/ ; Ctrl-C stops")
        try:
            while not sinks.stop.wait(1):
                pass
        except KeyboardInterrupt:
            pass
        sinks.join()
        if sinks.errors:
            raise UserError(f"sink failed: {sinks.errors[0]}")
