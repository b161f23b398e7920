"""Erasing a learner (GDPR) on both engines, while the sinks keep running, and after a replay."""

from __future__ import annotations

import random
import re
import time
import uuid

import orjson
import pytest

from learnpulse.local_secrets import pseudonym_key
from schemas.envelope import StatementEntry, StatementEnvelope
from schemas.errors import InvalidStatement
from schemas.quarantine import QuarantineRecord
from schemas.records import AlertRecord, EngagementRecord, MasteryRecord
from schemas.topics import Topic
from sinks.forget import forget_learners, pseudonyms_for
from tests.conftest import Proc
from tests.integration.test_sinks_statements import (
    BASE_MS,
    Publisher,
    agent,
    envelope,
    learner_of,
    make_statement,
    running_sinks,
    scalar,
    wait_committed,
)
from tests.integration.test_sinks_totals import assert_totals_exact

SINKS = ["statements", "engagement", "mastery", "alerts"]
TOPICS = [Topic.STATEMENTS, Topic.ENGAGEMENT, Topic.MASTERY, Topic.ALERTS]


def _publish_world(settings, rng):
    ada, bob, teacher = agent("ada"), agent("bob"), agent("teacher")
    a, b = learner_of(settings, ada), learner_of(settings, bob)
    ada_st = [make_statement("s-1", ada, BASE_MS + i * 60_000, rng) for i in range(20)]
    bob_st = [make_statement("s-1", bob, BASE_MS + i * 60_000 + 7, rng) for i in range(20)]
    # Two of bob's statements name ada: as instructor, and as the object.
    bob_st.append(make_statement("s-1", bob, BASE_MS + 99_000, rng, context={"instructor": ada}))
    bob_st.append(
        make_statement("s-1", bob, BASE_MS + 98_000, rng, object={"objectType": "Agent", "mbox": ada["mbox"]})
    )
    # Cal's only statement names ada: erasing it leaves cal without activity in that cohort.
    cal = agent("cal")
    cal_st = make_statement("s-1", cal, BASE_MS + 97_000, rng, context={"instructor": ada})
    void = make_statement(
        "s-1", teacher, BASE_MS + 200_000, rng,
        verb={"id": "http://adlnet.gov/expapi/verbs/voided"}, object={"objectType": "StatementRef", "id": ada_st[0]["id"]},
    )  # fmt: skip
    pub = Publisher(settings.kafka)
    ada_envelopes = [envelope(settings, "s-1", ada, ada_st[i : i + 5]) for i in range(0, 20, 5)]
    for raw in ada_envelopes:
        pub.send(a.encode(), raw)
    pub.send(b.encode(), envelope(settings, "s-1", bob, bob_st))
    pub.send(learner_of(settings, cal).encode(), envelope(settings, "s-1", cal, [cal_st]))
    pub.send(learner_of(settings, teacher).encode(), envelope(settings, "s-1", teacher, [void]))
    pub.flush()
    pub.close()
    derived = {
        Topic.ENGAGEMENT: [
            EngagementRecord("s-1", "course-1", "k", p, "day", BASE_MS, 5, 1, 60_000, BASE_MS, 1) for p in (a, b)
        ],
        Topic.MASTERY: [MasteryRecord("s-1", "course-1", p, "sk", 0.5, 2, 1, BASE_MS, 2) for p in (a, b)],
        Topic.ALERTS: [
            AlertRecord("al-1", "s-1", "course-1", "k", "fired", BASE_MS, BASE_MS, 2, 2, 1.0, 0.5, [a, b], 1)
        ],
    }
    for topic, records in derived.items():
        p = Publisher(settings.kafka, topic)
        for r in records:
            p.send(b"k", r.encode())
        p.flush()
        p.close()
    return ada, a, b, ada_envelopes, 20 + 22 + 1 + 1


