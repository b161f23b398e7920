"""Sink and schema commands: run the ClickHouse writers, migrate, grant, erase a learner."""

from __future__ import annotations

import hashlib
import os
import signal
import threading

import click

from ..collector import collect_young_objects_rarely
from ..errors import UserError
from ..settings import Settings

# Metrics port offset of `learnpulse sink` (serve +0, worker +1, simulate +2).
SINK_METRICS_OFFSET = 3


def register(main: click.Group) -> None:
    """Add this area's subcommands to ``main``."""

    @main.group()
    def db() -> None:
        """ClickHouse schema, access and data lifecycle."""

    @db.command("migrate")
    @click.option("--wait-for-replicas", type=click.FloatRange(0), default=0, metavar="SECONDS",
                  help="On a cluster, wait this long for every replica to answer before ON CLUSTER DDL "
                       "[default: 0, refuse at once naming the replicas that do not answer].")  # fmt: skip
    @click.pass_obj
    def db_migrate(settings: Settings, wait_for_replicas: float) -> None:
        """Apply pending migrations (safe to run twice or concurrently)."""
        from schemas.clickhouse.migrate import MigrationDrift, ReplicasUnreachable, migrate

        from ..pipeline import open_clickhouse

        ch = open_clickhouse(settings, migrate_schema=False, across_shards=False)
        try:
            applied = migrate(ch, click.echo, cluster=settings.clickhouse.cluster_name,
                              wait_for_replicas=wait_for_replicas)  # fmt: skip
        except (MigrationDrift, ReplicasUnreachable) as err:
            raise UserError(str(err)) from err
        finally:
            ch.close()
        click.echo(f"{len(applied)} migrations applied; schema up to date")

    @db.command("status")
    @click.pass_obj
    def db_status(settings: Settings) -> None:
        """List migrations and whether each is applied."""
        from schemas.clickhouse.migrate import ReplicasUnreachable, status

        from ..pipeline import open_clickhouse

        ch = open_clickhouse(settings, migrate_schema=False, across_shards=False)
        try:
            try:
                known = status(ch, settings.clickhouse.cluster_name)
            except ReplicasUnreachable as err:  # the ledger is to be created ON CLUSTER
                raise UserError(str(err)) from err
            for s in known:
                state = "applied" if s.applied else "pending"
                if s.applied and s.recorded_checksum != s.checksum:
                    state = "applied from different code (drift)"
                click.echo(f"{s.id:<24} {state}")
        finally:
            ch.close()

    @db.command("ddl")
    @click.option("--cluster", default=None,
                  help="The cluster form, ON CLUSTER this name [default: LEARNPULSE_CLICKHOUSE__CLUSTER__NAME; unset: one node].")
    @click.option("--database", default="learnpulse", show_default=True)
    @click.option("--server-version", default="26.9", show_default=True,
                  help="Render for this ClickHouse release (before 19: the old forms).")
    @click.pass_obj
    def db_ddl(settings: Settings, cluster: str | None, database: str, server_version: str) -> None:
        """Print the DDL `db migrate` runs on an empty database, without connecting (deploy/CLUSTER.md)."""
        from schemas.clickhouse.migrate import schema_sql, sql_script

        try:
            version = tuple(int(x) for x in server_version.split("."))
            statements = schema_sql(version, database, cluster or settings.clickhouse.cluster_name)
        except ValueError as err:
            raise UserError(f"db ddl: {err}") from err
        click.echo(sql_script(statements), nl=False)

    @db.command("access")
    @click.option("--apply", is_flag=True, help="Run the statements (needs a user with access management).")
    @click.option(
        "--old-server-xml",
        is_flag=True,
        help="Print the users.d file for an 18.16 server instead (passwords from LEARNPULSE_WRITER_PASSWORD and "
        "LEARNPULSE_OPERATOR_PASSWORD).",
    )
    @click.pass_obj
    def db_access(settings: Settings, apply: bool, old_server_xml: bool) -> None:
        """Print (or apply) roles, grants and row policies for the pipeline's database."""
        from schemas.clickhouse.access import access_sql, users_xml_1816
        from sinks.engines import engine_from_url
        from sinks.lrs_rows import LRS_COLUMNS

        database = engine_database(settings)
        if old_server_xml:
            click.echo(
                users_xml_1816(database, _digest("LEARNPULSE_WRITER_PASSWORD"), _digest("LEARNPULSE_OPERATOR_PASSWORD"))
            )
            return
        statements = access_sql(database, tuple(LRS_COLUMNS), across_shards=settings.clickhouse.sharded)
        if not apply:
            click.echo(";\n".join(statements) + ";")
            return
        ch = _access_engine(settings, engine_from_url)
        try:
            for sql in statements:
                ch.execute(sql)
        finally:
            ch.close()
        click.echo(f"{len(statements)} access statements applied")

    @db.command("add-school-user")
    @click.option("--school", required=True, help="School id, as in the statements' `school` column.")
    @click.option("--user", "user", required=True, help="ClickHouse user name to create.")
    @click.option(
        "--password-env", default="LEARNPULSE_SCHOOL_PASSWORD", show_default=True,
        help="Environment variable holding the new user's password.",
    )  # fmt: skip
    @click.pass_obj
    def db_add_school_user(settings: Settings, school: str, user: str, password_env: str) -> None:
        """Create a school's ClickHouse user: it reads only its school's rows (row policies)."""
        from schemas.clickhouse.access import school_user_sql
        from sinks.engines import engine_from_url

        try:
            statements = school_user_sql(engine_database(settings), user, school, _digest(password_env))
        except ValueError as err:
            raise UserError(str(err)) from err
        ch = _access_engine(settings, engine_from_url)
        try:
            for sql in statements:
                ch.execute(sql)
        finally:
            ch.close()
        click.echo(f"user {user} created: reads {school}'s rows of the analytics tables")

    @main.command()
    @click.option(
        "--table", "tables", multiple=True,
        help="Sink to run (statements, engagement, mastery, cohort_health, alerts, quarantine); repeatable; default all.",
    )  # fmt: skip
    @click.option(
        "--group", default=None, help="Consumer group (default per sink); a new group replays from the start."
    )
    @click.option(
        "--instance-id", default=None,
        help="Static group membership id, unique per process: a restart takes its partitions back at once.",
    )  # fmt: skip
    @click.pass_obj
    def sink(settings: Settings, tables: tuple[str, ...], group: str | None, instance_id: str | None) -> None:
        """Run only the Kafka -> ClickHouse sinks, until SIGTERM/SIGINT (which flush and commit)."""
        from sinks.gcpause import set_aside_after_pauses
        from sinks.specs import SPECS

        from ..pipeline import open_clickhouse, serve_metrics, start_sinks

        unknown = [t for t in tables if t not in SPECS]
        if unknown:
            raise UserError(f"unknown sink {', '.join(unknown)}; choose from {', '.join(SPECS)}")
        serve_metrics(
            int(os.environ.get("LEARNPULSE_METRICS_PORT", settings.metrics_port_base + SINK_METRICS_OFFSET)),
            settings.bind_host,
        )
        ch = open_clickhouse(settings)
        stopping = threading.Event()

        def on_signal(_signum, _frame) -> None:
            stopping.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        threads = start_sinks(settings, ch, list(tables) or None, group, instance_id)
        collect_young_objects_rarely()
        set_aside_after_pauses()  # a batch's rows are not walked by collections until written
        click.echo(f"sinks running: {', '.join(tables) or 'all'}", err=True)
        try:
            while not stopping.wait(0.5) and not threads.stop.is_set():
                pass
        finally:
            threads.join(timeout=60)
            ch.close()
        if threads.errors:
            raise UserError(f"sink failed: {threads.errors[0]}")

    @db.command("fill-names")
    @click.pass_obj
    def db_fill_names(settings: Settings) -> None:
        """Fill the staff directory of names from statements stored before it existed (idempotent).

        With embedded chDB, stop `learnpulse serve` first (one process owns the database).
        """
        from sinks.names_fill import fill_names

        from ..pipeline import open_clickhouse

        ch = open_clickhouse(settings)
        try:
            n = fill_names(ch, log_line=lambda m: click.echo(m, err=True))
        finally:
            ch.close()
        click.echo(f"learners named: {n}")

    @main.command("forget-learner")
    @click.argument("identifier")
    @click.option("--reason", default="erasure request", show_default=True, help="Recorded with the erasure.")
    @click.option("--settle", type=float, default=None, help="Seconds to let running sinks see the erasure first.")
    @click.pass_obj
    def forget_learner(settings: Settings, identifier: str, reason: str, settle: float | None) -> None:
        """Erase one learner (GDPR) from raw and derived tables; prints what was removed.

        IDENTIFIER: a pseudonym, mailto:..., an mbox_sha1sum, an openid URL,
        account:<homePage>|<name>, or a JSON agent.
        """
        from sinks.forget import forget_learners, pseudonyms_for

        from ..local_secrets import pseudonym_key

        from ..pipeline import open_clickhouse

        try:
            learners = pseudonyms_for(identifier, pseudonym_key(settings))
        except ValueError as err:
            raise UserError(str(err)) from err
        documents = forget_documents(settings, learners)
        indexed = forget_statement_index(settings, learners)
        ch = open_clickhouse(settings)
        try:
            kw = {} if settle is None else {"settle_s": settle}
            report = forget_learners(ch, learners, reason=reason, log_line=lambda m: click.echo(m, err=True), **kw)
        finally:
            ch.close()
        click.echo(f"learner pseudonyms: {', '.join(report.learners)}")
        click.echo(f"statements erased: {report.statements}")
        click.echo(f"LRS documents erased (State, Agent Profile): {documents}")
        indexed += forget_index_statements(settings, report.statement_ids)
        click.echo(f"LRS statement index entries erased: {indexed}")
        click.echo(f"LRS store attachment contents erased: {forget_store_attachments(settings, report.unreferenced)}")
        for table, n in sorted(report.removed.items()):
            click.echo(f"  {table}: {n} rows deleted")
        for table, n in sorted(report.scrubbed.items()):
            click.echo(f"  {table}: learner removed from {n} rows")
        click.echo(f"rollup groups rebuilt: {report.rollup_groups}")
        click.echo(f"rows left about this learner: {report.remaining}")
        if report.remaining:
            raise UserError("some rows were written while erasing; run the command again")

    @main.command()
    @click.option("--no-sinks", is_flag=True,
                  help="Only the web surface: `learnpulse sink` processes write ClickHouse (a server, not chDB).")
    @click.pass_obj
    def serve(settings: Settings, no_sinks: bool) -> None:
        """Run the sinks and the web surface (live view, /metrics) against ClickHouse."""
        from sinks.gcpause import set_aside_after_pauses

        from ..pipeline import open_clickhouse, start_sinks
        from ..web import make_app, start_web_thread

        if no_sinks and settings.clickhouse_url.startswith("chdb:"):
            raise UserError("--no-sinks needs a ClickHouse server: with chDB this process is the only one "
                            "that can write it")  # fmt: skip
        ch = open_clickhouse(settings)
        sinks = None if no_sinks else start_sinks(settings, ch)
        start_web_thread(make_app(ch, settings), settings.web_port, settings.bind_host)
        collect_young_objects_rarely()
        if sinks is not None:
            # Few cycles: the web surface's requests are operators' and researchers', not browsers'.
            set_aside_after_pauses()
        click.echo(f"serving on http://{settings.bind_host}:{settings.web_port}/ ; Ctrl-C stops")
        stop = threading.Event() if sinks is None else sinks.stop
        try:
            while not stop.wait(1):
                pass
        except KeyboardInterrupt:
            pass
        if sinks is not None:
            sinks.join()
            if sinks.errors:
                raise UserError(f"sink failed: {sinks.errors[0]}")


