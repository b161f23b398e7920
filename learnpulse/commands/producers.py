"""Producer commands: the simulator, file replay and the LRS bridge."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

import click

from ..errors import UserError
from ..settings import Settings

# Offsets from ``metrics_port_base`` of each long-running producer's /metrics port.
SIMULATOR_METRICS = 2
REPLAY_METRICS = 3
BRIDGE_METRICS = 4


def _metrics_port(settings: Settings, offset: int) -> int:
    return settings.metrics_port_for(offset)


def _progress_printer(enabled: bool):
    """A progress callback drawing one line on stderr (a bar when the total is known), or None."""
    if not enabled:
        return None
    from producers.simulator import format_ts

    def show(p) -> None:
        when = format_ts(p.event_ms)[:16].replace("T", " ") if p.event_ms is not None else "-"
        line = f"{p.sent:>12,} sent  {p.acked:>12,} acked  {p.rate:>9,.0f}/s  event time {when}"
        if p.total:
            done = min(1.0, p.sent / p.total)
            line = f"[{'#' * int(done * 24):<24}] {done:4.0%} " + line
        click.echo("\r" + line, nl=False, err=True)

    return show


def register(main: click.Group) -> None:
    """Add this area's subcommands to ``main``."""

    @main.command()
    @click.option("--count", type=int, default=None, help="Stop after this many statements.")
    @click.option("--days", type=float, default=None, help="Stop when event time has advanced this many days.")
    @click.option(
        "--rate", type=float, default=None, help="Target statements per second (default: as fast as possible)."
    )
    @click.option(
        "--speed",
        type=float,
        default=None,
        help="Event-time seconds per wall second (1 = real time; default: unpaced).",
    )
    @click.option("--seed", type=int, default=42, show_default=True)
    @click.option(
        "--scale",
        type=click.Choice(["demo", "medium", "large"]),
        default="demo",
        show_default=True,
        help="demo: 3 schools, 270 learners; medium: 20 schools, 10,000; large: 100 schools, 100,000.",
    )
    @click.option("--schools", type=int, default=None, help="Number of schools (overrides --scale).")
    @click.option("--courses", type=int, default=None, help="Courses per school (overrides --scale).")
    @click.option("--learners", type=int, default=None, help="Learners per course (overrides --scale).")
    @click.option("--cohorts", type=int, default=2, show_default=True, help="Cohorts per course.")
    @click.option(
        "--term-days", type=int, default=112, show_default=True, help="Term length; planted onsets fall in it."
    )
    @click.option(
        "--disengaging", type=float, default=0.25, show_default=True, help="Share of cohorts made to disengage."
    )
    @click.option("--skills", type=int, default=None, help="Skills per course (default 5).")
    @click.option("--sessions-per-day", type=float, default=None, help="Mean sessions per learner per day (default 0.6).")
    @click.option("--dropout", type=float, default=None, help="Share of learners who drop out (default 0.05).")
    @click.option(
        "--forgetting", type=float, default=0.0, show_default=True,
        help="Share of learners who forget known skills (BKT with forgetting; the truth names them).",
    )
    @click.option("--start", default=None, help="Event time of the start: ISO 8601, or 'now' (default 2026-01-01Z).")
    @click.option(
        "--truth",
        "truth_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Write the ground truth here (JSON Lines; .gz compresses).",
    )
    @click.option(
        "--truth-clickhouse",
        is_flag=True,
        help="Also write the truth to the sim_truth table of LEARNPULSE_CLICKHOUSE__URL (embedded chDB: only "
        "while no other process, e.g. the demo, holds it).",
    )
    @click.option(
        "--out",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Write the statements to this JSON Lines file (.gz compresses) instead of Kafka.",
    )
    @click.option(
        "--per-envelope", type=click.IntRange(1, 1000), default=20, show_default=True,
        help="Most statements of one learner per Kafka message; 1 sends each statement alone, "
             "as course content does (one statement per request).",
    )
    @click.pass_obj
    def simulate(
        settings: Settings,
        count: int | None,
        days: float | None,
        rate: float | None,
        speed: float | None,
        seed: int,
        scale: str,
        schools: int | None,
        courses: int | None,
        learners: int | None,
        cohorts: int,
        term_days: int,
        disengaging: float,
        skills: int | None,
        sessions_per_day: float | None,
        dropout: float | None,
        forgetting: float,
        start: str | None,
        truth_path: Path | None,
        truth_clickhouse: bool,
        out: Path | None,
        per_envelope: int,
    ) -> None:
        """Produce statements of simulated virtual schools to Kafka, with their ground truth.

        \b
        The statements are xAPI 1.0.3 as real content sends them (cmi5, video, questions);
        the truth (true mastery, planted disengagement, true active time) covers exactly
        the statements sent. Same --seed, same statements, byte for byte.
        """
        from producers.simulator import DAY_MS, SCALES, SimulationConfig

        from ..pipeline import run_simulator, serve_metrics

        fields: dict = dict(SCALES[scale], seed=seed, cohorts_per_course=cohorts, days=term_days)
        fields["disengaging_share"] = disengaging
        fields["forgetting_share"] = forgetting
        for name, value in (("schools", schools), ("courses_per_school", courses), ("learners_per_course", learners),
                            ("skills_per_course", skills), ("sessions_per_day", sessions_per_day),
                            ("dropout_share", dropout)):
            if value is not None:
                fields[name] = value
        if start is not None:
            fields["start_ms"] = _parse_start(start)
        try:
            config = SimulationConfig(**fields)
        except ValueError as err:
            raise UserError(str(err)) from err
        truth = _truth_sinks(settings, truth_path, truth_clickhouse, config)
        until = config.start_ms + int(days * DAY_MS) if days is not None else None
        stop = _stop_on_signals()
        if out is not None:
            from producers.runner import write_simulation
            from producers.simulator import Simulation

            sim = Simulation(config, on_truth=truth.write if truth is not None else None)
            try:
                n = write_simulation(sim, out, count=count, until_ms=until, stop=stop)
            except ValueError as err:
                raise UserError(str(err)) from err
            finally:
                if truth is not None:
                    for record in sim.finish():
                        truth.write(record)
                    truth.close()
            click.echo(f"{n} statements written to {out}")
            return
        serve_metrics(_metrics_port(settings, SIMULATOR_METRICS), settings.bind_host)
        sent = run_simulator(
            settings, config, count, rate, stop, _progress_printer(sys.stderr.isatty()),
            speed=speed, until_ms=until, truth=truth, per_envelope=per_envelope,
        )  # fmt: skip
        if sys.stderr.isatty():
            click.echo("", err=True)
        click.echo(f"{sent} statements sent and acknowledged by Kafka")

    _register_replay(main)
    _register_bridge(main)