def _left_about(ch, a: str) -> dict[str, int]:
    return {
        "statements": scalar(ch, "SELECT count() FROM {db}.statements WHERE learner = {a:String}", {"a": a}),
        "raw": scalar(ch, "SELECT count() FROM {db}.statements_raw WHERE has(learners, {a:String})", {"a": a}),
        "engagement": scalar(ch, "SELECT count() FROM {db}.engagement WHERE learner = {a:String}", {"a": a}),
        # The same rows sorted time-first (migration 0021, copied by a materialized view).
        "engagement_by_time": scalar(ch, "SELECT count() FROM {db}.engagement_by_time WHERE learner = {a:String}",
                                     {"a": a}),
        "mastery": scalar(ch, "SELECT count() FROM {db}.mastery WHERE learner = {a:String}", {"a": a}),
        # Her estimates kept over time (migration 0019).
        "mastery_history": scalar(ch, "SELECT count() FROM {db}.mastery_history WHERE learner = {a:String}", {"a": a}),
        "alerts": scalar(ch, "SELECT count() FROM {db}.alerts WHERE has(disengaged_learners, {a:String})", {"a": a}),
        # The staff directory of names (migration 0018): her name, by pseudonym and as text.
        "names": scalar(ch, "SELECT count() FROM {db}.learner_names WHERE learner = {a:String} OR name = 'Ada'",
                        {"a": a}),
    }


@pytest.mark.kafka
def test_sinks_forget_learner_erases_raw_and_derived_rows_and_survives_a_replay(settings, clickhouse_url, tmp_path):
    rng = random.Random(6)
    _ada, a, b, ada_envelopes, total = _publish_world(settings, rng)
    with running_sinks(settings, SINKS) as (ch, sinks):
        for name, topic in zip(SINKS, TOPICS, strict=True):
            wait_committed(settings, sinks, name, topic=topic)
        assert scalar(ch, "SELECT count() FROM {db}.statements FINAL") == total
        assert all(_left_about(ch, a).values())
        secret = pseudonym_key(settings)
        assert a in pseudonyms_for("mailto:ada@example.org", secret)

        if clickhouse_url.startswith("clickhouse://"):
            # The command, as an operator runs it, while the sinks keep running.
            proc = Proc(
                ["forget-learner", "mailto:ada@example.org", "--settle", "3"], settings, tmp_path / "forget.log"
            )
            assert proc.popen.wait(180) == 0, proc.tail()
            proc.stop()
            out = (tmp_path / "forget.log").read_text()
            assert re.search(r"statements erased: 23\b", out), out  # 20 own + 3 naming her
            assert "rows left about this learner: 0" in out
        else:
            # Embedded: the process owning chDB runs the erasure.
            report = forget_learners(ch, pseudonyms_for("mailto:ada@example.org", secret), settle_s=3)
            assert report.statements == 23 and report.remaining == 0
            assert report.removed["statements"] >= 23 and report.removed["engagement"] == 1
            assert report.scrubbed == {"alerts": 1}
            assert report.removed["learner_names"] >= 1

        assert _left_about(ch, a) == dict.fromkeys(("statements", "raw", "engagement", "engagement_by_time", "mastery", "mastery_history", "alerts", "names"), 0)
        kept = scalar(ch, "SELECT count() FROM {db}.statements FINAL")
        # The teacher's voiding statement stays (it names a statement id, not her); the void
        # row pointing at her erased statement goes.
        assert kept == total - 23
        assert scalar(ch, "SELECT count() FROM {db}.statement_voids FINAL") == 0
        # The rollup was rebuilt: it equals statements FINAL again, without her.
        assert scalar(ch, "SELECT uniqExactMerge(statements) FROM {db}.activity_daily") == kept
        assert scalar(ch, "SELECT uniqExactMerge(learners) FROM {db}.activity_daily") == 2  # bob, teacher
        # Its totals were recomputed (a group left empty lost its row); the summary agrees.
        assert_totals_exact(ch)
        assert scalar(ch, "SELECT count() FROM {db}.engagement FINAL WHERE learner = {b:String}", {"b": b}) == 1
        # Bob keeps his name.
        assert ch.query("SELECT name FROM {db}.learner_names FINAL WHERE learner = {b:String}", {"b": b}) == [("Bob",)]
        alert = ch.query("SELECT disengaged_learners FROM {db}.alerts FINAL")
        assert [list(r[0]) for r in alert] == [[b]]

        # Kafka still holds her records: a replay must not bring them back.
        pub = Publisher(settings.kafka)
        for raw in ada_envelopes:
            pub.send(a.encode(), raw)
        pub.flush()
        pub.close()
        p = Publisher(settings.kafka, Topic.ENGAGEMENT)
        p.send(b"k", EngagementRecord("s-1", "course-1", "k", a, "day", BASE_MS, 9, 1, 1, BASE_MS, 9).encode())
        p.flush()
        p.close()
        wait_committed(settings, sinks, "statements")
        wait_committed(settings, sinks, "engagement", topic=Topic.ENGAGEMENT)
        assert _left_about(ch, a) == dict.fromkeys(("statements", "raw", "engagement", "engagement_by_time", "mastery", "mastery_history", "alerts", "names"), 0)
        assert scalar(ch, "SELECT uniqExactMerge(statements) FROM {db}.activity_daily") == kept
        assert_totals_exact(ch)