def engine_database(settings: Settings) -> str:
    """The database name in the ClickHouse URL (without connecting)."""
    from urllib.parse import urlparse

    parsed = urlparse(settings.clickhouse_url)
    if parsed.scheme == "chdb":
        return dict(p.split("=", 1) for p in parsed.query.split("&") if "=" in p).get("database", "learnpulse")
    return (parsed.path or "/learnpulse").lstrip("/") or "learnpulse"


def _access_engine(settings: Settings, engine_from_url):
    ch = engine_from_url(settings.clickhouse_url)
    version = ch.server_version()
    if settings.clickhouse_url.startswith("chdb:"):
        ch.close()
        raise UserError("chDB (embedded) has no users: access control applies to a ClickHouse server")
    if version < (20, 5):
        ch.close()
        raise UserError(
            f"ClickHouse {'.'.join(map(str, version))} has no SQL access control; "
            "use `learnpulse db access --old-server-xml` (see deploy/clickhouse/README.md)"
        )
    return ch


def _digest(env: str) -> str:
    password = os.environ.get(env)
    if not password:
        raise UserError(f"set {env} to the password")
    return hashlib.sha256(password.encode()).hexdigest()


def forget_store_attachments(settings: Settings, unreferenced: list[tuple[str, str]]) -> int:
    """Erase from the LRS store the attachment contents no statement declares any more; how many."""
    if not unreferenced:
        return 0
    from producers.lrsstore.attachments import SqlAttachmentStore

    store = SqlAttachmentStore.open(settings.lrs_store_url)
    try:
        return store.delete(unreferenced)
    finally:
        store.close()


def forget_statement_index(settings: Settings, learners: list[str]) -> int:
    """Erase the learners' entries (ids and stored statements) from the accepted-id index; how many."""
    from producers.lrsstore.statement_index import SqlStatementIndex

    index = SqlStatementIndex.open(settings.lrs_store_url)
    try:
        return sum(index.forget_learner(None, learner) for learner in learners)
    finally:
        index.close()


def forget_index_statements(settings: Settings, statements: list[tuple[str, str]]) -> int:
    """Erase from the accepted-id index the ``(school, id)`` statements erased from ClickHouse; how many."""
    from producers.lrsstore.statement_index import SqlStatementIndex

    index = SqlStatementIndex.open(settings.lrs_store_url)
    try:
        return index.forget_statements(statements)
    finally:
        index.close()


def forget_documents(settings: Settings, learners: list[str]) -> int:
    """Erase the learners' State and Agent Profile documents in every school; how many."""
    from producers.lrsstore.documents import SqlDocumentStore

    store = SqlDocumentStore(settings.lrs_store_url, connections=1)
    try:
        return sum(store.forget_agent(None, learner) for learner in learners)
    finally:
        store.close()