def _register_replay(main: click.Group) -> None:
    @main.command()
    @click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.option("--school", required=True, help="The school whose credential the statements arrive under.")
    @click.option(
        "--rejects",
        "rejects_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Rejected statements with their reason, JSON Lines (default <home>/replay/rejects.jsonl).",
    )
    @click.option(
        "--state",
        "state_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Resume positions (default <home>/replay/state.json).",
    )
    @click.option("--restart", is_flag=True, help="Ignore saved positions: replay the files from their start.")
    @click.option(
        "--xapi-version",
        default="auto",
        show_default=True,
        help="Validate as 1.0.3 or 2.0.0; auto: by each statement's own version (default 1.0.3).",
    )
    @click.option("--unwrap", default=None, help="Take each statement from this key of the item (wrapped corpora).")
    @_credential_option
    @click.pass_obj
    def replay(
        settings: Settings,
        files: tuple[Path, ...],
        school: str,
        rejects_path: Path | None,
        state_path: Path | None,
        restart: bool,
        xapi_version: str,
        unwrap: str | None,
        credential: str | None,
    ) -> None:
        """Replay statement files (JSON Lines, JSON arrays, .gz) into Kafka; resumable.

        \b
        Each statement is validated; valid ones are sent under --school, rejected ones
        written with the rule they broke to the rejects file. Positions are saved only
        after Kafka acknowledged, so running the same command again after a crash or
        Ctrl-C resumes where it stopped (skipped items are counted). Statements re-sent
        after a crash keep their ids (derived ones too), so the sinks store each once.
        """
        from producers.replay import ReplayCounts, Replayer, ReplayError, ReplayOptions

        from ..pipeline import make_publisher, serve_metrics

        _check_school(settings, school)
        key, policy = _credential_policy(settings, school, credential)
        home = settings.home.resolve() / "replay"
        options = ReplayOptions(
            policy=policy,
            credential=key,
            school=school,
            rejects_path=rejects_path or home / "rejects.jsonl",
            state_path=state_path or home / "state.json",
            xapi_version=xapi_version,
            unwrap=unwrap,
            restart=restart,
        )
        serve_metrics(_metrics_port(settings, REPLAY_METRICS), settings.bind_host)
        tty = sys.stderr.isatty()

        def progress(path: str, c: ReplayCounts) -> None:
            if tty:
                click.echo(f"\r{path}: {c.read:,} read, {c.sent:,} sent, {c.rejected:,} rejected", nl=False, err=True)

        publisher = make_publisher(settings, "replay")
        try:
            quarantine = _quarantine_writer(settings, "replay")
            replayer = Replayer(publisher, options, _stop_on_signals(), progress, quarantine=quarantine)
            try:
                per_file = replayer.run(list(files))
            finally:
                replayer.close()
                quarantine.close()
        except ReplayError as err:
            raise UserError(str(err)) from err
        finally:
            publisher.producer.close()
        if tty:
            click.echo("", err=True)
        total = ReplayCounts()
        for path, c in per_file.items():
            total.add(c)
            click.echo(f"{path}: read {c.read}, sent {c.sent}, rejected {c.rejected}, skipped {c.skipped}")
        click.echo(
            f"total: read {total.read}, sent {total.sent}, rejected {total.rejected}, "
            f"skipped (already replayed) {total.skipped}"
        )
        if total.rejected:
            click.echo(f"rejected statements and reasons: {options.rejects_path}")


