"""LRS gateway commands: serve the Statements API; manage per-school credentials.

:func:`build_gateway_app` is the one place that wires the gateway (producers) to the
statement store and the sink progress (reporting): a process that owns chDB can mount
the gateway beside its sinks by calling it (``learnpulse gateway`` does; ``learnpulse
serve`` can start it with ``learnpulse.web.start_web_thread``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import socket
from datetime import UTC, datetime
from pathlib import Path

import click

from ..collector import GATEWAY_YOUNG_OBJECTS, collect_young_objects_rarely
from ..errors import UserError
from ..settings import Settings


def credentials_path(settings: Settings) -> Path:
    return settings.gateway.credentials_file or settings.home / "credentials.json"


def cursor_key(settings: Settings) -> bytes:
    """The key signing ``more`` tokens: configured, else ``<home>/gateway-cursor.key`` (made once, 0600)."""
    if settings.gateway.cursor_key is not None:
        key = settings.gateway.cursor_key.get_secret_value().encode()
        if len(key) < 16:
            raise UserError("LEARNPULSE_GATEWAY__CURSOR_KEY must be at least 16 characters")
        return key
    path = settings.home / "gateway-cursor.key"
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    except ValueError as err:
        raise UserError(f"{path} is not a hex key; delete it to make a new one") from err
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key.hex() + "\n")
    try:
        # link() fails if the file exists: two gateways starting together on one home
        # agree on the first complete key written.
        os.link(tmp, path)
    except FileExistsError:
        return bytes.fromhex(path.read_text().strip())
    finally:
        tmp.unlink()
    click.echo(f"note: made a new key for paging tokens in {path}", err=True)
    return key


def _epoch_ms(value: object) -> int | None:
    """Sink progress as epoch ms, whatever form ``reporting.progress`` gives it in."""
    if value is None:
        return None
    if isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=UTC)
        return int(dt.timestamp() * 1000)
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, str):
        from schemas.xapi.timefmt import parse_ms

        return parse_ms(value)
    raise TypeError(f"unexpected consistent-through value {value!r}")


def build_gateway_app(settings: Settings, ch=None, consistent_through=None, documents=None):
    """The gateway aiohttp app for these settings; ``ch`` (a ClickHouse engine) enables reads.

    Documents (State, Activity/Agent Profile) live in ``documents`` or else the store at
    ``settings.lrs_store_url`` (SQLite in LEARNPULSE_HOME by default), closed with the app.
    CORS origins come from the credentials file (per school, default none).

    ``consistent_through(ch)`` gives the sink's committed progress (default
    ``reporting.progress.consistent_through``) as a datetime, epoch ms or ISO string.
    """
    from producers.gateway.app import GatewayConfig, make_gateway_app
    from producers.gateway.documents import DocumentsConfig
    from producers.lrsstore.documents import SqlDocumentStore
    from producers.lrsstore.attachments import SqlAttachmentStore
    from producers.gateway.authguard import AuthLimits
    from producers.gateway.sender import TransactionalParameters, TransactionalSender
    from schemas.topics import Topic

    from ..credentials import CredentialStore

    g = settings.gateway
    k = settings.kafka
    store = consistent = None
    if ch is not None:
        from reporting.lrs import LrsStore

        if consistent_through is None:
            from reporting.progress import consistent_through

        store = LrsStore(ch)

        def consistent() -> int | None:
            return _epoch_ms(consistent_through(ch))

    txn_id = g.transactional_id or f"{k.topic_prefix}learnpulse-gateway-{socket.gethostname()}-{g.port}"
    sender = TransactionalSender(
        TransactionalParameters(
            bootstrap=k.bootstrap_servers,
            topic=Topic.STATEMENTS.physical(k.topic_prefix),
            transactional_id=txn_id,
            timeout_s=g.kafka_timeout_s,
            # The producer's record limit is the topic's: one limit from HTTP to the broker.
            max_request_bytes=int(Topic.STATEMENTS.spec.configs["max.message.bytes"]),
            client=g.kafka_client,
            statistics_interval_ms=g.kafka_statistics_interval_ms,
            linger_s=g.kafka_linger_ms / 1000,
        ),
        lanes=g.kafka_lanes,
    )
    config = GatewayConfig(
        prefix=g.prefix,
        max_body_bytes=g.max_body_bytes,
        max_batch=g.max_batch,
        max_statement_bytes=g.max_statement_bytes,
        max_limit=g.max_limit,
        default_version=g.default_version,
        clock_margin_ms=g.clock_margin_ms,
        prune_interval_s=g.index_prune_interval_s,
        cursor_key=cursor_key(settings),
        header_timeout_s=g.header_timeout_s,
        body_grace_s=g.body_grace_s,
        body_min_rate=g.body_min_rate,
        auth_limits=AuthLimits(
            requests_per_s_per_address=g.requests_per_s_per_address,
            requests_per_s_per_key=g.requests_per_s_per_key,
            attempts_per_s=g.auth_attempts_per_s,
            lockout_failures=g.lockout_failures,
            lockout_s=g.lockout_s,
        ),
        trusted_proxies=frozenset(g.trusted_proxies),
    )
    from ..local_secrets import pseudonym_key

    credentials = CredentialStore(credentials_path(settings))
    owned = documents is None
    if owned:
        documents = SqlDocumentStore(settings.lrs_store_url)
    index, reader = open_statement_index(settings)
    attachments = SqlAttachmentStore(reader.db)
    app = make_gateway_app(
        config,
        authenticator=credentials,
        sender=sender,
        store=store,
        consistent_through=consistent,
        pseudonym_secret=pseudonym_key(settings),
        documents=documents,
        documents_config=DocumentsConfig(max_document_bytes=g.max_document_bytes),
        activities=store.activity if store is not None else None,
        origins=credentials,
        index=index,
        index_reader=reader,
        attachments=attachments,
        quarantine=_quarantine_writer(settings, "gateway"),
    )
    if owned:

        async def close_documents(_app) -> None:
            documents.close()

        app.on_cleanup.append(close_documents)

    async def close_index(_app) -> None:
        index.close()
        reader.close()

    app.on_cleanup.append(close_index)
    return app


def open_statement_index(settings: Settings):
    """The accepted-id index in the LRS store (``lrs_store.url``): a writer and a reader connection."""
    from producers.lrsstore.statement_index import SqlStatementIndex

    try:
        return SqlStatementIndex.open(settings.lrs_store_url), SqlStatementIndex.open(settings.lrs_store_url)
    except Exception as err:  # noqa: BLE001 - unreachable or misconfigured: one line that says which
        raise UserError(f"the LRS store at {_redacted(settings.lrs_store_url)} is not usable: {err}") from err


def _redacted(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url


def event_loop_factory(name: str):
    """The loop constructor for ``gateway.event_loop`` (None: asyncio's default).

    uvloop is a dependency; an environment installed before it was (``make setup`` not run
    again) serves on the standard loop, with a warning, rather than not at all.
    """
    if name == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        logging.getLogger("learnpulse.gateway").warning(
            "gateway.event_loop is uvloop but uvloop is not installed (pip install -e . again): "
            "serving on the standard asyncio loop"
        )
        return None
    return uvloop.new_event_loop


async def _serve(app, host: str, port: int, stop: asyncio.Event) -> None:
    from aiohttp import web

    from producers.gateway.app import GATEWAY_KEY, make_runner

    runner = make_runner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as err:
        await runner.cleanup()
        raise UserError(f"gateway port {port} on {host} is taken ({err}); set LEARNPULSE_GATEWAY__PORT") from err
    collect_young_objects_rarely(GATEWAY_YOUNG_OBJECTS)
    click.echo(f"LRS gateway on http://{host}:{port}{app[GATEWAY_KEY].config.prefix}/statements ; Ctrl-C stops")
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def register(main: click.Group) -> None:
    """Add this area's subcommands to ``main``."""

    @main.command()
    @click.option("--port", type=int, default=None, help="Listen port (default: settings gateway.port).")
    @click.option(
        "--sinks/--no-sinks",
        default=None,
        help="Also run the sinks in this process (default: yes with embedded chDB, which one process must own).",
    )
    @click.pass_obj
    def gateway(settings: Settings, port: int | None, sinks: bool | None) -> None:
        """Serve the xAPI Statements API (POST/PUT/GET /xapi/statements, /xapi/about, /metrics)."""
        from ..pipeline import open_clickhouse, start_sinks

        if port is not None:
            settings = settings.model_copy(update={"gateway": settings.gateway.model_copy(update={"port": port})})
        if not credentials_path(settings).exists():
            click.echo(
                f"note: no credentials yet ({credentials_path(settings)}); every request will get 401 until "
                "`learnpulse credentials add --school NAME`",
                err=True,
            )
        ch = open_clickhouse(settings)
        embedded = settings.clickhouse_url.startswith("chdb:")
        sink_threads = start_sinks(settings, ch) if (sinks if sinks is not None else embedded) else None
        app = build_gateway_app(settings, ch)

        async def main_loop() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            if sink_threads is not None:
                # A failed sink stops the process (non-zero exit) rather than serve stale reads.
                asyncio.create_task(_stop_when(sink_threads.stop, stop))
            try:
                await _serve(app, settings.bind_host, settings.gateway.port, stop)
            finally:
                if sink_threads is not None:
                    sink_threads.stop.set()  # also releases the _stop_when thread

        try:
            with asyncio.Runner(loop_factory=event_loop_factory(settings.gateway.event_loop)) as runner:
                runner.run(main_loop())
        finally:
            if sink_threads is not None:
                sink_threads.join()
            ch.close()
        if sink_threads is not None and sink_threads.errors:
            raise UserError(f"sink failed: {sink_threads.errors[0]}")

    @main.group()
    def credentials() -> None:
        """LRS credentials (HTTP Basic key/secret per school; secrets stored hashed)."""

    @credentials.command("add")
    @click.option("--school", required=True, help="School the credential writes and reads for.")
    @click.option("--allow-origin", "origins", multiple=True, metavar="URL",
                  help="Browser origin (http(s)://host[:port]) whose pages may call the LRS (CORS); repeatable.")
    @_policy_options
    @click.pass_obj
    def credentials_add(
        settings: Settings, school: str, origins: tuple[str, ...], policy: str | None, tolerate: tuple[str, ...],
        preset: tuple[str, ...], xapi_version: str | None,
    ) -> None:  # fmt: skip
        """Create a key/secret for SCHOOL and print it (the secret is shown only this once)."""
        from ..credentials import add_credential

        chosen = _policy(policy, tolerate, preset)
        key, secret = add_credential(credentials_path(settings), school, origins, policy=chosen,
                                     xapi_version=xapi_version)  # fmt: skip
        click.echo(f"school: {school}\nkey:    {key}\nsecret: {secret}\npolicy: {chosen.describe()}")
        if origins:
            click.echo(f"allowed origins: {', '.join(origins)}")
        click.echo("Use them as HTTP Basic username/password. The secret is not stored and cannot be shown again.")

    @credentials.command("update")
    @click.argument("key")
    @click.option("--allow-origin", "add", multiple=True, metavar="URL", help="Allow this browser origin (CORS).")
    @click.option("--remove-origin", "remove", multiple=True, metavar="URL", help="Stop allowing this origin.")
    @click.option("--clear-origins", is_flag=True, help="Allow no browser origin (the default).")
    @_policy_options
    @click.pass_obj
    def credentials_update(
        settings: Settings, key: str, add: tuple[str, ...], remove: tuple[str, ...], clear_origins: bool,
        policy: str | None, tolerate: tuple[str, ...], preset: tuple[str, ...], xapi_version: str | None,
    ) -> None:  # fmt: skip
        """Change KEY's browser origins (CORS), ingestion policy or xAPI version (running gateways follow
        within seconds)."""
        from ..credentials import update_credential, update_origins

        changes: dict = {}
        if policy is not None or tolerate or preset:
            changes["policy"] = _policy(policy, tolerate, preset)
        if xapi_version is not None:
            changes["xapi_version"] = None if xapi_version == "default" else xapi_version
        origins_asked = bool(add or remove or clear_origins)
        if not changes and not origins_asked:
            raise UserError("nothing to change: give --allow-origin/--remove-origin/--clear-origins, "
                            "--policy/--tolerate/--preset and/or --xapi-version")  # fmt: skip
        if origins_asked:
            origins = update_origins(credentials_path(settings), key, add, remove, clear_origins)
            click.echo(f"{key}: allowed origins: {', '.join(origins) or '(none)'}")
        if changes:
            c = update_credential(credentials_path(settings), key, **changes)
            click.echo(f"{c.key}\t{c.school}\tpolicy: {c.policy.describe()}\txAPI: {c.xapi_version or 'default'}")

    @credentials.command("list")
    @click.pass_obj
    def credentials_list(settings: Settings) -> None:
        """List keys, their schools, policies and xAPI versions (never secrets)."""
        from ..credentials import list_credentials

        for c in list_credentials(credentials_path(settings)):
            click.echo(f"{c.key}\t{c.school}\t{c.created}\t{','.join(c.allow_origins) or '-'}\t"
                       f"policy: {c.policy.describe()}\txAPI: {c.xapi_version or 'default'}")  # fmt: skip

    @credentials.command("remove")
    @click.argument("key")
    @click.pass_obj
    def credentials_remove(settings: Settings, key: str) -> None:
        """Revoke KEY (running gateways stop accepting it within seconds)."""
        from ..credentials import remove_credential

        if not remove_credential(credentials_path(settings), key):
            raise UserError(f"no credential {key}")
        click.echo(f"removed {key}")


def _quarantine_writer(settings: Settings, stage: str):
    """The writer of refused statements to ``xapi.quarantine`` for ``stage``."""
    from producers.quarantine import kafka_quarantine_writer
    from schemas.topics import Topic

    k = settings.kafka
    writer, _producer = kafka_quarantine_writer(k.bootstrap_servers, Topic.QUARANTINE.physical(k.topic_prefix), stage)
    return writer


def _policy_options(command):
    """--policy, --tolerate, --preset and --xapi-version of ``credentials add/update``."""
    from schemas.policy import MODES, PRESETS

    command = click.option(
        "--xapi-version", default=None,
        help="xAPI version this credential's clients speak (1.0.3 or 2.0.0; 'default' on update to unset): "
        "answered on requests without a usable version header.",
    )(command)  # fmt: skip
    command = click.option(
        "--preset", multiple=True, type=click.Choice(sorted(PRESETS)),
        help="Tolerate the rules a known producer needs (openedx: Open edX event-routing-backends); implies tolerant.",
    )(command)  # fmt: skip
    command = click.option(
        "--tolerate", multiple=True, metavar="RULE",
        help="A rule id (as the validator reports it) to tolerate; repeat for several; implies tolerant.",
    )(command)  # fmt: skip
    return click.option(
        "--policy", type=click.Choice(MODES), default=None,
        help="strict (default): refuse every violation; tolerant: accept statements whose only violations are "
        "tolerated rules, stored unchanged with the rule ids beside them.",
    )(command)  # fmt: skip


def _policy(mode: str | None, tolerate: tuple[str, ...], preset: tuple[str, ...]):
    """The policy the options ask for; a clear UserError for one that cannot be."""
    from schemas.policy import STRICT, TOLERANT, PolicyError, policy_of

    if mode is None:
        mode = TOLERANT if (tolerate or preset) else STRICT
    if mode == STRICT and (tolerate or preset):
        raise UserError("--policy strict tolerates nothing: drop --tolerate/--preset or use --policy tolerant")
    try:
        return policy_of(mode, tolerate, preset)
    except PolicyError as err:
        raise UserError(str(err)) from err


async def _stop_when(event, stop: asyncio.Event) -> None:
    await asyncio.to_thread(event.wait)
    stop.set()
