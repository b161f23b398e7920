"""``learnpulse serve`` listens where the settings say (issue 11, item 7): it used 127.0.0.1 whatever was set."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import pytest
import requests

from learnpulse.settings import ClickHouseSettings, Settings
from learnpulse.stack import port_open
from tests.conftest import free_port, free_port_block, listening_tcp, wait_for
from tests.integration.streams_support import stream_settings


@pytest.mark.kafka
def test_serve_listens_on_the_configured_bind_host_only(tmp_path, kafka, chdb_url, spawn):
    settings = Settings(
        home=tmp_path / "home", kafka=kafka, clickhouse=ClickHouseSettings(url=chdb_url), bind_host="127.0.0.2",
        metrics_port_base=free_port_block(16), web_port=free_port(), streams_web_port=free_port(), log_level="WARNING",
    )  # fmt: skip
    proc = spawn(["serve"], settings, "serve")
    wait_for(lambda: port_open("127.0.0.2", settings.web_port) or proc.popen.poll() is not None, 120,
             "serve listening on 127.0.0.2")  # fmt: skip
    assert proc.popen.poll() is None, proc.tail()
    assert port_open("127.0.0.2", settings.web_port)
    assert not port_open("127.0.0.1", settings.web_port)
    # Its /metrics too: nothing of the process listens elsewhere.
    assert {address for address, _port in _listening_sockets_of(proc.popen.pid)} == {"127.0.0.2"}


@pytest.mark.kafka
@pytest.mark.clickhouse_server
def test_serve_without_sinks_answers_the_dashboard_and_needs_a_server(tmp_path, kafka, server_url, spawn):
    import requests

    settings = Settings(
        home=tmp_path / "home", kafka=kafka, clickhouse=ClickHouseSettings(url=server_url),
        metrics_port_base=free_port_block(16), web_port=free_port(), streams_web_port=free_port(), log_level="WARNING",
    )  # fmt: skip
    spawn_migrate = spawn(["db", "migrate"], settings, "migrate")
    wait_for(lambda: spawn_migrate.popen.poll() is not None, 120, "migrations")
    assert spawn_migrate.popen.returncode == 0, spawn_migrate.tail()
    proc = spawn(["serve", "--no-sinks"], settings, "serve")
    wait_for(lambda: port_open("127.0.0.1", settings.web_port) or proc.popen.poll() is not None, 120, "serve listening")
    assert proc.popen.poll() is None, proc.tail()
    base = f"http://127.0.0.1:{settings.web_port}"
    assert requests.get(f"{base}/api/state", timeout=30).status_code == 401  # still asks who is asking
    assert requests.get(f"{base}/metrics", timeout=30).status_code == 200
    # chDB can be written by one process only: there the flag is refused with the reason.
    refused = spawn(["serve", "--no-sinks"], settings.model_copy(update={"clickhouse": ClickHouseSettings(
        url=f"chdb://{tmp_path / 'chdb'}")}), "serve-chdb")  # fmt: skip
    wait_for(lambda: refused.popen.poll() is not None, 120, "serve --no-sinks on chDB to exit")
    assert refused.popen.returncode == 2 and "needs a ClickHouse server" in refused.tail()


def _listening_sockets_of(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every listening TCP socket process ``pid`` holds."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    return {(address, port) for address, port, inode in listening_tcp() if inode in inodes}


@pytest.mark.kafka
def test_the_worker_listens_on_the_bind_host_only_and_shows_no_data(tmp_path, kafka, spawn):
    """Every port the stream worker opens (Faust's web server, /metrics) is on ``bind_host``.

    Faust binds its web server to every address (``web_bind`` 0.0.0.0) whatever ``web_host`` says.
    """
    settings = stream_settings(tmp_path, kafka).model_copy(update={"bind_host": "127.0.0.2"})
    worker = spawn(["worker", "--web-port", str(settings.streams_web_port)], settings, "worker",
                   extra_env={"LEARNPULSE_METRICS_PORT": str(free_port())})  # fmt: skip
    pid = worker.popen.pid
    wait_for(lambda: len(_listening_sockets_of(pid)) >= 2 or worker.popen.poll() is not None, 120,
             "the worker's web server and /metrics listening")  # fmt: skip
    assert worker.popen.poll() is None, worker.tail()
    time.sleep(2)  # anything else it opens at start
    sockets = _listening_sockets_of(pid)
    assert (("127.0.0.2", settings.streams_web_port)) in sockets, sockets
    assert {address for address, _port in sockets} == {"127.0.0.2"}, sockets
    # Faust's web server answers its liveness page, and none of the views that show the
    # worker's tables (learners' state), its partitions or its statistics: they ask nobody.
    base = f"http://127.0.0.2:{settings.streams_web_port}"
    assert requests.get(f"{base}/", timeout=30).status_code == 200
    for view in ("/table/", "/table/learner-state/", "/router/", "/stats/", "/graph/"):
        assert requests.get(f"{base}{view}", timeout=30).status_code == 404, view