def _register_bridge(main: click.Group) -> None:
    @main.command()
    @click.option("--lrs", "lrs_url", required=True, help="xAPI endpoint of the remote LRS (e.g. https://lrs/xAPI/).")
    @click.option("--school", required=True, help="The school whose credential the statements arrive under.")
    @click.option("--username", envvar="LEARNPULSE_LRS_USERNAME", default=None, help="Basic auth key (or env).")
    @click.option("--password", envvar="LEARNPULSE_LRS_PASSWORD", default=None, help="Basic auth secret (or env).")
    @click.option("--once", is_flag=True, help="Stop once caught up instead of polling for ever.")
    @click.option("--page-size", type=int, default=500, show_default=True, help="Statements per LRS request.")
    @click.option("--poll-interval", type=float, default=5.0, show_default=True, help="Seconds between polls.")
    @click.option(
        "--since/--no-since",
        "use_since",
        default=True,
        show_default=True,
        help="Ask the LRS for statements stored since the cursor; --no-since for LRSs whose `since` filters "
        "on timestamp (Ralph): read from the start each poll and filter here.",
    )
    @click.option(
        "--cursor",
        "cursor_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Cursor file (default <home>/bridge/<lrs+school>.json).",
    )
    @click.option(
        "--rejects",
        "rejects_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Rejected statements with their reason (default <home>/bridge/rejects.jsonl).",
    )
    @click.option("--xapi-version", default="auto", show_default=True, help="1.0.3, 2.0.0 or auto (by statement).")
    @click.option("--timeout", type=float, default=30.0, show_default=True, help="Seconds per LRS request.")
    @_credential_option
    @click.pass_obj
    def bridge(
        settings: Settings,
        lrs_url: str,
        school: str,
        username: str | None,
        password: str | None,
        once: bool,
        page_size: int,
        poll_interval: float,
        use_since: bool,
        cursor_path: Path | None,
        rejects_path: Path | None,
        xapi_version: str,
        timeout: float,
        credential: str | None,
    ) -> None:
        """Pull statements from a remote LRS into Kafka (tincan RemoteLRS); resumes from a durable cursor.

        \b
        The cursor (greatest `stored` delivered, plus the ids delivered in that
        millisecond) is saved only after Kafka acknowledged, so a restart neither skips
        nor repeats. Unreachable LRS, 5xx and Kafka failures are retried with backoff.
        """
        import hashlib

        from producers.lrs_bridge import BridgeCounts, BridgeError, BridgeOptions, LrsBridge
        from producers.tincan_compat import StatementsClient

        from ..pipeline import make_publisher, serve_metrics

        _check_school(settings, school)
        key, policy = _credential_policy(settings, school, credential)
        home = settings.home.resolve() / "bridge"
        tag = hashlib.sha256(f"{lrs_url}|{school}".encode()).hexdigest()[:16]
        options = BridgeOptions(
            school=school,
            cursor_path=cursor_path or home / f"cursor-{tag}.json",
            rejects_path=rejects_path or home / "rejects.jsonl",
            page_size=page_size,
            use_since=use_since,
            xapi_version=xapi_version,
            poll_interval_s=poll_interval,
            policy=policy,
            credential=key,
        )
        try:
            client = StatementsClient(
                endpoint=lrs_url, username=username, password=password, version="1.0.3", timeout=timeout
            )
        except Exception as err:  # tincan raises plain Exception/ValueError for a bad endpoint or version
            raise UserError(f"--lrs {lrs_url}: {err}") from err
        serve_metrics(_metrics_port(settings, BRIDGE_METRICS), settings.bind_host)
        tty = sys.stderr.isatty()

        def progress(c: BridgeCounts) -> None:
            if tty:
                click.echo(f"\r{c.fetched:,} fetched, {c.sent:,} sent, {c.rejected:,} rejected", nl=False, err=True)

        publisher = make_publisher(settings, "bridge")
        try:
            quarantine = _quarantine_writer(settings, "bridge")
            runner = LrsBridge(client, publisher, options, _stop_on_signals(), quarantine=quarantine)
            try:
                counts = runner.run(once=once, progress=progress)
            finally:
                runner.close()
                quarantine.close()
        except BridgeError as err:
            raise UserError(str(err)) from err
        finally:
            publisher.producer.close()
        if tty:
            click.echo("", err=True)
        click.echo(
            f"fetched {counts.fetched}, sent {counts.sent}, rejected {counts.rejected}, "
            f"skipped (already delivered) {counts.skipped}; cursor {options.cursor_path}"
        )


