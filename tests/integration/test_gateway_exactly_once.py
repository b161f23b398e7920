"""Exactly once across gateway processes, crashes and a ClickHouse outage (issue 12 parts 1-2, issue 13 item 5).

Gateways run as real ``learnpulse gateway`` processes sharing the accepted-id index (a
SQLite file, or PostgreSQL); the sink is a ``learnpulse sink`` process writing to
Debian's clickhouse-server. What Kafka holds is read back with ``read_committed``: a
statement that reached Kafka twice would show there, whatever the tables collapse.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import orjson
import pytest
import requests

from learnpulse.settings import ClickHouseSettings, GatewaySettings, LrsStoreSettings, Settings
from learnpulse.stack import ClickHouseServer
from tests.conftest import Proc, REPO, free_port, free_port_block, wait_for
from tests.integration.test_gateway_api import _committed_records
from tests.unit.gateway.harness import statement


def _cli(settings: Settings, *args: str) -> str:
    res = subprocess.run(
        [sys.executable, "-m", "learnpulse", *args], check=False, cwd=REPO, env={**os.environ, **settings.to_env()},
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


class Client:
    """HTTP to one gateway process with one school's credential."""

    def __init__(self, settings: Settings, key: str, secret: str) -> None:
        self.base = f"http://127.0.0.1:{settings.gateway.port}/xapi"
        self.headers = {
            "Authorization": "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode(),
            "X-Experience-API-Version": "1.0.3",
        }
        self.http = requests.Session()

    def post(self, body) -> requests.Response:
        return self.http.post(f"{self.base}/statements", data=orjson.dumps(body),
                              headers={**self.headers, "Content-Type": "application/json"}, timeout=60)  # fmt: skip

    def put(self, body, sid: str) -> requests.Response:
        return self.http.put(f"{self.base}/statements", params={"statementId": sid}, data=orjson.dumps(body),
                             headers={**self.headers, "Content-Type": "application/json"}, timeout=60)  # fmt: skip

    def get(self, **params: str) -> requests.Response:
        return self.http.get(f"{self.base}/statements", params=params, headers=self.headers, timeout=60)

    def up(self) -> bool:
        try:
            return requests.get(f"{self.base}/about", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False


def _credential(settings: Settings, school: str) -> tuple[str, str]:
    out = _cli(settings, "credentials", "add", "--school", school)
    return re.search(r"key:\s+(\S+)", out).group(1), re.search(r"secret:\s+(\S+)", out).group(1)


def _with_port(settings: Settings) -> Settings:
    return settings.model_copy(update={"gateway": GatewaySettings(port=free_port(), kafka_timeout_s=30)})


def _start_gateway(settings: Settings, log: Path, client: Client) -> Proc:
    gw = Proc(["gateway", "--no-sinks"], settings, log)

    def up():
        if gw.popen.poll() is not None:
            raise AssertionError(f"gateway exited {gw.popen.returncode}:\n{gw.tail()}")
        return client.up()

    wait_for(up, 120, "the gateway to serve /xapi/about")
    return gw


def _statements_in_kafka(settings: Settings) -> Counter[str]:
    return Counter(s["statement"]["id"] for v in _committed_records(settings) for s in orjson.loads(v)["statements"])


def _batch(n: int) -> list[dict]:
    return [statement(id=str(uuid.uuid4()), actor={"mbox": f"mailto:learner{i % 7}@example.com"}) for i in range(n)]


def _counts(ch_url: str, ids: list[str]) -> dict[str, int]:
    from sinks.engines import engine_from_url

    ch = engine_from_url(ch_url)
    try:
        quoted = ",".join(f"toUUID('{i}')" for i in ids)
        out = {}
        for name, sql in {
            "statements_raw": "SELECT count() FROM {db}.statements_raw WHERE statement_id IN (%s)",
            "statements_raw FINAL": "SELECT count() FROM {db}.statements_raw FINAL WHERE statement_id IN (%s)",
            "lrs_statements": "SELECT count() FROM {db}.lrs_statements WHERE statement_id IN (%s)",
            "lrs_statements FINAL": "SELECT count() FROM {db}.lrs_statements FINAL WHERE statement_id IN (%s)",
            "xapi_events_all": "SELECT count() FROM {db}.xapi_events_all WHERE event_id IN (%s)",
            "statements FINAL": "SELECT count() FROM {db}.statements FINAL WHERE statement_id IN (%s)",
        }.items():
            (row,) = ch.query(sql % quoted)
            out[name] = int(row[0])
        return out
    finally:
        ch.close()


def _every_table_reaches(ch_url: str, ids: list[str], n: int) -> bool:
    """Whether every table counted by ``_counts`` holds at least ``n`` of ``ids``: the sink writes
    ``statements_raw`` first and the other tables after it (some side by side), so one table
    reaching ``n`` says nothing of the others yet. More than ``n`` is left to the caller's assert."""
    return min(_counts(ch_url, ids).values()) >= n


@pytest.fixture
def pipeline(tmp_path: Path, kafka, server_url: str) -> Settings:
    return Settings(
        home=tmp_path / "home",
        kafka=kafka,
        clickhouse=ClickHouseSettings(url=server_url),
        lrs_store=LrsStoreSettings(url=f"sqlite:///{tmp_path / 'lrs-store.sqlite3'}"),
        metrics_port_base=free_port_block(16),
        log_level="WARNING",
    )


@pytest.mark.kafka
@pytest.mark.clickhouse_server
@pytest.mark.slow
def test_gateway_retry_across_sigkill_is_not_stored_again_and_readable_at_once(pipeline: Settings, tmp_path: Path):
    settings = _with_port(pipeline)
    _cli(settings, "db", "migrate")
    client = Client(settings, *_credential(settings, "crash-school"))
    batch = _batch(20)
    ids = [s["id"] for s in batch]
    gw = _start_gateway(settings, tmp_path / "gateway-1.log", client)
    # No sink runs yet: ClickHouse has none of them ("the sink is behind").
    r = client.post(batch)
    assert r.status_code == 200, r.text
    assert r.json() == ids
    # Read-your-writes: every id readable right after the answer, no sink needed.
    for sid in ids[:5]:
        got = client.get(statementId=sid)
        assert got.status_code == 200 and got.json()["id"] == sid, got.text
    gw.kill()  # SIGKILL

    gw = _start_gateway(settings, tmp_path / "gateway-2.log", client)
    again = client.post(batch)
    assert again.status_code == 204, again.text  # every statement existed, identical: nothing stored
    changed = dict(batch[0], verb={"id": "http://adlnet.gov/expapi/verbs/failed"})
    assert client.post([changed]).status_code == 409
    for sid in ids:
        assert client.get(statementId=sid).status_code == 200
    assert sorted(_statements_in_kafka(settings).items()) == sorted((i, 1) for i in ids)

    sink = Proc(["sink", "--table", "statements"], settings, tmp_path / "sink.log")
    try:
        wait_for(lambda: _every_table_reaches(settings.clickhouse_url, ids, 20), 180, "20 rows sunk in every table")
        counts = _counts(settings.clickhouse_url, ids)
        assert counts == dict.fromkeys(counts, 20), counts
    finally:
        assert sink.stop() == 0, sink.tail()
        gw.stop()
    # forget-learner erases the learner's index entries too: no longer readable by id anywhere.
    out = _cli(settings, "forget-learner", "mailto:learner0@example.com", "--settle", "0")
    assert "LRS statement index entries erased: 3" in out, out  # learners 0..6 over 20 statements
    gw = _start_gateway(settings, tmp_path / "gateway-3.log", client)
    try:
        assert client.get(statementId=ids[0]).status_code == 404
        assert client.get(statementId=ids[1]).status_code == 200
    finally:
        gw.stop()


@contextlib.contextmanager
def _two_gateways(pipeline: Settings, lrs_store_url: str, tmp_path: Path, school: str):
    """Two gateway processes on one LRS store and one Kafka; (settings, a client of each)."""
    shared = pipeline.model_copy(update={"lrs_store": LrsStoreSettings(url=lrs_store_url)})
    _cli(shared, "db", "migrate")
    key, secret = _credential(shared, school)
    one, two = _with_port(shared), _with_port(shared)
    clients = [Client(one, key, secret), Client(two, key, secret)]
    gws = [_start_gateway(s, tmp_path / f"gateway-{n}.log", c) for n, (s, c) in enumerate(zip((one, two), clients))]
    try:
        yield shared, clients
    finally:
        for gw in gws:
            gw.stop()


def _at_once(*calls) -> None:
    """Run ``calls`` in threads released together (a barrier), and wait for every one."""
    barrier = threading.Barrier(len(calls))

    def run(call) -> None:
        barrier.wait()
        call()

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)


