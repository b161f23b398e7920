"""The document resources through real `learnpulse gateway` processes, on SQLite and PostgreSQL.

- Two gateway processes serve one school from one store (the shared SQLite file, or one
  PostgreSQL database) while writers race on the same documents with If-Match retry loops
  and merging POSTs: no update is ever lost.
- The rules through the real process, CORS with the origin allowed by the CLI, and
  `learnpulse forget-learner` erasing the learner's documents.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import threading
import time

import pytest
import requests

from learnpulse.commands.gateway import credentials_path
from learnpulse.credentials import add_credential
from learnpulse.local_secrets import pseudonym_key
from learnpulse.settings import ClickHouseSettings, LrsStoreSettings, Settings
from producers.lrsstore.documents import SqlDocumentStore
from schemas.identity import pseudonym
from schemas.lrs_store import DocumentKey, DocumentKind
from tests.conftest import REPO, free_port, wait_for

ACT = "http://example.com/activities/race"
AGENT = {"mbox": "mailto:racer@example.com"}
WRITERS_PER_GATEWAY = 3
INCREMENTS_PER_WRITER = 12
MERGES_PER_WRITER = 8
RACE_DEADLINE_S = 300


def _gateway_settings(base: Settings, tmp_path, i: int) -> Settings:
    # Each process its own chDB path (documents need no ClickHouse; chDB is one process per path).
    return base.model_copy(
        update={
            "clickhouse": ClickHouseSettings(url=f"chdb://{tmp_path / f'chdb{i}'}?database=d{i}"),
            "gateway": base.gateway.model_copy(update={"port": free_port()}),
            "metrics_port_base": free_port(),
        }
    )


def _start(spawn, settings: Settings, name: str):
    gw = spawn(["gateway", "--no-sinks"], settings, name)
    base = f"http://127.0.0.1:{settings.gateway.port}/xapi"

    def up():
        if gw.popen.poll() is not None:
            raise AssertionError(f"gateway exited {gw.popen.returncode}:\n{gw.tail()}")
        try:
            return requests.get(f"{base}/about", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    wait_for(up, 180, f"{name} to serve /xapi/about")
    return gw, base


def _auth(key: str, secret: str, version: str) -> dict[str, str]:
    token = base64.b64encode(f"{key}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {token}", "X-Experience-API-Version": version}


@pytest.mark.kafka
@pytest.mark.slow
def test_two_gateway_processes_racing_with_if_match_lose_no_update(tmp_path, kafka, lrs_store_url, spawn):
    base = Settings(home=tmp_path / "home", kafka=kafka, lrs_store=LrsStoreSettings(url=lrs_store_url),
                    log_level="WARNING")  # fmt: skip
    key, secret = add_credential(credentials_path(base), "race-school")
    urls = [_start(spawn, _gateway_settings(base, tmp_path, i), f"gateway{i}")[1] for i in range(2)]

    counters = [
        ("/activities/profile", {"activityId": ACT, "profileId": "counter"}, "2.0.0"),
        ("/activities/state", {"activityId": ACT, "agent": json.dumps(AGENT), "stateId": "counter"}, "1.0.3"),
    ]
    merge_doc = ("/agents/profile", {"agent": json.dumps(AGENT), "profileId": "merged"}, "2.0.0")
    # Create the counters through the first gateway.
    for path, params, version in counters:
        r = requests.put(urls[0] + path, params=params, data=b"0", headers={
            **_auth(key, secret, version), "Content-Type": "text/plain", "If-None-Match": "*"})  # fmt: skip
        assert r.status_code == 204, r.text

    successes = [0] * len(counters)
    conflicts = [0]
    failures: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + RACE_DEADLINE_S

    def writer(url: str, w: int) -> None:
        http = requests.Session()
        try:
            for i, (path, params, version) in enumerate(counters):
                headers = _auth(key, secret, version)
                done = 0
                while done < INCREMENTS_PER_WRITER and time.monotonic() < deadline:
                    got = http.get(url + path, params=params, headers=headers, timeout=30)
                    assert got.status_code == 200, got.text
                    put = http.put(url + path, params=params, data=str(int(got.content) + 1).encode(), timeout=30,
                                   headers={**headers, "Content-Type": "text/plain", "If-Match": got.headers["ETag"]})  # fmt: skip
                    if put.status_code == 204:
                        done += 1
                        with lock:
                            successes[i] += 1
                    elif put.status_code == 412:
                        with lock:
                            conflicts[0] += 1
                    else:
                        raise AssertionError(f"PUT answered {put.status_code}: {put.text}")
            path, params, version = merge_doc
            for n in range(MERGES_PER_WRITER):
                r = http.post(url + path, params=params, data=json.dumps({f"w{w}-{n}": n}), timeout=30,
                              headers={**_auth(key, secret, version), "Content-Type": "application/json"})  # fmt: skip
                assert r.status_code == 204, r.text
        except BaseException as err:  # noqa: BLE001 - reported by the test
            failures.append(repr(err))

    threads = [
        threading.Thread(target=writer, args=(urls[g], g * WRITERS_PER_GATEWAY + w))
        for g in range(2) for w in range(WRITERS_PER_GATEWAY)
    ]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join(RACE_DEADLINE_S + 60)
    assert not failures, failures
    writers = 2 * WRITERS_PER_GATEWAY
    # Every acknowledged increment is in the final value, read through either process.
    for i, (path, params, version) in enumerate(counters):
        for url in urls:
            final = requests.get(url + path, params=params, headers=_auth(key, secret, version))
            assert int(final.content) == successes[i], (path, successes, conflicts)
        assert successes[i] == writers * INCREMENTS_PER_WRITER  # none ran out of time
    path, params, version = merge_doc
    merged = requests.get(urls[1] + path, params=params, headers=_auth(key, secret, version)).json()
    assert merged == {f"w{w}-{n}": n for w in range(writers) for n in range(MERGES_PER_WRITER)}
    print(f"increments: {successes}, 412s retried: {conflicts[0]}")


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(
        [sys.executable, "-m", "learnpulse", *args], cwd=REPO, env={**os.environ, **settings.to_env()},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.mark.kafka
def test_document_rules_cors_and_forget_learner_through_the_gateway_process(tmp_path, kafka, sqlite_url, spawn):
    settings = _gateway_settings(
        Settings(home=tmp_path / "home", kafka=kafka, lrs_store=LrsStoreSettings(url=sqlite_url), log_level="WARNING"),
        tmp_path, 0,
    )  # fmt: skip
    origin = "http://course.example.org:8123"
    out = _cli(settings, "credentials", "add", "--school", "proc-school", "--allow-origin", origin)
    assert out.returncode == 0, out.stderr
    key = re.search(r"key:\s+(\S+)", out.stdout).group(1)
    secret = re.search(r"secret:\s+(\S+)", out.stdout).group(1)
    other = _cli(settings, "credentials", "add", "--school", "other-school")
    other_key = re.search(r"key:\s+(\S+)", other.stdout).group(1)
    other_secret = re.search(r"secret:\s+(\S+)", other.stdout).group(1)
    gw, url = _start(spawn, settings, "gateway")
    learner = {"mbox": "mailto:forget.me@example.com", "name": "Forget Me"}
    state = {"activityId": ACT, "agent": json.dumps(learner), "stateId": "resume"}
    profile = {"agent": json.dumps(learner), "profileId": "cmi5LearnerPreferences"}
    v1, v2 = _auth(key, secret, "1.0.3"), _auth(key, secret, "2.0.0")

    # State in 1.0.3: PUT without precondition overwrites; in 2.0 it is 409.
    assert requests.put(url + "/activities/state", params=state, json={"slide": 3}, headers=v1).status_code == 204
    assert requests.put(url + "/activities/state", params=state, json={"slide": 4}, headers=v1).status_code == 204
    r = requests.put(url + "/activities/state", params=state, json={"slide": 5}, headers=v2)
    assert r.status_code == 409 and r.json()["error"]["rule"] == "concurrency.precondition-required"
    got = requests.get(url + "/activities/state", params=state, headers=v2)
    assert got.json() == {"slide": 4} and re.fullmatch(r'"[0-9a-f]{40}"', got.headers["ETag"])
    assert requests.put(url + "/activities/state", params=state, json={"slide": 5},
                        headers={**v2, "If-Match": '"' + "1" * 40 + '"'}).status_code == 412  # fmt: skip
    assert requests.put(url + "/activities/state", params=state, json={"slide": 5},
                        headers={**v2, "If-Match": got.headers["ETag"]}).status_code == 204  # fmt: skip
    head = requests.head(url + "/activities/state", params=state, headers=v1)
    assert head.status_code == 200 and head.headers["Last-Modified"]
    # Binary Agent Profile, byte for byte; another school sees nothing.
    blob = bytes(range(256))
    assert requests.put(url + "/agents/profile", params=profile, data=blob,
                        headers={**v2, "Content-Type": "application/octet-stream", "If-None-Match": "*"}).status_code == 204  # fmt: skip
    got = requests.get(url + "/agents/profile", params=profile, headers=v2)
    assert got.content == blob and got.headers["Content-Type"] == "application/octet-stream"
    assert requests.get(url + "/agents/profile", params=profile,
                        headers=_auth(other_key, other_secret, "2.0.0")).status_code == 404  # fmt: skip
    # CORS: the origin allowed by the CLI is granted; others are not.
    pre = requests.options(url + "/activities/state", headers={
        "Origin": origin, "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "authorization,content-type,x-experience-api-version,if-match"})  # fmt: skip
    assert pre.status_code == 204 and pre.headers["Access-Control-Allow-Origin"] == origin
    pre = requests.options(url + "/statements", headers={"Origin": "http://elsewhere.example.org",
                                                        "Access-Control-Request-Method": "POST"})  # fmt: skip
    assert pre.status_code == 403 and "Access-Control-Allow-Origin" not in pre.headers
    r = requests.get(url + "/activities/state", params=state, headers={**v1, "Origin": origin})
    assert r.status_code == 200 and "ETag" in r.headers["Access-Control-Expose-Headers"]
    r = requests.get(url + "/activities/state", params=state,
                     headers={**_auth(other_key, other_secret, "1.0.3"), "Origin": origin})  # fmt: skip
    assert r.status_code == 403 and r.json()["error"]["rule"] == "cors.origin"

    # forget-learner erases the learner's State and Agent Profile (the gateway stopped: chDB is one process's).
    gw.stop()
    out = _cli(settings, "forget-learner", "mailto:forget.me@example.com", "--settle", "0")
    assert out.returncode == 0, out.stderr
    assert "LRS documents erased (State, Agent Profile): 2" in out.stdout
    store = SqlDocumentStore(sqlite_url)
    try:
        agent = pseudonym(pseudonym_key(settings), learner)
        key_of = DocumentKey("proc-school", DocumentKind.STATE, ACT, agent, "", "resume")
        assert store.get(key_of) is None
        assert store.list_ids("proc-school", DocumentKind.AGENT_PROFILE, "", agent, None, None) == []
    finally:
        store.close()