def _attachment(content: bytes, ctype: str = "text/plain") -> dict:
    import hashlib

    return {"usageType": "http://adlnet.gov/expapi/attachments/certificate", "display": {"en-US": "certificate"},
            "contentType": ctype, "length": len(content), "sha2": hashlib.sha256(content).hexdigest()}  # fmt: skip


def _every_row_of_every_table(ch) -> dict[str, list[tuple]]:
    """All rows of every table and view of the database, as system.tables lists them."""
    names = [str(r[0]) for r in ch.query(
        "SELECT name FROM system.tables WHERE database = {db:String} ORDER BY name", {"db": ch.database})]  # fmt: skip
    assert {"statements", "statements_raw", "lrs_attachments", "lrs_attachment_refs", "lrs_agents"} <= set(names)
    columns: dict[str, list[str]] = {}
    for table, column, ctype in ch.query(
        "SELECT table, name, type FROM system.columns WHERE database = {db:String}", {"db": ch.database}
    ):
        # Aggregate states (the rollup's uniqExact sets) only hold hashes: read them finalised.
        expr = f"finalizeAggregation(`{column}`)" if str(ctype).startswith("AggregateFunction") else f"`{column}`"
        columns.setdefault(str(table), []).append(expr)
    return {name: ch.query(f"SELECT {', '.join(columns[name])} FROM {{db}}.`{name}`")
            for name in names if not name.startswith(".inner") and name in columns}  # fmt: skip


