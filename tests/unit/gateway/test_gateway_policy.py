"""Per-credential ingestion policy and answered version at the gateway (issue 14), in-memory Kafka."""

from __future__ import annotations

import orjson
import pytest

from schemas.policy import OPENEDX_RULES, IngestPolicy
from tests.openedx_shapes import KINDS, fresh

from .harness import Harness

TOLERANT = IngestPolicy("tolerant", OPENEDX_RULES)


def _entries(h: Harness) -> list[dict]:
    return [e for _, _, v in h.committed for e in orjson.loads(v)["statements"]]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_strict_credential_refuses_each_openedx_defect_naming_its_rule(kind):
    with Harness() as h:
        r = h.post(fresh(kind))
        assert r.status_code == 400
        assert (r.json()["error"]["rule"], r.json()["error"]["path"]) == KINDS[kind][1][0]
        assert h.committed == []


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_tolerant_credential_stores_unchanged_with_rule_ids_beside(kind):
    with Harness(policies={"key-a": TOLERANT}) as h:
        doc = fresh(kind)
        r = h.post(doc)
        assert r.status_code == 200, r.text
        [entry] = _entries(h)
        assert entry["violations"] == sorted({rule for rule, _ in KINDS[kind][1]})
        stored = entry["statement"]
        assert {k: v for k, v in stored.items() if k not in ("stored", "authority")} == doc
        [(_, _, value)] = h.committed
        assert orjson.loads(value)["v"] == 2
        # LRS reads answer the statement as stored, defects included.
        got = h.get({"statementId": doc["id"]}).json()
        assert got["object"] == doc["object"] and got.get("result") == doc.get("result")


def test_tolerant_credential_still_refuses_untolerated_rules_and_other_keys_stay_strict():
    with Harness(policies={"key-a": TOLERANT}) as h:
        bad = fresh("group_object")
        bad["result"]["score"] = {"min": 3, "max": 1}
        r = h.post(bad)
        assert r.status_code == 400 and r.json()["error"]["rule"] == "result.score.min-max"
        r = h.post(fresh("group_object"), key="key-b")
        assert r.status_code == 400 and r.json()["error"]["rule"] == "objectType.value"
        assert h.committed == []


def test_tolerant_put_and_batch_mixing_conformant_and_tolerated():
    with Harness(policies={"key-a": TOLERANT}) as h:
        doc = fresh("zero_weight_score")
        sid = doc.pop("id")
        assert h.put(doc, sid).status_code == 204
        batch = [fresh("bare_guid_grouping"), fresh("bare_guid_grouping")]
        batch[1]["context"]["contextActivities"]["grouping"][0]["id"] = "https://courses.example-school.org/g/1"
        assert h.post(batch).status_code == 200
        violations = [e.get("violations") for e in _entries(h)]
        assert violations == [["result.score.min-max.equal"], ["activity.id.iri"], None]


def test_conformant_traffic_keeps_envelope_version_1():
    with Harness(policies={"key-a": TOLERANT}) as h:
        ok = fresh("group_object")
        ok["object"]["objectType"] = "Activity"
        assert h.post(ok).status_code == 200
        [(_, _, value)] = h.committed
        assert orjson.loads(value)["v"] == 1 and "violations" not in orjson.loads(value)["statements"][0]


def test_missing_version_header_answered_in_the_credentials_version():
    with Harness(versions={"key-b": "2.0.0"}) as h:
        r = h.http.post(h.url, json=fresh("group_object"), headers=h.headers("key-b", version=None))
        assert r.status_code == 400 and r.json()["error"]["rule"] == "version.header"
        assert r.headers["X-Experience-API-Version"] == "2.0.0"
        # Another credential, and a wrong secret (never trusted), get the gateway's default.
        assert h.http.get(h.url, headers=h.headers("key-a", version=None)).headers["X-Experience-API-Version"] == "1.0.3"
        wrong = {"Authorization": "Basic " + __import__("base64").b64encode(b"key-b:nope").decode()}
        assert h.http.get(h.url, headers=wrong).headers["X-Experience-API-Version"] == "1.0.3"
