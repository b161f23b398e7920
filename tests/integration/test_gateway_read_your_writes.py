"""Read-your-writes by id (issue 16 part 6): a statement is readable by id the moment its
POST is answered, from every gateway, before any sink wrote it; voiding, school isolation
and the formats hold on that path; forget-learner leaves nothing readable by id of what it
erased (xAPI 1.0.3 Communication §2.1.3, §2.1.4).

A real ``learnpulse gateway --no-sinks`` process with real Kafka, the accepted-id index on
SQLite and on PostgreSQL, Debian's clickhouse-server; the statements sink runs only where
the test says so.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from learnpulse.settings import LrsStoreSettings, Settings
from producers.lrsstore.statement_index import SqlStatementIndex
from tests.conftest import Proc, wait_for
from tests.integration.test_gateway_exactly_once import (
    Client, _cli, _counts, _credential, _start_gateway, _statements_in_kafka, _with_port, pipeline,  # noqa: F401 - fixture
)  # fmt: skip
from tests.unit.gateway.harness import statement

VOIDED = {"id": "http://adlnet.gov/expapi/verbs/voided", "display": {"en-US": "voided"}}


def _voiding(target: str) -> dict:
    return statement(id=str(uuid.uuid4()), verb=VOIDED, object={"objectType": "StatementRef", "id": target})


@pytest.mark.kafka
@pytest.mark.clickhouse_server
@pytest.mark.slow
def test_statement_readable_by_id_at_once_before_any_sink_voiding_isolation_formats(
    pipeline: Settings, lrs_store_url: str, tmp_path: Path
):
    shared = pipeline.model_copy(update={"lrs_store": LrsStoreSettings(url=lrs_store_url)})
    _cli(shared, "db", "migrate")
    key, secret = _credential(shared, "ryw-school")
    other_key, other_secret = _credential(shared, "ryw-other")
    one, two = _with_port(shared), _with_port(shared)
    c1, c2 = Client(one, key, secret), Client(two, key, secret)
    stranger = Client(one, other_key, other_secret)
    gws = [_start_gateway(one, tmp_path / "gateway-1.log", c1), _start_gateway(two, tmp_path / "gateway-2.log", c2)]
    try:
        target = statement(id=str(uuid.uuid4()), actor={"mbox": "mailto:reader@example.com", "name": "Reader"})
        r = c1.post(target)
        assert r.status_code == 200, r.text
        # The first read after the answer, on either gateway: no sink runs, ClickHouse has nothing.
        for c in (c1, c2):
            got = c.get(statementId=target["id"])
            assert got.status_code == 200, got.text
            assert got.json()["id"] == target["id"] and got.json()["verb"] == target["verb"]
            assert "stored" in got.json() and got.headers["Last-Modified"]
        ids = c2.get(statementId=target["id"], format="ids").json()
        assert ids["actor"] == {"mbox": "mailto:reader@example.com"}  # no name
        canonical = c2.get(statementId=target["id"], format="canonical").json()
        assert canonical["verb"]["display"] == {"en-US": "completed"}  # one language
        # Another school's credential never sees it, by either parameter.
        assert stranger.get(statementId=target["id"]).status_code == 404
        assert stranger.get(voidedStatementId=target["id"]).status_code == 404
        assert c1.get(voidedStatementId=target["id"]).status_code == 404  # not voided

        # Voided through the other gateway, still before any sink: hidden by statementId,
        # found by voidedStatementId, on both gateways (Communication §2.1.4).
        voiding = _voiding(target["id"])
        assert c2.post(voiding).status_code == 200
        for c in (c1, c2):
            assert c.get(statementId=target["id"]).status_code == 404
            got = c.get(voidedStatementId=target["id"])
            assert got.status_code == 200 and got.json()["id"] == target["id"], got.text
            assert c.get(statementId=voiding["id"]).status_code == 200
            assert c.get(voidedStatementId=voiding["id"]).status_code == 404
        assert stranger.get(voidedStatementId=target["id"]).status_code == 404
        assert _counts(shared.clickhouse_url, [target["id"], voiding["id"]])["statements_raw"] == 0  # the sink is held back
    finally:
        for gw in gws:
            gw.stop()


@pytest.mark.kafka
@pytest.mark.clickhouse_server
@pytest.mark.slow
def test_forget_learner_leaves_no_statement_naming_them_readable_by_id(pipeline: Settings, tmp_path: Path):
    """ClickHouse erases every statement that names the learner anywhere (actor, object,
    instructor …) and its sinks drop such statements from then on; reads by id must not
    answer any of them from the index's copy: not those erased, not those not yet written
    when the erasure ran, not those accepted after it."""
    settings = _with_port(pipeline)
    _cli(settings, "db", "migrate")
    client = Client(settings, *_credential(settings, "erase-school"))
    gw = _start_gateway(settings, tmp_path / "gateway.log", client)
    forgotten = {"mbox": "mailto:forget.me@example.com"}
    teacher = {"mbox": "mailto:teacher@example.com"}

    def by_them() -> dict:
        return statement(id=str(uuid.uuid4()), actor=forgotten)

    def about_them() -> dict:
        return statement(id=str(uuid.uuid4()), actor=teacher, object={"objectType": "Agent", **forgotten})

    def unrelated() -> dict:
        return statement(id=str(uuid.uuid4()), actor=teacher)

    taught = statement(id=str(uuid.uuid4()), actor={"mbox": "mailto:peer@example.com"},
                       context={"instructor": {"objectType": "Agent", **forgotten}})  # fmt: skip
    sunk = [by_them(), about_them(), taught, unrelated()]
    pending = [about_them(), unrelated()]  # accepted while the sink is stopped
    later = [by_them(), about_them(), unrelated()]  # accepted after the erasure
    sink = None
    try:
        assert client.post(sunk).status_code == 200
        for st in sunk:
            assert client.get(statementId=st["id"]).status_code == 200
        sink = Proc(["sink", "--table", "statements"], settings, tmp_path / "sink-1.log")
        ids = [s["id"] for s in sunk]
        wait_for(lambda: _counts(settings.clickhouse_url, ids)["statements_raw FINAL"] == 4, 180, "4 rows sunk")
        assert sink.stop() == 0, sink.tail()
        sink = None
        assert client.post(pending).status_code == 200
        out = _cli(settings, "forget-learner", "mailto:forget.me@example.com", "--settle", "0")
        assert "statements erased: 3" in out, out
        # The gateway keeps running: nothing of it may still answer the erased statements,
        # and the index keeps no copy of them (its entries name only their actor).
        assert [client.get(statementId=s["id"]).status_code for s in sunk] == [404, 404, 404, 200]
        index = SqlStatementIndex.open(settings.lrs_store_url)
        try:
            assert index.get("erase-school", ids).keys() == {sunk[3]["id"]}
        finally:
            index.close()
        assert client.post(later).status_code == 200

        sink = Proc(["sink", "--table", "statements"], settings, tmp_path / "sink-2.log")
        kept = [pending[1]["id"], later[2]["id"]]
        wait_for(lambda: _counts(settings.clickhouse_url, kept)["statements_raw FINAL"] == 2, 180, "the others sunk")
        dropped = [pending[0]["id"], later[0]["id"], later[1]["id"]]
        assert _counts(settings.clickhouse_url, dropped)["statements_raw"] == 0  # the sink dropped them
        # Once the sink has passed them, reads by id answer what ClickHouse holds.
        wait_for(lambda: [client.get(statementId=sid).status_code for sid in dropped] == [404, 404, 404], 120,
                 "the statements the sink dropped to be 404 by id")  # fmt: skip
        assert [client.get(statementId=sid).status_code for sid in kept] == [200, 200]
    finally:
        if sink is not None:
            assert sink.stop() == 0, sink.tail()
        gw.stop()


@pytest.mark.kafka
@pytest.mark.clickhouse_server
@pytest.mark.slow
def test_index_drops_the_sunk_statements_and_still_reads_and_compares_them(pipeline: Settings, tmp_path: Path):
    """The accepted-id index must not grow by every statement's JSON: once the statements sink
    has a statement, the gateway drops the index's copy and keeps a comparison key. Reads by
    id then come from ClickHouse, and a re-sent id is still told same (204, nothing stored)
    from different (409), as xAPI Data §2.3.1 compares them."""
    settings = _with_port(pipeline)
    settings = settings.model_copy(update={"gateway": settings.gateway.model_copy(update={"index_prune_interval_s": 0.5})})
    _cli(settings, "db", "migrate")
    school = "prune-school"
    client = Client(settings, *_credential(settings, school))
    gw = _start_gateway(settings, tmp_path / "gateway.log", client)
    group = {"objectType": "Group", "name": "T", "member": [{"mbox": "mailto:a@example.com"}, {"mbox": "mailto:b@example.com"}]}
    batch = [
        statement(id=str(uuid.uuid4()), timestamp="2026-12-06T09:00:00.250+01:00", result={"score": {"raw": 3}}),
        statement(id=str(uuid.uuid4())),  # the gateway sets its timestamp
        statement(id=str(uuid.uuid4()), actor=group, context={"extensions": {"https://example.org/x": {"a": [1, 2]}}}),
    ]
    ids = [s["id"] for s in batch]
    index = SqlStatementIndex.open(settings.lrs_store_url)
    sink = None
    try:
        assert client.post(batch).status_code == 200
        assert all(e.body is not None for e in index.get(school, ids).values())  # no sink yet: kept
        sink = Proc(["sink", "--table", "statements"], settings, tmp_path / "sink.log")
        wait_for(lambda: _counts(settings.clickhouse_url, ids)["statements_raw FINAL"] == 3, 180, "3 rows sunk")
        wait_for(lambda: all(e.pruned for e in index.get(school, ids).values()) and len(index.get(school, ids)) == 3,
                 120, "the index to drop the sunk statements' copies")  # fmt: skip
        for st in batch:
            got = client.get(statementId=st["id"])
            assert got.status_code == 200 and got.json()["id"] == st["id"] and got.json()["verb"] == st["verb"], got.text

        # The same statements again: as sent, with the timestamp in another zone, the group's members reordered.
        assert client.post(batch).status_code == 204
        same_instant = dict(batch[0], timestamp="2026-12-06T08:00:00.250Z")
        reordered = dict(batch[2], actor=dict(group, member=group["member"][::-1]))
        assert client.put(same_instant, batch[0]["id"]).status_code == 204
        assert client.put(reordered, batch[2]["id"]).status_code == 204
        # Different content under the same ids.
        for changed in (dict(batch[0], result={"score": {"raw": 4}}), dict(batch[0], timestamp="2026-12-06T08:00:00.251Z"),
                        dict(batch[1], verb={"id": "http://adlnet.gov/expapi/verbs/failed"})):  # fmt: skip
            r = client.post([changed])
            assert r.status_code == 409 and "statement.conflict" in r.text, r.text
        assert sorted(_statements_in_kafka(settings).items()) == sorted((i, 1) for i in ids)  # nothing stored twice
    finally:
        index.close()
        if sink is not None:
            assert sink.stop() == 0, sink.tail()
        gw.stop()


@pytest.mark.kafka
@pytest.mark.clickhouse_server
def test_statements_acknowledged_behind_a_transaction_left_open_stay_readable_by_id(pipeline: Settings, tmp_path: Path):
    """A gateway killed mid-transaction leaves it open until Kafka aborts it (its transaction
    timeout). Meanwhile the sinks cannot read anything after it on its partitions, and the
    other gateways' acknowledged statements there must still be read by id from the index,
    not taken for written by the sink and looked for in ClickHouse.

    (Before: the sink measured its partitions' ends as the last stable offset, which stops at
    the open transaction, counted itself caught up past those acknowledgements, and reads by
    id of them answered 404 within two seconds.)
    """
    from kafka import KafkaProducer

    from schemas.topics import Topic

    settings = _with_port(pipeline)
    _cli(settings, "db", "migrate")
    key, secret = _credential(settings, "open-txn-school")
    client = Client(settings, key, secret)
    gw = _start_gateway(settings, tmp_path / "gateway.log", client)
    sink = Proc(["sink", "--table", "statements"], settings, tmp_path / "sink.log")
    topic = Topic.STATEMENTS.physical(settings.kafka.topic_prefix)
    killed = f"{settings.kafka.topic_prefix}killed-gateway-{uuid.uuid4().hex[:6]}"
    left_open = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, transaction_timeout_ms=120_000,
                              transactional_id=killed)  # fmt: skip
    try:
        warm = statement(id=str(uuid.uuid4()))
        assert client.post(warm).status_code == 200
        wait_for(lambda: _counts(settings.clickhouse_url, [warm["id"]])["statements_raw"] == 1, 120,
                 "the sink writing a first statement")  # fmt: skip
        left_open.init_transactions()
        left_open.begin_transaction()
        for partition in sorted(left_open.partitions_for(topic)):
            left_open.send(topic, partition=partition, value=b"never committed")
        left_open.flush(30)
        held = statement(id=str(uuid.uuid4()), actor={"mbox": "mailto:held@example.com"})
        assert client.post(held).status_code == 200
        # Several of the sink's batches and progress rounds, and the gateway's refreshes.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            got = client.get(statementId=held["id"])
            assert got.status_code == 200, (got.status_code, got.text)
            time.sleep(0.5)
        assert _counts(settings.clickhouse_url, [held["id"]])["statements_raw"] == 0  # the sink cannot read it yet
        left_open.abort_transaction()
        wait_for(lambda: _counts(settings.clickhouse_url, [held["id"]])["statements_raw"] == 1, 120,
                 "the sink writing the held statement once the open transaction ended")  # fmt: skip
        assert client.get(statementId=held["id"]).status_code == 200
    finally:
        left_open.close(10)
        assert sink.stop() == 0, sink.tail()
        gw.stop()
