"""`learnpulse notify` → a real Prometheus Alertmanager (Debian's), and the example alertmanager.yml.

Alertmanager runs on free loopback ports with a private storage path and clustering off;
it routes to a real webhook receiver of the test, so the whole path — AlertRecord on
Kafka → notifier → Alertmanager API v2 → Alertmanager's own webhook notification — is
checked, including the resolve.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import orjson
import pytest

from learnpulse.settings import NotifierSettings
from schemas.records import AlertRecord
from sinks.notifier import ALERTNAME
from tests.conftest import REPO, free_port, wait_for
from tests.integration.test_notifier_webhook import Receiver, alive, notifier_settings, produce_alerts

AM_BIN = "/usr/bin/prometheus-alertmanager"
PROM_DIR = REPO / "deploy" / "prometheus"


def _tool(path_or_name: str) -> str:
    found = shutil.which(path_or_name)
    if found is None:
        pytest.fail(f"{path_or_name} is not installed; `make setup` installs prometheus-alertmanager")
    return found


@dataclass
class Alertmanager:
    port: int
    proc: subprocess.Popen
    hook: Receiver
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alerts(self) -> list[dict]:
        """Active alerts of ours (GET /api/v2/alerts leaves out those whose endsAt has passed)."""
        q = urllib.parse.urlencode({"filter": f'alertname="{ALERTNAME}"'})
        try:
            with urllib.request.urlopen(f"{self.url}/api/v2/alerts?{q}", timeout=5) as resp:
                return orjson.loads(resp.read())
        except OSError:
            return []

    def notifications(self) -> list[dict]:
        """What Alertmanager itself sent to its webhook receiver."""
        return [orjson.loads(r.body) for r in self.hook.snapshot()]


@pytest.fixture
def alertmanager(tmp_path):
    hook = Receiver().start()
    port = free_port()
    cfg = tmp_path / "alertmanager.yml"
    # Short group timings so the notifications come within the test.
    cfg.write_text(
        "route:\n  receiver: staff\n  group_by: [school, course, cohort]\n"
        "  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n"
        f"receivers:\n  - name: staff\n    webhook_configs:\n      - url: {hook.url}\n        send_resolved: true\n"
    )
    log = tmp_path / "alertmanager.log"
    out = open(log, "wb")  # noqa: SIM115  (closed in the finally below)
    proc = subprocess.Popen(
        [_tool(AM_BIN), f"--config.file={cfg}", f"--storage.path={tmp_path / 'am-data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=", "--log.level=warn"],
        stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    am = Alertmanager(port, proc, hook, log)

    def ready() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"alertmanager exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{am.url}/-/ready", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    try:
        wait_for(ready, 30, "alertmanager ready")
        yield am
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        out.close()
        hook.stop()


def ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


def cohort_alert(state: str, fired_at: int, at: int, alert_id: str = "e" * 32) -> AlertRecord:
    share, threshold = (0.5, 0.4) if state == "fired" else (0.2, 0.25)
    return AlertRecord(
        alert_id, "school-003", "Algebra I", "B", state, at, fired_at, 30, int(share * 30), share, threshold,
        ("p1",), at,
    )  # fmt: skip


OUR_LABELS = {
    "alertname": ALERTNAME,
    "school": "school-003",
    "course": "Algebra I",
    "cohort": "B",
    "severity": "page",
}


@pytest.mark.kafka
def test_notifier_alertmanager_fired_is_active_with_our_labels_and_resolved_is_not(
    kafka, spawn, alertmanager, tmp_path
):
    settings = notifier_settings(
        tmp_path, kafka, NotifierSettings(alertmanager_url=alertmanager.url, severity="page", retry_initial_s=0.2)
    )
    now = int(time.time() * 1000)
    fired = cohort_alert("fired", now - 120_000, now - 120_000)
    produce_alerts(kafka, [fired])
    proc = spawn(["notify"], settings, "notify")

    (active,) = wait_for(lambda: alive(proc) and alertmanager.alerts(), 60, "the alert active in Alertmanager")
    assert active["labels"] == OUR_LABELS
    assert active["status"]["state"] == "active"
    assert ms(active["startsAt"]) == fired.fired_at_ms
    assert ms(active["endsAt"]) > now  # held open by the notifier, not resolved
    assert active["annotations"]["alert_id"] == fired.alert_id
    assert active["annotations"]["summary"] == (
        "school-003 / Algebra I / cohort B: 50% of 30 learners disengaged (threshold 40%)"
    )
    # Alertmanager routed it to its webhook receiver.
    firing = wait_for(
        lambda: [n for n in alertmanager.notifications() if n["status"] == "firing"], 30, "Alertmanager's notification"
    )
    assert firing[0]["alerts"][0]["labels"] == OUR_LABELS

    resolved = cohort_alert("resolved", fired.fired_at_ms, int(time.time() * 1000) - 1000)
    produce_alerts(kafka, [resolved])
    wait_for(lambda: alive(proc) and alertmanager.alerts() == [], 30, "the alert no longer active")
    done = wait_for(
        lambda: [n for n in alertmanager.notifications() if n["status"] == "resolved"], 30, "the resolved notification"
    )
    (gone,) = done[0]["alerts"]
    assert gone["labels"] == OUR_LABELS
    assert ms(gone["startsAt"]) == fired.fired_at_ms
    assert ms(gone["endsAt"]) == resolved.at_ms


@pytest.mark.kafka
@pytest.mark.slow
def test_notifier_alertmanager_fired_alert_kept_alive_by_resends_across_a_restart(kafka, spawn, alertmanager, tmp_path):
    # Re-sent every 2 s, each valid 8 s: without re-sends it would resolve by itself.
    settings = notifier_settings(
        tmp_path,
        kafka,
        NotifierSettings(alertmanager_url=alertmanager.url, severity="page", alertmanager_resend_s=2),
    )
    now = int(time.time() * 1000)
    produce_alerts(kafka, [cohort_alert("fired", now - 60_000, now - 60_000)])
    first = spawn(["notify"], settings, "notify-1")
    (a,) = wait_for(lambda: alive(first) and alertmanager.alerts(), 60, "the alert active")
    ends_first = ms(a["endsAt"])
    time.sleep(12)
    (a,) = alertmanager.alerts()
    assert a["status"]["state"] == "active"
    assert ms(a["endsAt"]) > ends_first + 2_000  # pushed forward by re-sends

    # A restart re-reads the topic up to its commit and keeps re-sending the fired alert.
    assert first.stop() == 0
    second = spawn(["notify"], settings, "notify-2")
    time.sleep(14)
    alive(second)
    (a,) = alertmanager.alerts()
    assert a["labels"] == OUR_LABELS
    assert a["status"]["state"] == "active"
    assert ms(a["endsAt"]) > int(time.time() * 1000)
    assert [n["status"] for n in alertmanager.notifications()] == ["firing"]  # never resolved meanwhile


def test_notifier_alertmanager_example_config_is_valid_and_routes_cohort_alerts_to_staff():
    amtool = _tool("amtool")
    cfg = str(PROM_DIR / "alertmanager.yml")
    check = subprocess.run([amtool, "check-config", cfg], check=False, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS" in check.stdout
    for labels, receiver in (
        ([f"alertname={ALERTNAME}", "school=school-002", "course=x", "cohort=y"], "staff"),
        ([f"alertname={ALERTNAME}", "school=school-001"], "staff-school-001"),
        (["alertname=LearnpulseCohortDisengagedShareHigh", "school=school-002"], "staff"),
        (["alertname=LearnpulseProcessDown"], "operators"),
    ):
        res = subprocess.run(
            [amtool, "config", "routes", "test", f"--config.file={cfg}", f"--verify.receivers={receiver}", *labels],
            check=False, capture_output=True, text=True,
        )  # fmt: skip
        assert res.returncode == 0, (labels, res.stdout, res.stderr)
        assert res.stdout.split() == [receiver]
