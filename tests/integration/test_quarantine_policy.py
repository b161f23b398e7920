"""Issue 14 on the real stack (Kafka, sinks, ClickHouse on chDB and the server).

Open edX-shaped statements of each defect kind (tests/openedx_shapes.py) through the
real gateway and the real file replay: a strict credential refuses them and they land
in the quarantine with their reasons; once the credential tolerates the Open edX rules,
`quarantine replay` stores each exactly once, unchanged, with its rule ids beside it;
a second replay changes nothing.
"""

from __future__ import annotations

import copy
import time

import orjson
import pytest

from learnpulse.commands.gateway import credentials_path
from learnpulse.commands.quarantine import quarantine_replay
from learnpulse.credentials import update_credential
from learnpulse.pipeline import make_publisher
from producers.quarantine import kafka_quarantine_writer
from producers.replay import Replayer, ReplayOptions
from reporting.quarantine import Filter, list_items, refusals_per_school, show, stats_by_producer, stats_by_rule
from schemas.policy import OPENEDX_RULES, IngestPolicy
from schemas.quarantine import redrive_statement_id
from schemas.topics import Topic
from tests.conftest import wait_for
from tests.integration.test_producers_bridge import ralph, ralph_python  # noqa: F401  (fixtures)
from tests.openedx_shapes import KINDS, fresh
from tests.unit.gateway.harness import LiveGateway

TOLERANT = IngestPolicy("tolerant", OPENEDX_RULES)


def _records(gw: LiveGateway, school: str, state: str = "") -> list:
    return list_items(gw.ch, Filter(school=school, state=state), limit=1000)


def _accepted(gw: LiveGateway, doc) -> int:
    """POST until the answer is not a 503 (Kafka's transactional producer may still be starting on a
    busy machine: a 503 with Retry-After is the right answer then); the final status."""
    deadline = time.monotonic() + 120
    while True:
        r = gw.post(doc, key="edx")
        if r.status_code != 503 or time.monotonic() > deadline:
            return r.status_code
        time.sleep(1)


def _dashboard_refused(gw: LiveGateway) -> dict[str, int]:
    from reporting.dashboard import dashboard_state
    from reporting.scope import EVERY_SCHOOL

    return {s["school"]: s["refused"] for s in dashboard_state(gw.ch, EVERY_SCHOOL)["schools"]}


def _copies(gw: LiveGateway, table: str, ids: list[str]) -> int:
    """Rows of ``table`` for these statement ids, without FINAL: a copy would count twice."""
    (n,) = gw.ch.query(
        f"SELECT count() FROM {gw.ch.database}.{table} WHERE has({{ids:Array(String)}}, lower(toString(statement_id)))",
        {"ids": [i.lower() for i in ids]},
    )[0]
    return int(n)


