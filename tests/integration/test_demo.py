"""`learnpulse demo`, the README's first command, run as a user runs it (own ports and data)."""

from __future__ import annotations

import base64
import os
import re
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import orjson
import pytest

from learnpulse.settings import GatewaySettings, KafkaSettings, Settings
from tests.conftest import REPO, free_port, free_port_block, wait_for
from tests.operators_support import signed_in


def _get(url: str, headers: dict[str, str] | None = None):
    """(status, JSON body); (status, None) for an HTTP error such as 404 before the sink wrote."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, None


@pytest.mark.kafka
@pytest.mark.slow
def test_demo_runs_the_whole_pipeline_with_dashboard_lrs_and_stops_by_itself(tmp_path, kafka_settings):
    settings = Settings(
        home=tmp_path / "home",
        kafka=KafkaSettings(port=free_port(), controller_port=free_port()),
        web_port=free_port(),
        gateway=GatewaySettings(port=free_port()),
        metrics_port_base=free_port_block(16),
        streams_web_port=free_port(),
    )
    log = tmp_path / "demo.out"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "learnpulse", "demo", "--duration", "75", "--rate", "300"],
            cwd=REPO, env={**os.environ, **settings.to_env()}, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        text = wait_for(lambda: "xAPI LRS:" in log.read_text() and log.read_text(), 120, "the demo banner")
        key, secret = re.search(r"HTTP Basic (\S+):(\S+), school", text).groups()
        web = f"http://127.0.0.1:{settings.web_port}"

        # A first network operator, its random password in a private file named once.
        secret_file = re.search(r"password in (\S+) \(mode 0600\)", text).group(1)
        assert os.stat(secret_file).st_mode & 0o777 == 0o600
        assert _get(f"{web}/api/summary")[0] == 401  # nobody signed in
        http = signed_in(web, "admin", open(secret_file).read().strip())

        # Schools light up on the dashboard API within the first minute.
        def summary():
            answer = http.get(f"{web}/api/summary", timeout=10)
            return answer.json() if answer.status_code == 200 else None

        schools = wait_for(
            lambda: (rows := summary()) and len(rows) == 3 and all(r["statements"] for r in rows) and rows,
            60, "three schools with statements on the dashboard",
        )
        assert {r["school"] for r in schools} == {"school-000", "school-001", "school-002"}

        # The LRS endpoint of the demo accepts a statement and reads it back from ClickHouse.
        auth = {"Authorization": "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode(),
                "X-Experience-API-Version": "1.0.3"}
        stmt = {"actor": {"mbox": "mailto:demo@example.com"},
                "verb": {"id": "http://adlnet.gov/expapi/verbs/experienced"},
                "object": {"id": "http://example.com/demo-page"}}
        req = urllib.request.Request(
            f"http://127.0.0.1:{settings.gateway.port}/xapi/statements", data=orjson.dumps(stmt), method="POST",
            headers={**auth, "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=20) as resp:
            (sid,) = orjson.loads(resp.read())
        got = wait_for(
            lambda: _get(f"http://127.0.0.1:{settings.gateway.port}/xapi/statements?statementId={sid}", auth)[1],
            30, "the posted statement readable",
        )
        assert got["id"] == sid and got["actor"] == stmt["actor"]

        # It stops by itself, cleanly.
        assert proc.wait(timeout=150) == 0, log.read_text()[-3000:]
        text = log.read_text()
        totals = re.findall(r"\] (\d+) statements in ClickHouse across 4 schools", text)  # 3 simulated + the LRS one
        assert totals, text[-3000:]
        # The broker the demo started went with it ...
        assert "kafka: stopped" in text
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", settings.kafka.port), timeout=2).close()
        # ... and the figures stay in ClickHouse for the documented SQL, without the demo.
        out = subprocess.run(
            [sys.executable, "-m", "learnpulse", "sql", "--format", "tsv",
             "SELECT count() FROM {db}.statements FINAL"],
            cwd=REPO, env={**os.environ, **settings.to_env()}, capture_output=True, text=True, timeout=120,
        )
        assert out.returncode == 0, out.stderr
        assert int(out.stdout.split()[-1]) >= int(totals[-1]) > 0
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(30)
        subprocess.run([sys.executable, "-m", "learnpulse", "stack", "down"], cwd=REPO,
                       env={**os.environ, **settings.to_env()}, capture_output=True, timeout=60)
