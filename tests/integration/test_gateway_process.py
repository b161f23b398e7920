"""``learnpulse credentials`` and ``learnpulse gateway`` as a user runs them, on both engines.

The gateway process also runs the sinks (``--sinks``), so reads come from what it wrote.
Reads wait the way an xAPI client does: on ``X-Experience-API-Consistent-Through``
(Communication §2.1.3.s2.b5) — once it has passed a statement's ``stored``, the statement
must be readable, with no further polling.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
import time
import uuid

import pytest
import requests

from schemas.xapi.timefmt import parse_ms
from tests.conftest import REPO, free_port, wait_for
from tests.unit.gateway.harness import statement


def _cli(settings, *args: str) -> str:
    res = subprocess.run(
        [sys.executable, "-m", "learnpulse", *args], check=False, cwd=REPO, env={**os.environ, **settings.to_env()},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    return res.stdout


@pytest.mark.kafka
def test_xapi_1_0_3_comm_2_1_3_s2_b5_gateway_process_consistent_through_then_readable(settings, spawn):
    settings = settings.model_copy(update={"gateway": settings.gateway.model_copy(update={"port": free_port()})})
    out = _cli(settings, "credentials", "add", "--school", "proc-school")
    key = re.search(r"key:\s+(\S+)", out).group(1)
    secret = re.search(r"secret:\s+(\S+)", out).group(1)
    assert secret not in (settings.home / "credentials.json").read_text()
    assert key in _cli(settings, "credentials", "list") and secret not in _cli(settings, "credentials", "list")

    gw = spawn(["gateway", "--sinks"], settings, "gateway")
    base = f"http://127.0.0.1:{settings.gateway.port}"

    def up():
        if gw.popen.poll() is not None:
            raise AssertionError(f"gateway exited {gw.popen.returncode}:\n{gw.tail()}")
        try:
            return requests.get(f"{base}/xapi/about", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    wait_for(up, 120, "the gateway to serve /xapi/about")
    auth = {"Authorization": "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode(),
            "X-Experience-API-Version": "1.0.3"}  # fmt: skip
    http = requests.Session()
    sid = str(uuid.uuid4())
    assert (
        http.put(f"{base}/xapi/statements", params={"statementId": sid}, json=statement(), headers=auth).status_code
        == 204
    )
    posted = http.post(f"{base}/xapi/statements", json=[statement(), statement()], headers=auth)
    assert posted.status_code == 200
    accepted_by = time.time() * 1000

    def consistent():
        r = http.get(f"{base}/xapi/statements", params={"verb": "http://example.com/none"}, headers=auth)
        return parse_ms(r.headers["X-Experience-API-Consistent-Through"]) >= accepted_by

    wait_for(consistent, 90, "X-Experience-API-Consistent-Through to pass the accepted statements")
    for i in [sid, *posted.json()]:
        r = http.get(f"{base}/xapi/statements", params={"statementId": i}, headers=auth)
        assert r.status_code == 200, (i, r.text)  # readable as promised, without waiting
        assert parse_ms(r.json()["stored"]) <= parse_ms(r.headers["X-Experience-API-Consistent-Through"])

    metrics = http.get(f"{base}/metrics").text
    assert 'learnpulse_gateway_requests_total{method="PUT",status="204"} 1.0' in metrics
    assert re.search(r"learnpulse_gateway_statements_total 3\.0", metrics)

    # Revoking the key locks it out within the reload interval (2 s), with nothing produced.
    assert "removed" in _cli(settings, "credentials", "remove", key)
    wait_for(lambda: http.get(f"{base}/xapi/statements", headers=auth).status_code == 401, 30, "revocation")
    assert http.post(f"{base}/xapi/statements", json=statement(), headers=auth).status_code == 401
    assert gw.stop() == 0, gw.tail()
