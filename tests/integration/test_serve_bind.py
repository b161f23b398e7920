"""``learnpulse serve`` listens where the settings say (issue 11, item 7): it used 127.0.0.1 whatever was set."""

from __future__ import annotations

import pytest

from learnpulse.settings import ClickHouseSettings, Settings
from learnpulse.stack import port_open
from tests.conftest import free_port, wait_for, free_port_block


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