def _credential_option(command):
    return click.option(
        "--credential", default=None, metavar="KEY",
        help="The credential (of --school) whose ingestion policy applies and which refused statements are "
        "quarantined under; default: the school's credential when it has exactly one, else strict.",
    )(command)  # fmt: skip


def _credential_policy(settings: Settings, school: str, key: str | None):
    """``(credential key, its policy)`` for a producer sending under ``school``."""
    from schemas.policy import STRICT_POLICY

    from ..credentials import list_credentials
    from .gateway import credentials_path

    mine = [c for c in list_credentials(credentials_path(settings)) if c.school == school]
    if key is not None:
        found = [c for c in mine if c.key == key]
        if not found:
            raise UserError(f"--credential {key}: no such credential of school {school}")
        return key, found[0].policy
    if len(mine) == 1:
        return mine[0].key, mine[0].policy
    return "", STRICT_POLICY


def _quarantine_writer(settings: Settings, stage: str):
    from .gateway import _quarantine_writer as writer

    return writer(settings, stage)


def _check_school(settings: Settings, school: str) -> None:
    """Producers send under a school's credential: once credentials exist, the school must have one."""
    from ..credentials import list_credentials
    from .gateway import credentials_path

    path = credentials_path(settings)
    schools = {c.school for c in list_credentials(path)}
    if schools and school not in schools:
        raise UserError(
            f"--school {school}: no credential for this school in {path} "
            f"(schools: {', '.join(sorted(schools))}); add one with `learnpulse credentials add --school {school}`"
        )


def _stop_on_signals() -> threading.Event:
    """An event set by SIGTERM/SIGINT: the producer then flushes, saves its cursor or truth, and exits 0."""
    stop = threading.Event()

    def handler(_signum, _frame) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def _parse_start(value: str) -> int:
    import time

    from schemas.errors import InvalidStatement
    from schemas.xapi.timefmt import parse_ms

    if value == "now":
        return int(time.time() * 1000)
    try:
        return parse_ms(value, "--start")
    except InvalidStatement as err:
        raise UserError(f"--start: {err.message}") from err


def _truth_sinks(settings: Settings, path: Path | None, clickhouse: bool, config):
    from producers.truth import ClickHouseTruthWriter, JsonlTruthWriter, TruthFanout

    sinks = []
    if path is not None:
        sinks.append(JsonlTruthWriter(path))
    if clickhouse:
        from ..pipeline import open_clickhouse

        run_id = f"seed-{config.seed}-{config.start_ms}"
        sinks.append(ClickHouseTruthWriter(open_clickhouse(settings, migrate_schema=False), run_id))
    if not sinks:
        return None
    return sinks[0] if len(sinks) == 1 else TruthFanout(sinks)