def _race_puts(clients: list[Client], batch: list[dict]) -> list[int]:
    """PUT each statement to every gateway at the same instant; every status."""
    statuses: list[int] = []
    lock = threading.Lock()
    for st in batch:

        def put(c: Client, st=st) -> None:
            code = c.put(st, st["id"]).status_code
            with lock:
                statuses.append(code)

        _at_once(*(lambda c=c: put(c) for c in clients))
    return statuses


@pytest.mark.kafka
@pytest.mark.clickhouse_server
@pytest.mark.slow
def test_two_gateway_processes_racing_on_the_same_ids_store_each_once(
    pipeline: Settings, lrs_store_url: str, tmp_path: Path
):
    with _two_gateways(pipeline, lrs_store_url, tmp_path, "race-school") as (shared, clients):
        batch = _batch(25)
        statuses = _race_puts(clients, batch)
        assert statuses == [204] * 50, Counter(statuses)
        in_kafka = _statements_in_kafka(shared)
        assert sorted(in_kafka.items()) == sorted((s["id"], 1) for s in batch)  # exactly one NEW per id
        # Each gateway answers reads by id of what the other accepted, at once.
        for n, st in enumerate(batch):
            got = clients[n % 2].get(statementId=st["id"])
            assert got.status_code == 200 and got.json()["id"] == st["id"]
        # And a conflicting copy is refused by either.
        changed = dict(batch[0], verb={"id": "http://adlnet.gov/expapi/verbs/failed"})
        assert [c.put(changed, changed["id"]).status_code for c in clients] == [409, 409]