def _mentions(rows: dict[str, list[tuple]], needles: list[str]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for table, rs in rows.items():
        text = repr(rs).lower()
        hits = {n for n in needles if n.lower() in text}
        if hits:
            found[table] = hits
    return found


@pytest.mark.kafka
def test_sinks_forget_learner_leaves_nothing_about_her_in_any_table_attachments_included(settings, clickhouse_url):
    """Every table of the schema (system.tables), every row: no pseudonym, name, mbox,
    account or attachment content of the erased learners is left; a shared attachment stays."""
    import base64

    from reporting.lrs import LrsStore

    rng = random.Random(8)
    ada = {"objectType": "Agent", "mbox": "mailto:ada.lovelace@example.org", "name": "Ada Lovelace"}
    dan = {"objectType": "Agent", "name": "Dan Quill", "account": {"homePage": "https://sso.example.org", "name": "dquill-7731"}}
    cy = agent("cy")
    a, d, c = learner_of(settings, ada), learner_of(settings, dan), learner_of(settings, cy)
    certificate = b"Certificate of completion: Ada Lovelace, Analytical Engines 101"
    dan_cert = b"Certificate: Dan Quill (dquill-7731) passed"
    shared = b"Course handbook, identical for everyone"
    ada_st = [make_statement("s-1", ada, BASE_MS + i * 60_000, rng) for i in range(4)]
    ada_st[0]["attachments"] = [_attachment(certificate), _attachment(shared)]
    # Her certificate also inside a SubStatement of another of her statements.
    ada_st.append(make_statement("s-1", ada, BASE_MS + 500_000, rng, object={
        "objectType": "SubStatement", "actor": ada, "verb": {"id": "http://adlnet.gov/expapi/verbs/completed"},
        "object": {"id": "http://example.com/course"}, "attachments": [_attachment(certificate)]}))  # fmt: skip
    dan_st = [make_statement("s-1", dan, BASE_MS + i * 60_000 + 3, rng) for i in range(3)]
    dan_st[1]["attachments"] = [_attachment(dan_cert)]
    cy_st = [make_statement("s-1", cy, BASE_MS + i * 60_000 + 5, rng) for i in range(3)]
    cy_st[2]["attachments"] = [_attachment(shared)]
    pub = Publisher(settings.kafka)
    for who, p, sts in ((ada, a, ada_st), (dan, d, dan_st), (cy, c, cy_st)):
        entries = tuple(StatementEntry("course-1", "course-1/cohort-0", s) for s in sts)
        pub.send(p.encode(), StatementEnvelope("s-1", p, BASE_MS, entries).encode())
    pub.flush()
    pub.close()
    p = Publisher(settings.kafka, Topic.ENGAGEMENT)
    for learner in (a, d, c):
        p.send(b"k", EngagementRecord("s-1", "course-1", "k", learner, "day", BASE_MS, 5, 1, 60_000, BASE_MS, 1).encode())
    p.flush()
    p.close()
    # Refused statements naming her (in the actor, and inside a malformed object) and cy.
    refused = InvalidStatement("objectType.value", "not an objectType", "$.object.objectType")
    p = Publisher(settings.kafka, Topic.QUARANTINE)
    for body in ({**ada_st[1], "object": {"objectType": "GroupActivity", "id": "x"}},
                 {"actor": {"name": "someone"}, "verb": ada_st[2]["verb"], "object": {**dan, "objectType": "Agnt"}},
                 {**cy_st[0], "object": {"objectType": "GroupActivity", "id": "y"}}):  # fmt: skip
        # Received now: the quarantine's TTL drops records older than 30 days.
        record = QuarantineRecord.new("s-1", "lp_k", "gateway", int(time.time() * 1000), "1.0.3", orjson.dumps(body), [refused])
        p.send(b"s-1", record.encode())
    p.flush()
    p.close()
    with running_sinks(settings, ["statements", "engagement", "quarantine"]) as (ch, sinks):
        # The gateway stores attachment contents before the statements reach Kafka.
        LrsStore(ch).put_attachments("s-1", [(_attachment(x)["sha2"], "text/plain", x)
                                             for x in (certificate, dan_cert, shared)], BASE_MS)  # fmt: skip
        wait_committed(settings, sinks, "statements")
        wait_committed(settings, sinks, "engagement", topic=Topic.ENGAGEMENT)
        wait_committed(settings, sinks, "quarantine", topic=Topic.QUARANTINE)
        needles = [a, d, "Ada Lovelace", "ada.lovelace@example.org", "Dan Quill", "dquill-7731",
                   base64.b64encode(certificate).decode(), base64.b64encode(dan_cert).decode(),
                   _attachment(certificate)["sha2"], _attachment(dan_cert)["sha2"]]  # fmt: skip
        before = _mentions(_every_row_of_every_table(ch), needles)
        assert {"statements_raw", "lrs_attachments", "lrs_attachment_refs", "statements", "quarantine",
                "learner_names"} <= set(before)
        assert {"Ada Lovelace", "Dan Quill"} <= before["learner_names"]

        secret = pseudonym_key(settings)
        learners = pseudonyms_for("mailto:ada.lovelace@example.org", secret) + pseudonyms_for(
            "account:https://sso.example.org|dquill-7731", secret)  # fmt: skip
        report = forget_learners(ch, learners, settle_s=1)
        assert report.remaining == 0
        assert report.removed["lrs_attachments"] == 2  # her certificate and his, not the shared handbook

        left = _mentions(_every_row_of_every_table(ch), needles)
        # Only the erasure ledger keeps the pseudonyms (keyed hashes, nothing else): the sinks
        # need them to drop her records when Kafka replays them.
        assert left == {"forgotten_learners": {a, d}}
        # The shared attachment stays for cy's statement, and cy is untouched.
        assert LrsStore(ch).attachments("s-1", [_attachment(shared)["sha2"]])[_attachment(shared)["sha2"]][1] == shared
        assert scalar(ch, "SELECT count() FROM {db}.statements FINAL WHERE learner = {c:String}", {"c": c}) == 3
        assert scalar(ch, "SELECT count() FROM {db}.quarantine WHERE has(learners, {c:String})", {"c": c}) == 1
        assert ch.query("SELECT name FROM {db}.learner_names FINAL WHERE learner = {c:String}", {"c": c}) == [("Cy",)]
        # A name written after the deletions (a racing writer) is counted as left.
        from sinks.forget import _remaining, _tables

        ch.insert(f"{ch.database}.learner_names", ["school", "learner", "name", "version", "statement_id"],
                  [["s-1"], [a], ["Ada Lovelace"], [1], [uuid.UUID(ada_st[0]["id"])]])  # fmt: skip
        assert _remaining(ch, _tables(ch), learners, []) == 1
