"""`learnpulse demo`: the whole pipeline on this machine, fed by the simulator, watched live."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from reporting.summary import school_summaries

from .errors import UserError
from .pipeline import open_clickhouse, start_sinks
from .settings import Settings
from .stack import KafkaBroker
from .topics import ensure_topics
from .web import make_app, start_web_thread


def _spawn(args: list[str], log: Path, settings: Settings, env: dict[str, str]) -> subprocess.Popen:
    out = open(log, "ab")
    return subprocess.Popen(
        [sys.executable, "-m", "learnpulse", *args], stdout=out, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, env={**os.environ, **settings.to_env(), **env},
    )


def run_demo(settings: Settings, duration: float | None, rate: float, echo) -> int:
    broker = KafkaBroker(settings)
    echo(f"kafka: {broker.up()} on {settings.kafka.bootstrap_servers}")
    created = ensure_topics(settings.kafka.bootstrap_servers, settings.kafka.topic_prefix, settings.kafka.replication)
    if created:
        echo(f"topics created: {', '.join(created)}")
    ch = open_clickhouse(settings)
    echo(f"clickhouse: {settings.clickhouse_url} (version {'.'.join(map(str, ch.server_version()))})")
    logs = settings.home.resolve() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    base = settings.metrics_port_base
    children = {
        "worker": _spawn(["worker"], logs / "worker.log", settings, {"LEARNPULSE_METRICS_PORT": str(base + 1)}),
        "simulator": _spawn(
            ["simulate", "--rate", str(rate)], logs / "simulator.log", settings, {"LEARNPULSE_METRICS_PORT": str(base + 2)}
        ),
    }
    sinks = start_sinks(settings, ch)
    try:
        start_web_thread(make_app(ch), settings.web_port)
    except OSError as err:
        raise UserError(f"{err}; set LEARNPULSE_WEB_PORT") from err
    echo(f"live view: http://127.0.0.1:{settings.web_port}/  (metrics: /metrics; logs in {logs})")
    echo("Ctrl-C stops the demo" + (f"; stopping by itself after {duration:.0f}s" if duration else ""))
    started = time.monotonic()
    try:
        while duration is None or time.monotonic() - started < duration:
            time.sleep(2)
            for name, proc in children.items():
                if proc.poll() is not None:
                    raise UserError(f"{name} exited with {proc.returncode}; see {logs / (name + '.log')}")
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
        sinks.join()
    return 0


def _print_summary(ch, echo, elapsed: float) -> None:
    rows = school_summaries(ch)
    total = sum(r.statements for r in rows)
    lines = [f"[{elapsed:6.0f}s] {total} statements in ClickHouse across {len(rows)} schools"]
    for r in rows:
        lines.append(
            f"  {r.school:<12} {r.statements:>8} stmts {r.learners:>5} learners {r.active_last_hour:>4} active/h  latest {r.latest}"
        )
    echo("\n".join(lines))
