"""`learnpulse demo`: the whole pipeline on this machine, fed by the simulator, watched live."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from reporting.scope import EVERY_SCHOOL
from reporting.summary import school_summaries
from schemas.metrics import SUPERVISOR_RESTARTS

from .errors import UserError
from .pipeline import open_clickhouse, start_sinks
from .settings import Settings
from .stack import kafka_brokers
from .topics import ensure_topics
from .web import make_app, start_web_thread


def _spawn(args: list[str], log: Path, settings: Settings, env: dict[str, str]) -> subprocess.Popen:
    out = open(log, "ab")
    return subprocess.Popen(
        [sys.executable, "-m", "learnpulse", *args], stdout=out, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, env={**os.environ, **settings.to_env(), **env},
    )


DEMO_SCHOOL = "demo-lrs"
# Restarts of a dead worker or simulator before the demo stops with an error.
DEMO_MAX_RESTARTS = 5


def demo_credential(settings: Settings) -> tuple[str, str]:
    """A credential for the demo's LRS endpoint, made once and kept in the data directory.

    Only for the local demo: real credentials are never stored in clear
    (`learnpulse credentials add` prints the secret once).
    """
    from .commands.gateway import credentials_path
    from .credentials import add_credential, list_credentials

    saved = settings.home / "demo-lrs-credential.txt"
    known = {c.key for c in list_credentials(credentials_path(settings))}
    if saved.exists():
        key, _, secret = saved.read_text().strip().partition(":")
        if key in known:
            return key, secret
    key, secret = add_credential(credentials_path(settings), DEMO_SCHOOL)
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.write_text(f"{key}:{secret}\n")
    saved.chmod(0o600)
    return key, secret


DEMO_OPERATOR = "admin"


def first_operator(settings: Settings) -> str | None:
    """With no operator account yet, make a network operator with a random password.

    The password goes to a file in the home (0600) and nowhere else, never a default one;
    returns that file's path (to print once), or None when accounts exist already.
    """
    import secrets

    from .commands.operators import accounts_path
    from .homefiles import write_private
    from .operators import add_operator, list_operators

    path = accounts_path(settings)
    if list_operators(path):
        return None
    password = secrets.token_urlsafe(18)
    saved = settings.home.resolve() / f"operator-{DEMO_OPERATOR}.password"
    write_private(saved, password + "\n")
    add_operator(path, DEMO_OPERATOR, "network", password)
    return str(saved)


def _stop_as_ctrl_c(signum, frame) -> None:
    raise KeyboardInterrupt


def run_demo(settings: Settings, duration: float | None, rate: float, echo) -> int:
    # SIGTERM (`kill`, a supervisor, a test) stops the demo as Ctrl-C does, brokers and
    # processes with it. Ctrl-C alone is not enough: a shell starting the demo as a background
    # job makes it ignore SIGINT, and SIGTERM's default would skip every `finally`.
    previous = signal.signal(signal.SIGTERM, _stop_as_ctrl_c)
    try:
        return _run_with_brokers(settings, duration, rate, echo)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_with_brokers(settings: Settings, duration: float | None, rate: float, echo) -> int:
    brokers = kafka_brokers(settings)
    started = [b for b in brokers if b.start() == "started"]
    for b in brokers:
        b.wait_ready(120)
    echo(f"kafka: {'started' if started else 'already running'} on {settings.kafka.bootstrap_servers}")
    try:
        return _run(settings, duration, rate, echo)
    finally:
        # Brokers this demo started go with it; those that were running (`learnpulse stack
        # up`) stay. The data stays in the data directory: `learnpulse sql` reads chDB.
        for b in reversed(started):
            b.stop()
        if started:
            echo("kafka: stopped")


def _run(settings: Settings, duration: float | None, rate: float, echo) -> int:
    created = ensure_topics(settings.kafka.bootstrap_servers, settings.kafka.topic_prefix, settings.kafka.topic_replication)
    if created:
        echo(f"topics created: {', '.join(created)}")
    ch = open_clickhouse(settings)
    echo(f"clickhouse: {settings.clickhouse_url} (version {'.'.join(map(str, ch.server_version()))})")
    logs = settings.home.resolve() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    base = settings.metrics_port_base
    children: dict[str, subprocess.Popen] = {}
    webs: list = []
    sinks = None
    started = time.monotonic()
    # Everything started from here on is stopped in `finally`, whatever fails.
    try:
        webs.append(_web(make_app(ch, settings), settings.web_port, settings, "LEARNPULSE_WEB_PORT"))
        # The LRS API lives in this process too: with embedded chDB its reads must.
        from .commands.gateway import build_gateway_app

        key, secret = demo_credential(settings)
        webs.append(_web(build_gateway_app(settings, ch), settings.gateway.port, settings, "LEARNPULSE_GATEWAY__PORT"))
        sinks = start_sinks(settings, ch)
        commands = {
            "worker": (["worker"], {"LEARNPULSE_METRICS_PORT": str(base + 1)}),
            "simulator": (["simulate", "--rate", str(rate)], {"LEARNPULSE_METRICS_PORT": str(base + 2)}),
        }
        for name, (args, env) in commands.items():
            children[name] = _spawn(args, logs / f"{name}.log", settings, env)
        restarts: Counter[str] = Counter()
        lrs = f"http://127.0.0.1:{settings.gateway.port}{settings.gateway.prefix}"
        echo(f"live view: http://127.0.0.1:{settings.web_port}/  (metrics: /metrics; logs in {logs})")
        if saved := first_operator(settings):
            echo(f"sign in:   operator {DEMO_OPERATOR!r} (network: every school), password in {saved} (mode 0600); "
                 "more accounts: learnpulse operators add")  # fmt: skip
        else:
            echo("sign in:   with an operator account (learnpulse operators list)")
        echo(f"xAPI LRS:  {lrs}/statements  (HTTP Basic {key}:{secret}, school {DEMO_SCHOOL})")
        echo('SQL:       learnpulse sql "SELECT school, count() FROM {db}.statements FINAL GROUP BY school"')
        echo("Ctrl-C stops the demo" + (f"; stopping by itself after {duration:.0f}s" if duration else ""))
        while duration is None or time.monotonic() - started < duration:
            time.sleep(2)
            for name, proc in list(children.items()):
                if proc.poll() is not None:
                    # The demo supervises its processes: one that dies is started again
                    # (learnpulse_supervisor_restarts_total), a few times, then the demo gives up.
                    if restarts[name] >= DEMO_MAX_RESTARTS:
                        raise UserError(f"{name} exited with {proc.returncode} after {restarts[name]} restarts; "
                                        f"see {logs / (name + '.log')}")  # fmt: skip
                    restarts[name] += 1
                    SUPERVISOR_RESTARTS.labels(name).inc()
                    echo(f"{name} exited with {proc.returncode}; restarting it ({restarts[name]}/{DEMO_MAX_RESTARTS})")
                    args, env = commands[name]
                    children[name] = _spawn(args, logs / f"{name}.log", settings, env)
            if sinks.errors:
                raise UserError(f"sink failed: {sinks.errors[0]}")
            _print_summary(ch, echo, time.monotonic() - started)
    except KeyboardInterrupt:
        echo("stopping…")
    finally:
        for proc in children.values():
            proc.terminate()
        for proc in children.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        if sinks is not None:
            sinks.join()
        for w in webs:
            w.stop()
        ch.close()
    return 0


def _web(app, port: int, settings: Settings, variable: str):
    try:
        return start_web_thread(app, port, settings.bind_host)
    except OSError as err:
        raise UserError(f"{err}; set {variable}") from err


def _print_summary(ch, echo, elapsed: float) -> None:
    rows = school_summaries(ch, EVERY_SCHOOL)  # this terminal is the machine's owner
    total = sum(r.statements for r in rows)
    lines = [f"[{elapsed:6.0f}s] {total} statements in ClickHouse across {len(rows)} schools"]
    for r in rows:
        lines.append(
            f"  {r.school:<12} {r.statements:>8} stmts {r.learners:>5} learners {r.active_last_hour:>4} active/h  latest {r.latest}"
        )
    echo("\n".join(lines))
