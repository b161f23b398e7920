"""`learnpulse demo` supervises its processes: a SIGKILLed stream worker is started again and
the pipeline goes on (issue 12, part 4)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from learnpulse.settings import GatewaySettings, KafkaSettings, Settings
from learnpulse.stack import kafka_brokers
from tests.conftest import REPO, free_port, free_port_block, wait_for


def _workers(pid: int) -> list[int]:
    """Children of ``pid`` running `learnpulse worker`."""
    try:
        children = [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
    out = []
    for child in children:
        try:
            if b"worker" in Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0"):
                out.append(child)
        except OSError:
            pass
    return out


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read()


@pytest.mark.kafka
@pytest.mark.slow
def test_demo_restarts_a_sigkilled_worker_and_the_figures_go_on(tmp_path, kafka_settings):
    settings = Settings(
        home=tmp_path / "home", kafka=KafkaSettings(port=free_port(), controller_port=free_port()),
        web_port=free_port(), gateway=GatewaySettings(port=free_port()), metrics_port_base=free_port_block(16),
        streams_web_port=free_port(),
    )  # fmt: skip
    log = tmp_path / "demo.out"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "learnpulse", "demo", "--duration", "900", "--rate", "200"],
            cwd=REPO, env={**os.environ, **settings.to_env()}, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    web = f"http://127.0.0.1:{settings.web_port}"
    try:
        wait_for(lambda: "xAPI LRS:" in log.read_text(), 400, "the demo banner")
        (worker,) = wait_for(lambda: _workers(proc.pid), 60, "the demo's worker process")
        os.kill(worker, signal.SIGKILL)
        wait_for(lambda: "worker exited with -9; restarting it" in log.read_text(), 60, "the demo to notice")
        wait_for(lambda: _workers(proc.pid) not in ([], [worker]), 60, "a new worker process")
        assert proc.poll() is None, log.read_text()[-3000:]
        metrics = _get(f"{web}/metrics").decode()
        assert 'learnpulse_supervisor_restarts_total{process="worker"} 1.0' in metrics

        def engagement_rows() -> int:
            out = subprocess.run(
                [sys.executable, "-m", "learnpulse", "sql", "SELECT count() AS n FROM {db}.engagement"],
                cwd=REPO, env={**os.environ, **settings.to_env()}, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            digits = [w for w in out.stdout.split() if w.isdigit()]
            return int(digits[-1]) if out.returncode == 0 and digits else -1

        before = wait_for(lambda: (n := engagement_rows()) > 0 and n, 180, "engagement figures")
        wait_for(lambda: engagement_rows() > before, 240, "the restarted worker's new figures", interval=5)
        assert proc.poll() is None, log.read_text()[-3000:]
    finally:
        # SIGTERM, not SIGINT: a test run started as a background job ignores SIGINT, and so
        # did the demo then (it was killed after 120 s and its Kafka broker left running).
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
    assert "kafka: stopped" in log.read_text(), log.read_text()[-3000:]
    assert not any(b.pid() for b in kafka_brokers(settings)), "the demo left its Kafka broker running"
