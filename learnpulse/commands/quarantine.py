"""``learnpulse quarantine list|show|stats|replay``: statements refused at the edge, and their re-drive.

Reads the ``quarantine`` table (reporting/quarantine.py); ``replay`` re-drives records
through validation under each credential's current policy (producers/quarantine_redrive.py)
and writes their new state back through ``xapi.quarantine``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import click

from ..errors import UserError
from ..settings import Settings


def _ms(value: str | None, default: int) -> int:
    """Epoch ms from an ISO 8601 time (``2026-12-01``, ``2026-12-01T10:00:00Z``) or epoch ms."""
    if value is None:
        return default
    if value.isdigit():
        return int(value)
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as err:
        raise UserError(f"not a time: {value!r} (ISO 8601, e.g. 2026-12-01T10:00:00Z, or epoch ms)") from err
    return int((dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp() * 1000)


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _filter(school, rule, state, since, until):
    from reporting.quarantine import Filter

    return Filter(school or "", rule or "", state or "", _ms(since, 0), _ms(until, 2**62))


def _filters(command):
    for option in reversed([
        click.option("--school", default=None, help="Only this school."),
        click.option("--rule", default=None, help="Only records with a violation of this rule id."),
        click.option("--since", default=None, help="Received at or after (ISO 8601 or epoch ms)."),
        click.option("--until", default=None, help="Received before (ISO 8601 or epoch ms)."),
    ]):  # fmt: skip
        command = option(command)
    return command


def quarantine_replay(settings: Settings, ch, f, limit: int = 10_000):
    """Re-drive the records ``f`` selects (not yet accepted); returns ``RedriveCounts``."""
    from kafka import KafkaProducer

    from producers.quarantine_redrive import redrive
    from reporting.lrs import LrsStore
    from reporting.quarantine import replayable
    from schemas.policy import STRICT_POLICY
    from schemas.topics import Topic

    from ..credentials import list_credentials
    from ..pipeline import make_publisher
    from .gateway import credentials_path

    policies = {c.key: c.policy for c in list_credentials(credentials_path(settings))}
    store = LrsStore(ch)
    k = settings.kafka
    topic = Topic.QUARANTINE.physical(k.topic_prefix)
    back = KafkaProducer(bootstrap_servers=k.bootstrap_servers, acks="all", max_block_ms=30_000)
    publisher = make_publisher(settings, "quarantine-replay")
    try:
        counts = redrive(
            replayable(ch, f, limit),
            lambda record: policies.get(record.credential, STRICT_POLICY),
            publisher,
            lambda school, ids: {sid.lower() for sid in store.lookup(school, ids)},
            lambda record: back.send(topic, key=record.key, value=record.encode()),
            lambda: int(time.time() * 1000),
        )
        back.flush(30)
    finally:
        publisher.producer.close()
        back.close(10)
    return counts


def register(main: click.Group) -> None:
    @main.group()
    def quarantine() -> None:
        """Statements refused at the edge, kept with their reasons; re-drive them after a fix."""

    @quarantine.command("list")
    @_filters
    @click.option("--state", type=click.Choice(["refused", "accepted", "refused-again"]), default=None)
    @click.option("--limit", type=int, default=50, show_default=True)
    @click.pass_obj
    def list_(settings: Settings, school, rule, since, until, state, limit) -> None:
        """Newest records first: id, received, school, credential, stage, state, rules."""
        from reporting.quarantine import list_items

        from ..pipeline import open_clickhouse

        ch = open_clickhouse(settings)
        try:
            for it in list_items(ch, _filter(school, rule, state, since, until), limit):
                click.echo(f"{it.record_id}\t{_when(it.received_ms)}\t{it.school}\t{it.credential or '-'}\t"
                           f"{it.stage}\t{it.state}\t{','.join(dict.fromkeys(it.rules))}")  # fmt: skip
        finally:
            ch.close()

    @quarantine.command("show")
    @click.argument("record_id")
    @click.pass_obj
    def show(settings: Settings, record_id: str) -> None:
        """One record: where it came from, every violation (rule, path, message) and the raw body."""
        from reporting.quarantine import show as show_record

        from ..pipeline import open_clickhouse

        ch = open_clickhouse(settings)
        try:
            r = show_record(ch, record_id)
        finally:
            ch.close()
        if r is None:
            raise UserError(f"no quarantine record {record_id}")
        click.echo(f"record:     {r.record_id}\nschool:     {r.school}\ncredential: {r.credential or '-'}\n"
                   f"stage:      {r.stage}\nreceived:   {_when(r.received_ms)}\nxAPI:       {r.xapi_version}\n"
                   f"state:      {r.state}\nbody:       {r.body_bytes} bytes{' (cut)' if r.truncated else ''}")  # fmt: skip
        for rule, path, message in zip(r.rules, r.paths, r.messages, strict=False):
            click.echo(f"  {rule}  at {path}\n      {message}")
        click.echo(r.body.decode("utf-8", errors="replace"))

    @quarantine.command("stats")
    @_filters
    @click.pass_obj
    def stats(settings: Settings, school, rule, since, until) -> None:
        """Refused records per rule and per producer (credential and stage), and how many a replay accepted."""
        from reporting.quarantine import stats_by_producer, stats_by_rule

        from ..pipeline import open_clickhouse

        f = _filter(school, rule, None, since, until)
        ch = open_clickhouse(settings)
        try:
            by_rule, by_producer = stats_by_rule(ch, f), stats_by_producer(ch, f)
        finally:
            ch.close()
        click.echo("school\trule\trecords\taccepted since")
        for row in by_rule:
            click.echo("\t".join(map(str, row)))
        click.echo("\nschool\tcredential\tstage\trecords\taccepted since\tlatest")
        for school_, cred, stage, n, accepted, latest in by_producer:
            click.echo(f"{school_}\t{cred or '-'}\t{stage}\t{n}\t{accepted}\t{_when(latest)}")

    @quarantine.command("replay")
    @click.option("--school", required=True, help="The school whose records to re-drive.")
    @click.option("--rule", default=None, help="Only records with a violation of this rule id.")
    @click.option("--since", default=None, help="Received at or after (ISO 8601 or epoch ms).")
    @click.option("--until", default=None, help="Received before (ISO 8601 or epoch ms).")
    @click.option("--limit", type=int, default=10_000, show_default=True, help="Records per run.")
    @click.pass_obj
    def replay(settings: Settings, school, rule, since, until, limit) -> None:
        """Re-drive refused statements through validation under each credential's current policy.

        \b
        Idempotent: statements keep their ids (one without gets an id derived from its
        record), ids already stored are skipped, and a record once accepted is not
        re-driven again. With embedded chDB, run it while no other process holds the
        database (as for `learnpulse sql`).
        """
        from ..pipeline import open_clickhouse

        ch = open_clickhouse(settings)
        try:
            c = quarantine_replay(settings, ch, _filter(school, rule, None, since, until), limit)
        finally:
            ch.close()
        click.echo(f"records {c.records}: accepted {c.accepted_records}, still refused {c.still_refused}; "
                   f"statements sent {c.sent}, already stored {c.already_stored}")  # fmt: skip
