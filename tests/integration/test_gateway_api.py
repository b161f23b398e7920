"""The Statements API on the real stack (Kafka, sinks, ClickHouse: chDB and the server).

Names cite the xAPI 1.0.3 section each test checks. The in-memory variants of these
checks are in tests/unit/gateway/test_gateway_app.py; here the store is ClickHouse and
Kafka is real, so conflicts, voids and filters are answered by the SQL of reporting.lrs.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid

import orjson
import pytest
from kafka import KafkaConsumer

from learnpulse.commands.gateway import build_gateway_app
from producers.gateway import multipart
from schemas.topics import Topic
from schemas.xapi.timefmt import parse_ms
from tests.conftest import wait_for
from tests.unit.gateway.harness import LiveGateway, ServedApp, statement


def _id() -> str:
    return str(uuid.uuid4())


def _committed_records(settings, isolation: str = "read_committed") -> list[bytes]:
    """Every record of xapi.statements visible at ``isolation`` (from the beginning)."""
    c = KafkaConsumer(
        Topic.STATEMENTS.physical(settings.kafka.topic_prefix),
        bootstrap_servers=settings.kafka.bootstrap_servers,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level=isolation,
        consumer_timeout_ms=3000,
    )
    try:
        return [m.value for m in c]
    finally:
        c.close()


def _wait_consistent_through(gw: LiveGateway, school: str, stored: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while gw.get({"limit": "1"}, key=school).headers["X-Experience-API-Consistent-Through"] < stored:
        assert time.monotonic() < deadline, f"Consistent-Through never reached {stored}"
        time.sleep(0.1)


class _Restarted(ServedApp):
    """A second gateway process on the same ClickHouse and the same accepted-id index."""

    def __init__(self, live: LiveGateway) -> None:
        # Its own transactional.id: reusing the first gateway's would fence that producer.
        g = live.settings.gateway.model_copy(update={"transactional_id": f"restarted-{uuid.uuid4().hex}"})
        self.app = build_gateway_app(live.settings.model_copy(update={"gateway": g}), live.ch, lambda _ch: None)
        self.config = self.gateway.config
        self.keys = live.keys

    def auth(self, school: str) -> str:
        return LiveGateway.auth(self, school)


@pytest.mark.kafka
def test_xapi_1_0_3_comm_2_1_1_conflicts_checked_on_another_gateway(settings):
    with LiveGateway(settings, ["a"]) as gw:
        sid = _id()
        assert gw.put(statement(), sid, key="a").status_code == 204
        assert gw.wait_readable("a", sid).status_code == 200
        # Readable by id comes from the accepted-id index: wait for the sink to have written it.
        wait_for(lambda: int(gw.ch.query("SELECT count() FROM {db}.statements_raw")[0][0]) >= 1, 120,
                 "the statement in ClickHouse")  # fmt: skip
        with _Restarted(gw) as again:
            r = again.put(statement(verb={"id": "http://adlnet.gov/expapi/verbs/failed"}), sid, key="a")
            assert r.status_code == 409, r.text
            assert again.post(statement(id=sid), key="a").status_code == 204  # same content: no-op
        time.sleep(2)  # anything wrongly produced would be sunk by now
        (n,) = gw.ch.query(
            "SELECT count() FROM {db}.statements_raw WHERE statement_id = toUUID({i:String})", {"i": sid}
        )
        assert int(n[0]) == 1
        assert len(_committed_records(settings)) == 1


@pytest.mark.kafka
def test_xapi_1_0_3_comm_2_1_3_filters_voiding_and_paging_answered_by_clickhouse(settings):
    with LiveGateway(settings, ["a", "b"]) as gw:
        reg = _id()
        ada = statement(context={"registration": reg, "instructor": {"mbox": "mailto:prof@example.com"},
                                 "contextActivities": {"parent": {"id": "http://example.com/courses/earth"}}})  # fmt: skip
        a1 = gw.post(ada, key="a").json()[0]
        bob = gw.post(statement(actor={"mbox": "mailto:bob@example.com"}), key="a").json()[0]
        target = gw.post(statement(object={"id": "http://example.com/activities/explosives"}), key="a").json()[0]
        ref = gw.post(
            {"actor": {"mbox": "mailto:andrew@example.com"}, "verb": {"id": "http://example.com/verbs/confirmed"},
             "object": {"objectType": "StatementRef", "id": target}}, key="a"
        ).json()[0]  # fmt: skip
        void = gw.post(
            {"actor": {"mbox": "mailto:prof@example.com"}, "verb": {"id": "http://adlnet.gov/expapi/verbs/voided"},
             "object": {"objectType": "StatementRef", "id": bob}}, key="a"
        ).json()[0]  # fmt: skip
        other_school = gw.post(statement(), key="b").json()[0]
        stored: dict[str, list[str]] = {"a": [], "b": []}
        for school, sid, voided in [("a", a1, False), ("a", target, False), ("a", ref, False), ("a", void, False),
                                    ("b", other_school, False), ("a", bob, True)]:  # fmt: skip
            r = gw.wait_readable(school, sid, voided=voided)
            assert r.status_code == 200
            stored[school].append(r.json()["stored"])
        # Queries answer what X-Experience-API-Consistent-Through covers (§2.1.3.s2.b5): wait for it.
        for school, times in stored.items():
            _wait_consistent_through(gw, school, max(times))

        def ids(school="a", **params):
            r = gw.get(params, key=school)
            assert r.status_code == 200, r.text
            return [s["id"] for s in r.json()["statements"]]

        # Voided statements are gone from queries; the voiding one is there (§2.1.4).
        assert set(ids()) == {a1, target, ref, void}
        assert gw.get({"statementId": bob}, key="a").status_code == 404
        # Tenancy: school b sees only its own statement, and none of a's by id.
        assert ids("b") == [other_school]
        assert gw.get({"statementId": a1}, key="b").status_code == 404
        assert gw.get({"voidedStatementId": bob}, key="b").status_code == 404
        # Filters (§2.1.3), including StatementRef targets (§2.1.3.s3).
        assert ids(agent=json.dumps({"mbox": "mailto:ada@example.com"})) == [ref, target, a1]
        assert ids(agent=json.dumps({"mbox": "mailto:prof@example.com"})) == [void]
        assert set(ids(agent=json.dumps({"mbox": "mailto:prof@example.com"}), related_agents="true")) == {void, a1}
        assert ids(activity="http://example.com/activities/explosives") == [ref, target]
        assert ids(activity="http://example.com/courses/earth") == []
        assert ids(activity="http://example.com/courses/earth", related_activities="true") == [a1]
        assert ids(registration=reg) == [a1]
        assert ids(verb="http://example.com/verbs/confirmed") == [ref]
        # §2.1.4.s1.b2: the voided statement is gone, the voiding one targeting it still matches its filters.
        assert ids(agent=json.dumps({"mbox": "mailto:bob@example.com"})) == [void]
        # Order, paging and time bounds.
        newest_first = ids()
        assert ids(ascending="true") == list(reversed(newest_first))
        first = gw.get({"limit": "2"}, key="a").json()
        assert [s["id"] for s in first["statements"]] == newest_first[:2] and first["more"]
        second = gw.http.get(f"http://127.0.0.1:{gw.port}{first['more']}", headers=gw.headers("a")).json()
        assert [s["id"] for s in second["statements"]] == newest_first[2:] and second["more"] == ""
        stored = {s["id"]: s["stored"] for s in gw.get(key="a").json()["statements"]}
        assert set(ids(since=stored[target])) == {s for s in newest_first if stored[s] > stored[target]}
        assert ref not in ids(until=stored[target])


@pytest.mark.kafka
def test_xapi_1_0_3_comm_2_1_3_s2_b5_consistent_through_covers_every_statement_a_query_returns(settings):
    started = time.time() * 1000
    with LiveGateway(settings, ["a"]) as gw:
        deadline = time.monotonic() + 60
        # Until this test's sink has published its progress, the header is the epoch (nothing is
        # promised) or, on a shared server, another test's progress: wait for this one's.
        while parse_ms(gw.get(key="a").headers["X-Experience-API-Consistent-Through"]) < started:
            assert time.monotonic() < deadline, "the sink never published its progress"
            time.sleep(0.1)
        posted = {gw.post(statement(), key="a").json()[0] for _ in range(3)}
        seen: set[str] = set()
        while not posted <= seen:  # poll from the moment of the POSTs until every one is returned
            assert time.monotonic() < deadline, f"never returned by a query: {posted - seen}"
            r = gw.get(key="a")
            assert r.status_code == 200, r.text
            through = r.headers["X-Experience-API-Consistent-Through"]
            for s in r.json()["statements"]:
                assert s["stored"] <= through, (s["id"], s["stored"], through)
                seen.add(s["id"])
            time.sleep(0.05)


@pytest.mark.kafka
def test_xapi_1_0_3_comm_1_5_2_attachment_content_stored_in_the_lrs_store_and_returned(settings):
    content = bytes(range(256)) * 40 + b"\r\n--not-the-boundary--\r\n"
    sha = hashlib.sha256(content).hexdigest()
    att = {"usageType": "http://example.com/usage/scan", "display": {"en-US": "scan"},
           "contentType": "application/octet-stream", "length": len(content), "sha2": sha}  # fmt: skip
    b = "b0undary"
    body = (
        f"--{b}\r\nContent-Type: application/json\r\n\r\n".encode() + orjson.dumps(statement(attachments=[att]))
        + f"\r\n--{b}\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n"
        f"X-Experience-API-Hash: {sha}\r\n\r\n".encode() + content + f"\r\n--{b}--".encode()
    )  # fmt: skip
    with LiveGateway(settings, ["a", "b"]) as gw:
        r = gw.http.post(
            gw.url, data=body, headers={**gw.headers("a"), "Content-Type": f"multipart/mixed; boundary={b}"}
        )
        assert r.status_code == 200, r.text
        sid = r.json()[0]
        assert gw.wait_readable("a", sid).status_code == 200
        r = gw.get({"statementId": sid, "attachments": "true"}, key="a")
        parts = multipart.parse(r.content, multipart.boundary_of(r.headers["Content-Type"]))
        assert orjson.loads(parts[0].body)["id"] == sid
        assert [(p.headers["x-experience-api-hash"], p.body) for p in parts[1:]] == [(sha, content)]
        # In the transactional store (writes need no ClickHouse), not in ClickHouse.
        assert gw.gateway.attachments.get("a", [sha]) == {sha: ("application/octet-stream", content)}
        assert gw.gateway.store.attachments("a", [sha]) == {}
        # Another school never gets a's attachment content, even naming its hash.
        assert gw.gateway.attachments.get("b", [sha]) == {}


@pytest.mark.kafka
def test_xapi_1_0_3_comm_4_0_wrong_credentials_401_nothing_reaches_kafka(settings):
    with LiveGateway(settings, ["a"]) as gw:
        key, _secret = gw.keys["a"]
        bad = {"Authorization": "Basic " + __import__("base64").b64encode(f"{key}:wrong".encode()).decode(),
               "X-Experience-API-Version": "1.0.3"}  # fmt: skip
        assert gw.http.post(gw.url, json=[statement(), statement()], headers=bad).status_code == 401
        assert gw.http.post(gw.url, json=statement(), headers={"X-Experience-API-Version": "1.0.3"}).status_code == 401
        assert _committed_records(settings, "read_uncommitted") == []


@pytest.mark.kafka
def test_batch_split_over_learners_is_one_kafka_transaction_all_or_nothing(settings):
    huge = statement(actor={"mbox": "mailto:zed@example.com"},
                     result={"extensions": {"http://example.com/ext/blob": "x" * (5 * 1024 * 1024)}})  # fmt: skip
    batch = [statement(actor={"mbox": f"mailto:learner{i}@example.com"}) for i in range(6)] + [huge]
    with LiveGateway(settings, ["a"]) as gw:
        r = gw.post(batch, key="a")
        # One statement cannot be written (over the statement limit, which keeps every
        # envelope within the topic's message size): the whole request fails, nothing is written.
        assert r.status_code == 413, r.text
        assert r.json()["error"]["rule"] == "statement.too-large"
        ok = gw.post(batch[:6], key="a")
        assert ok.status_code == 200
        for sid in ok.json():
            assert gw.wait_readable("a", sid).status_code == 200
        # Reads by id are answered from the accepted-id index: wait for the sink itself.
        wait_for(lambda: int(gw.ch.query("SELECT count() FROM {db}.statements_raw")[0][0]) >= 6, 60,
                 "the six statements in ClickHouse")  # fmt: skip
        time.sleep(2)  # anything of the refused request would be sunk by now
        (n,) = gw.ch.query("SELECT count() FROM {db}.statements_raw")
        assert int(n[0]) == 6
    committed = [s for v in _committed_records(settings) for s in orjson.loads(v)["statements"]]
    assert sorted(s["statement"]["id"] for s in committed) == sorted(ok.json())