@pytest.mark.kafka
def test_gateway_strict_refuses_and_quarantines_then_replay_after_policy_change_accepts_once(settings):
    with LiveGateway(settings, ["edx", "other"]) as gw:
        key = gw.keys["edx"][0]
        sent: dict[str, dict] = {kind: fresh(kind) for kind in KINDS}
        no_id = fresh("object_without_id")
        del no_id["id"]
        for kind, doc in sent.items():
            r = gw.post(doc, key="edx")
            assert r.status_code == 400, r.text
            assert (r.json()["error"]["rule"], r.json()["error"]["path"]) == KINDS[kind][1][0]
        assert gw.post(no_id, key="edx").status_code == 400
        # A refused batch is one record holding the raw body and every violation in it.
        batch = [fresh("group_object"), fresh("zero_weight_score")]
        assert gw.post(batch, key="edx").status_code == 400
        # A valid statement next to it is accepted as ever.
        ok = fresh("group_object")
        ok["object"]["objectType"] = "Activity"
        assert _accepted(gw, ok) == 200

        n_records = len(KINDS) + 2
        wait_for(lambda: len(_records(gw, "edx")) == n_records, 90, "quarantine records in ClickHouse")
        items = _records(gw, "edx")
        assert {i.credential for i in items} == {key} and {i.stage for i in items} == {"gateway"}
        assert {i.state for i in items} == {"refused"}
        [batch_item] = [i for i in items if len(i.rules) == 2 and "activity.id.iri" not in i.rules
                        and i.rules[0] == "objectType.value" and i.rules[1] == "result.score.min-max.equal"
                        and show(gw.ch, i.record_id).paths[0].startswith("$[0]")]  # fmt: skip
        record = show(gw.ch, batch_item.record_id)
        assert orjson.loads(record.body) == batch
        assert list(zip(record.rules, record.paths)) == [
            ("objectType.value", "$[0].object.objectType"), ("result.score.min-max.equal", "$[1].result.score.min")
        ]  # fmt: skip
        by_rule = {(s, r): n for s, r, n, _ in stats_by_rule(gw.ch, Filter(school="edx"))}
        assert by_rule[("edx", "objectType.value")] == 4  # group_object, group_parent, group_and_zero, batch
        assert stats_by_producer(gw.ch, Filter(school="edx"))[0][:4] == ("edx", key, "gateway", n_records)
        assert refusals_per_school(gw.ch)["edx"] == (n_records, n_records)
        gw.wait_readable("edx", ok["id"])
        wait_for(lambda: "edx" in _dashboard_refused(gw), 90, "the school on the dashboard")
        assert _dashboard_refused(gw)["edx"] == n_records
        assert gw.get({"statementId": sent["group_object"]["id"]}, key="edx").status_code == 404

        # The operator makes the credential tolerant: new traffic is accepted, stored unchanged.
        update_credential(credentials_path(settings), key, policy=TOLERANT)
        gw.gateway.auth._reload(force=True)
        live = fresh("group_parent")
        assert _accepted(gw, live) == 200, "tolerant credential refused"
        got = gw.wait_readable("edx", live["id"]).json()
        assert got["context"]["contextActivities"]["parent"][0]["objectType"] == "GroupActivity"

        # Re-drive: every refused statement accepted once, the one without id under a derived id.
        counts = quarantine_replay(settings, gw.ch, Filter(school="edx"))
        assert (counts.records, counts.accepted_records, counts.still_refused) == (n_records, n_records, 0)
        assert counts.sent == len(KINDS) + 3
        derived = redrive_statement_id(next(i.record_id for i in items if i.record_id and
                                            orjson.loads(show(gw.ch, i.record_id).body) == no_id), 0)  # fmt: skip
        ids = [d["id"] for d in sent.values()] + [b["id"] for b in batch] + [derived]
        for sid in ids:
            r = gw.wait_readable("edx", sid)
            assert r.status_code == 200, sid
        stored = gw.get({"statementId": sent["group_and_zero_weight"]["id"]}, key="edx").json()
        original = copy.deepcopy(sent["group_and_zero_weight"])
        assert {k: v for k, v in stored.items() if k not in ("stored", "authority")} == original
        rows = dict(gw.ch.query(
            f"SELECT toString(statement_id), violations FROM {gw.ch.database}.statements FINAL "
            "WHERE school = 'edx' AND has({ids:Array(String)}, lower(toString(statement_id)))",
            {"ids": [i.lower() for i in ids]},
        ))  # fmt: skip
        assert sorted(rows[sent["group_and_zero_weight"]["id"]]) == ["objectType.value", "result.score.min-max.equal"]
        assert rows[sent["bare_guid_grouping"]["id"]] == ["activity.id.iri"]
        wait_for(lambda: len(_records(gw, "edx", "accepted")) == n_records, 90, "records marked accepted")
        assert refusals_per_school(gw.ch)["edx"] == (n_records, 0)
        assert _dashboard_refused(gw)["edx"] == 0

        # A second replay finds nothing to do; nothing is stored twice.
        again = quarantine_replay(settings, gw.ch, Filter(school="edx"))
        assert (again.records, again.sent) == (0, 0)
        time.sleep(2)  # anything wrongly produced would be sunk by now
        assert _copies(gw, "statements_raw", ids) == len(ids)
        assert _copies(gw, "statements", ids) == len(ids)
        assert "other" not in refusals_per_school(gw.ch)


