"""`learnpulse stack` and the one-line errors of the CLI, run as a user runs them.

Each test that starts a broker uses its own data directory and free ports, so it never
touches the session broker or a running demo.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from learnpulse.settings import ClickHouseSettings, KafkaSettings, Settings
from schemas.topics import Topic
from tests.conftest import REPO, free_port, listening_tcp


def run_cli(args: list[str], settings: Settings, env: dict[str, str] | None = None, timeout: float = 180):
    full_env = {**os.environ, **settings.to_env(), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "learnpulse", *args], cwd=REPO, env=full_env,
        capture_output=True, text=True, timeout=timeout,
    )


def assert_one_line_error(res: subprocess.CompletedProcess, *needles: str) -> None:
    """Non-zero exit, one short line on stderr that says what to do, no traceback."""
    assert res.returncode != 0, res.stdout + res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    lines = [line for line in res.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture
def own_stack(tmp_path: Path, stack_home: Path) -> Settings:
    # Shares the session's jar cache (offline start) but not its data directory or ports.
    return Settings(
        home=tmp_path / "home",
        kafka=KafkaSettings(port=free_port(), controller_port=free_port()),
        clickhouse=ClickHouseSettings(server_tcp_port=free_port(), server_http_port=free_port()),
    )


@pytest.mark.kafka
def test_stack_up_twice_is_harmless_and_down_stops(own_stack: Settings):
    try:
        first = run_cli(["stack", "up"], own_stack)
        assert first.returncode == 0, first.stderr
        assert "kafka: started" in first.stdout
        assert f"topics: {len(Topic)} created" in first.stdout
        second = run_cli(["stack", "up"], own_stack)
        assert second.returncode == 0, second.stderr
        assert "kafka: already running" in second.stdout
        assert "topics: 0 created" in second.stdout
        status = run_cli(["stack", "status"], own_stack)
        assert f"listening on {own_stack.kafka.port}" in status.stdout
    finally:
        down = run_cli(["stack", "down"], own_stack)
    assert "kafka: stopped" in down.stdout
    status = run_cli(["stack", "status"], own_stack)
    assert "kafka: stopped" in status.stdout
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", own_stack.kafka.port), timeout=1).close()


@pytest.mark.kafka
def test_stack_down_after_crash_cleans_stale_pid_and_up_restarts(own_stack: Settings):
    pidfile = own_stack.home / "kafka" / "kafka.pid"
    try:
        assert run_cli(["stack", "up"], own_stack).returncode == 0
        pid = int(pidfile.read_text())
        os.killpg(pid, signal.SIGKILL)  # a crash: no clean shutdown, pid file left behind
        for _ in range(50):
            if "stale" in run_cli(["stack", "status"], own_stack).stdout:
                break
        assert "stopped (stale pid file)" in run_cli(["stack", "status"], own_stack).stdout
        down = run_cli(["stack", "down"], own_stack)
        assert down.returncode == 0 and "kafka: was not running" in down.stdout
        assert not pidfile.exists()
        again = run_cli(["stack", "up"], own_stack)
        assert again.returncode == 0, again.stderr
        assert "kafka: started" in again.stdout
        # Same data directory: the topics survived the crash.
        assert "topics: 0 created" in again.stdout
    finally:
        run_cli(["stack", "down"], own_stack)


def test_stack_up_with_port_taken_says_which_port(own_stack: Settings):
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", own_stack.kafka.port))
        blocker.listen()
        res = run_cli(["stack", "up"], own_stack)
    assert_one_line_error(res, f"port {own_stack.kafka.port}", "already taken")


def test_stack_up_without_java_says_what_to_install(own_stack: Settings, tmp_path: Path):
    # A PATH with neither java nor mvn (python is started by absolute path).
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    res = run_cli(["stack", "up"], own_stack, env={"PATH": str(empty)})
    assert_one_line_error(res, "`java` not found", "apt-get install")


def test_cli_kafka_unreachable_is_one_line(own_stack: Settings):
    res = run_cli(["simulate", "--count", "10"], own_stack, timeout=120)
    assert_one_line_error(res, "Kafka not reachable", str(own_stack.kafka.port), "learnpulse stack up")


def test_cli_clickhouse_server_unreachable_is_one_line(own_stack: Settings):
    port = free_port()
    s = own_stack.model_copy(update={"clickhouse": ClickHouseSettings(url=f"clickhouse://default:@127.0.0.1:{port}/x")})
    res = run_cli(["db", "migrate"], s)
    assert_one_line_error(res, "ClickHouse not reachable", str(port))


def test_cli_help_lists_every_area():
    res = subprocess.run([sys.executable, "-m", "learnpulse", "--help"], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0
    for command in ("demo", "stack", "worker", "simulate", "serve", "db"):
        assert f"  {command} " in res.stdout, res.stdout


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a listening TCP socket on ``port``."""
    return {address for address, p, _inode in listening_tcp() if p == port}


@pytest.mark.clickhouse_server
def test_stack_clickhouse_server_has_a_generated_password_and_listens_on_loopback_only(
    stack_home, clickhouse_server_settings, server_url
):
    import requests
    from clickhouse_driver import Client

    from learnpulse.local_secrets import CLICKHOUSE_PASSWORD_FILE
    from learnpulse.stack import ClickHouseServer

    server = ClickHouseServer(Settings(home=stack_home, clickhouse=clickhouse_server_settings))
    secret = stack_home.resolve() / CLICKHOUSE_PASSWORD_FILE
    assert secret.stat().st_mode & 0o777 == 0o600
    assert len(server.password) >= 32 and server.password in server.url
    tcp, http = clickhouse_server_settings.server_tcp_port, clickhouse_server_settings.server_http_port
    # Without the password: refused on the native port …
    with pytest.raises(Exception, match="(?i)password|authentication"):
        Client("127.0.0.1", port=tcp, connect_timeout=5).execute("SELECT 1")
    assert Client("127.0.0.1", port=tcp, password=server.password).execute("SELECT 1") == [(1,)]
    # … and a cross-origin POST to the HTTP port (what any web page can send) creates nothing.
    name = f"csrf_{uuid.uuid4().hex[:8]}"
    r = requests.post(f"http://127.0.0.1:{http}/", data=f"CREATE TABLE default.{name} (x UInt8) ENGINE = Memory",
                      headers={"Origin": "http://evil.example", "Content-Type": "text/plain"}, timeout=30)  # fmt: skip
    assert r.status_code >= 400
    exists = Client("127.0.0.1", port=tcp, password=server.password).execute(
        "SELECT count() FROM system.tables WHERE database = 'default' AND name = %(n)s", {"n": name})
    assert exists == [(0,)]
    # Both ports are bound to 127.0.0.1, never to every address.
    for port in (tcp, http):
        assert _listening_addresses(port) == {"127.0.0.1"}, port