def _race_different_puts(clients: list[Client], pairs: list[tuple[dict, dict]]) -> list[tuple[int, int]]:
    """PUT two different statements with one id, one to each gateway, at the same instant.

    A 503 (the other gateway holds the id: ``statement.held``) is retried as a client would,
    until the answer is final; the final statuses, per pair."""
    out: list[tuple[int, int]] = []
    for pair in pairs:
        final = [0, 0]

        def put(n: int, st: dict) -> None:
            deadline = time.monotonic() + 120
            code = clients[n].put(st, st["id"]).status_code
            while code == 503 and time.monotonic() < deadline:
                time.sleep(0.2)
                code = clients[n].put(st, st["id"]).status_code
            final[n] = code

        _at_once(*(lambda n=n, st=st: put(n, st) for n, st in enumerate(pair)))
        out.append((final[0], final[1]))
    return out


@pytest.mark.kafka
@pytest.mark.clickhouse_server
@pytest.mark.slow
def test_two_gateways_given_different_statements_with_one_id_at_once_keep_one_and_refuse_the_other(
    pipeline: Settings, lrs_store_url: str, tmp_path: Path
):
    with _two_gateways(pipeline, lrs_store_url, tmp_path, "conflict-school") as (shared, clients):
        pairs = [
            (st, dict(st, verb={"id": "http://adlnet.gov/expapi/verbs/failed", "display": {"en-US": "failed"}}))
            for st in _batch(20)
        ]
        finals = _race_different_puts(clients, pairs)
        # Never two silently diverging copies: one gateway stores its statement, the other is refused.
        assert all(sorted(f) == [204, 409] for f in finals), Counter(finals)
        committed = {
            s["statement"]["id"]: s["statement"] for v in _committed_records(shared) for s in orjson.loads(v)["statements"]
        }
        assert Counter(s["statement"]["id"] for v in _committed_records(shared) for s in orjson.loads(v)["statements"]) \
            == Counter({a["id"]: 1 for a, _b in pairs})  # one copy per id in Kafka
        for (a, b), (code_a, _code_b) in zip(pairs, finals):
            kept = a if code_a == 204 else b
            assert committed[a["id"]]["verb"]["id"] == kept["verb"]["id"]  # the one answered 204
            for c in clients:  # both gateways read back the kept one
                assert c.get(statementId=a["id"]).json()["verb"]["id"] == kept["verb"]["id"]


@pytest.fixture
def own_clickhouse(tmp_path: Path, kafka) -> Settings:
    """A clickhouse-server of this test's own, to stop and start."""
    home = tmp_path / "home"
    settings = Settings(
        home=home,
        kafka=kafka,
        clickhouse=ClickHouseSettings(server_tcp_port=free_port(), server_http_port=free_port()),
        lrs_store=LrsStoreSettings(url=f"sqlite:///{tmp_path / 'lrs-store.sqlite3'}"),
        metrics_port_base=free_port_block(16),
        log_level="WARNING",
    )
    server = ClickHouseServer(settings)
    server.up(timeout=120)
    settings = settings.model_copy(update={"clickhouse": settings.clickhouse.model_copy(update={"url": server.url})})
    yield settings
    server.stop()