@pytest.mark.kafka
def test_file_replay_strict_quarantines_rejects_tolerant_stores_with_rule_ids(settings, tmp_path):
    with LiveGateway(settings, ["edx"]) as gw:
        key = gw.keys["edx"][0]
        docs = [fresh(kind) for kind in sorted(KINDS)]
        path = tmp_path / "openedx.jsonl"
        path.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in docs) + b"{not json\n")
        k = settings.kafka

        def run(policy: IngestPolicy, name: str):
            writer, _ = kafka_quarantine_writer(k.bootstrap_servers, Topic.QUARANTINE.physical(k.topic_prefix),
                                                "replay")  # fmt: skip
            publisher = make_publisher(settings, "replay")
            opts = ReplayOptions(school="edx", rejects_path=tmp_path / f"{name}.rejects", state_path=tmp_path / name,
                                 policy=policy, credential=key)  # fmt: skip
            replayer = Replayer(publisher, opts, quarantine=writer)
            try:
                return replayer.run([path])[str(path)]
            finally:
                replayer.close()
                writer.close()
                publisher.producer.close()

        strict = run(IngestPolicy(), "strict")
        assert (strict.sent, strict.rejected) == (0, len(docs) + 1)
        wait_for(lambda: len(_records(gw, "edx")) == len(docs) + 1, 90, "replay rejects quarantined")
        items = _records(gw, "edx")
        assert {i.stage for i in items} == {"replay"} and {i.credential for i in items} == {key}
        assert sorted(i.rules[0] for i in items) == sorted([KINDS[k][1][0][0] for k in sorted(KINDS)] + ["json.parse"])

        tolerant = run(TOLERANT, "tolerant")
        assert (tolerant.sent, tolerant.rejected) == (len(docs), 1)
        for d in docs:
            assert gw.wait_readable("edx", d["id"]).status_code == 200
        rows = dict(gw.ch.query(
            f"SELECT toString(statement_id), violations FROM {gw.ch.database}.statements FINAL WHERE school = 'edx'"
        ))  # fmt: skip
        for kind, d in zip(sorted(KINDS), docs, strict=True):
            assert sorted(rows[d["id"]]) == sorted({r for r, _ in KINDS[kind][1]})


@pytest.mark.kafka
def test_bridge_from_ralph_strict_quarantines_tolerant_stores_with_rule_ids(settings, tmp_path, ralph):
    """Ralph (Aspects' LRS) accepts Open edX's shapes; bridging them follows our policy."""
    from producers.lrs_bridge import BridgeOptions, LrsBridge
    from producers.tincan_compat import StatementsClient
    from tests.integration.test_producers_bridge import PASSWORD, USER

    # Ralph refuses an object without id itself; every other kind it stores.
    kinds = [k for k in sorted(KINDS) if k != "object_without_id"]
    docs = [fresh(k) for k in kinds]
    ralph.post(docs)
    assert {s["id"] for s in ralph.stored()} == {d["id"] for d in docs}
    with LiveGateway(settings, ["edx"]) as gw:
        key = gw.keys["edx"][0]
        k = settings.kafka

        def run(policy: IngestPolicy, name: str):
            writer, _ = kafka_quarantine_writer(k.bootstrap_servers, Topic.QUARANTINE.physical(k.topic_prefix),
                                                "bridge")  # fmt: skip
            publisher = make_publisher(settings, "bridge")
            client = StatementsClient(endpoint=ralph.url, username=USER, password=PASSWORD, version="1.0.3")
            opts = BridgeOptions(school="edx", cursor_path=tmp_path / f"{name}.cursor",
                                 rejects_path=tmp_path / f"{name}.rejects", use_since=False, policy=policy,
                                 credential=key)  # fmt: skip
            bridge = LrsBridge(client, publisher, opts, quarantine=writer)
            try:
                return bridge.run(once=True)
            finally:
                bridge.close()
                writer.close()
                publisher.producer.close()

        strict = run(IngestPolicy(), "strict")
        assert (strict.sent, strict.rejected) == (0, len(docs))
        wait_for(lambda: len(_records(gw, "edx")) == len(docs), 90, "bridge rejects quarantined")
        items = _records(gw, "edx")
        assert {i.stage for i in items} == {"bridge"} and {i.credential for i in items} == {key}
        assert sorted(i.rules[0] for i in items) == sorted(KINDS[kd][1][0][0] for kd in kinds)

        tolerant = run(TOLERANT, "tolerant")
        assert (tolerant.sent, tolerant.rejected) == (len(docs), 0)
        for d in docs:
            assert gw.wait_readable("edx", d["id"]).status_code == 200
        rows = dict(gw.ch.query(
            f"SELECT toString(statement_id), violations FROM {gw.ch.database}.statements FINAL WHERE school = 'edx'"
        ))  # fmt: skip
        for kind, d in zip(kinds, docs, strict=True):
            assert sorted(rows[d["id"]]) == sorted({r for r, _ in KINDS[kind][1]})