@pytest.mark.kafka
@pytest.mark.clickhouse_server
@pytest.mark.slow
def test_writes_accepted_while_clickhouse_is_down_then_arrive_exactly_once(own_clickhouse: Settings, tmp_path: Path):
    settings = _with_port(own_clickhouse)
    _cli(settings, "db", "migrate")
    client = Client(settings, *_credential(settings, "outage-school"))
    gw = _start_gateway(settings, tmp_path / "gateway.log", client)
    sink = Proc(["sink", "--table", "statements"], settings, tmp_path / "sink.log")
    server = ClickHouseServer(settings)
    try:
        before = _batch(5)
        assert client.post(before).status_code == 200
        wait_for(lambda: _counts(settings.clickhouse_url, [s["id"] for s in before])["statements_raw FINAL"] == 5,
                 180, "the first statements sunk")  # fmt: skip

        server.stop()
        during = _batch(20)
        r = client.post(during)
        assert r.status_code == 200, r.text  # Kafka holds them; no ClickHouse on the write path
        one = statement(id=str(uuid.uuid4()))
        assert client.put(one, one["id"]).status_code == 204
        assert client.post(during).status_code == 204  # a retry is recognised without ClickHouse
        for st in [*during, one]:
            got = client.get(statementId=st["id"])  # read-your-writes, ClickHouse down
            assert got.status_code == 200 and got.json()["id"] == st["id"], got.text
        query = client.get(limit="5")
        assert query.status_code == 503 and query.json()["error"]["rule"] == "store.unavailable"

        server.up(timeout=120)
        everything = [s["id"] for s in [*before, *during, one]]
        wait_for(lambda: _every_table_reaches(settings.clickhouse_url, everything, 26), 300,
                 "every statement sunk in every table once ClickHouse is back")  # fmt: skip
        counts = _counts(settings.clickhouse_url, everything)
        assert counts == dict.fromkeys(counts, 26), counts
        assert sorted(_statements_in_kafka(settings).items()) == sorted((i, 1) for i in everything)
    finally:
        assert sink.stop() == 0, sink.tail()
        gw.stop()


@pytest.mark.kafka
def test_forget_learner_erases_index_entries_and_lrs_store_attachment_contents(tmp_path: Path, kafka, chdb_url):
    import hashlib

    from producers.lrsstore.attachments import SqlAttachmentStore
    from producers.lrsstore.statement_index import SqlStatementIndex
    from tests.unit.gateway.harness import LiveGateway

    store_url = f"sqlite:///{tmp_path / 'lrs-store.sqlite3'}"
    settings = Settings(home=tmp_path / "home", kafka=kafka, clickhouse=ClickHouseSettings(url=chdb_url),
                        lrs_store=LrsStoreSettings(url=store_url), metrics_port_base=free_port_block(16),
                        log_level="WARNING")  # fmt: skip
    content = b"the learner's own report\n" * 50
    sha = hashlib.sha256(content).hexdigest()
    att = {"usageType": "http://example.com/usage/report", "display": {"en-US": "report"},
           "contentType": "text/plain", "length": len(content), "sha2": sha}  # fmt: skip
    mine = statement(id=str(uuid.uuid4()), actor={"mbox": "mailto:erase.me@example.com"}, attachments=[att])
    other = statement(id=str(uuid.uuid4()), actor={"mbox": "mailto:stays@example.com"})
    b = "b0undary"
    body = (
        f"--{b}\r\nContent-Type: application/json\r\n\r\n".encode() + orjson.dumps([mine, other])
        + f"\r\n--{b}\r\nContent-Type: text/plain\r\nX-Experience-API-Hash: {sha}\r\n\r\n".encode()
        + content + f"\r\n--{b}--".encode()
    )  # fmt: skip
    with LiveGateway(settings, ["f"]) as gw:
        r = gw.http.post(gw.url, data=body, headers={**gw.headers("f"), "Content-Type": f"multipart/mixed; boundary={b}"})
        assert r.status_code == 200, r.text
        for sid in (mine["id"], other["id"]):
            assert gw.wait_readable("f", sid).status_code == 200
        # Let the sinks write them (forget erases what ClickHouse holds too).
        wait_for(lambda: int(gw.ch.query("SELECT count() FROM {db}.statements_raw")[0][0]) == 2, 120, "sunk")
    out = _cli(settings, "forget-learner", "mailto:erase.me@example.com", "--settle", "0")
    assert "LRS statement index entries erased: 1" in out, out
    assert "LRS store attachment contents erased: 1" in out, out
    index, attachments = SqlStatementIndex.open(store_url), SqlAttachmentStore.open(store_url)
    try:
        assert index.get("f", [mine["id"], other["id"]]).keys() == {other["id"]}
        assert attachments.get("f", [sha]) == {}
    finally:
        index.close()
        attachments.close()
