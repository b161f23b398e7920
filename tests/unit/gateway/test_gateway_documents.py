"""The document resources (State, Activity Profile, Agent Profile, /activities, /agents) rule by rule.

The real gateway app over HTTP with the in-memory document store (the SQLite and
PostgreSQL stores pass the same contract: tests/unit/lrsstore). Both xAPI versions.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from urllib.parse import urlencode

import pytest
import requests

from schemas.identity import pseudonym
from schemas.lrs_store import DocumentKind

from ..lrsstore.fake_documents import MemoryDocumentStore
from .harness import Harness

V1, V2 = "1.0.3", "2.0.0"
ACT = "http://example.com/activities/geology"
AGENT = {"objectType": "Agent", "mbox": "mailto:ada@example.com", "name": "Ada"}


class Docs:
    def __init__(self, h: Harness) -> None:
        self.h = h
        self.base = f"http://127.0.0.1:{h.port}{h.config.prefix}"

    def call(self, method: str, path: str, params: dict | None = None, body: bytes | str | dict | None = None,
             version: str | None = V1, key: str = "key-a", **headers: str) -> requests.Response:  # fmt: skip
        h = self.h.headers(key, version)
        h.update(headers)
        if isinstance(body, dict | list):
            body = json.dumps(body)
            h.setdefault("Content-Type", "application/json")
        return self.h.http.request(method, self.base + path, params=params, data=body, headers=h)

    def state(self, method: str, body=None, version=V1, agent=AGENT, **params):
        q = {"activityId": ACT, "agent": json.dumps(agent), **params}
        return self.call(method, "/activities/state", q, body, version, **params.pop("_headers", {}))


@pytest.fixture
def docs():
    store = MemoryDocumentStore()
    with Harness(documents=store) as h:
        d = Docs(h)
        d.store = store
        yield d


def state_params(**extra):
    return {"activityId": ACT, "agent": json.dumps(AGENT), "stateId": "resume", **extra}


def profile_params(kind: str, **extra):
    if kind == "activity":
        return "/activities/profile", {"activityId": ACT, "profileId": "p1", **extra}
    return "/agents/profile", {"agent": json.dumps(AGENT), "profileId": "p1", **extra}


# -- State: methods and parameters --------------------------------------------------------
@pytest.mark.parametrize("version", [V1, V2])
def test_state_put_get_delete_roundtrip_with_etag_and_last_modified(docs, version):
    body = {"bookmark": "slide-7", "score": 3}
    r = docs.call("PUT", "/activities/state", state_params(), body, version)
    assert r.status_code == 204, r.text
    assert r.headers["X-Experience-API-Version"] == version
    got = docs.call("GET", "/activities/state", state_params(), version=version)
    assert got.status_code == 200
    assert got.json() == body
    assert got.headers["Content-Type"].startswith("application/json")
    assert got.headers["ETag"] == '"' + hashlib.sha1(got.content).hexdigest() + '"'
    assert got.headers["Last-Modified"].endswith("GMT")
    head = docs.call("HEAD", "/activities/state", state_params(), version=version)
    assert head.status_code == 200 and head.content == b"" and head.headers["ETag"] == got.headers["ETag"]
    assert docs.call("DELETE", "/activities/state", state_params(), version=version).status_code == 204
    assert docs.call("GET", "/activities/state", state_params(), version=version).status_code == 404


def test_binary_document_of_any_type_comes_back_byte_for_byte(docs):
    blob = bytes(range(256)) * 50
    r = docs.call("PUT", "/activities/state", state_params(), blob, **{"Content-Type": "image/png"})
    assert r.status_code == 204
    got = docs.call("GET", "/activities/state", state_params())
    assert got.content == blob and got.headers["Content-Type"] == "image/png"
    assert got.headers["ETag"] == f'"{hashlib.sha1(blob).hexdigest()}"'


def test_state_is_keyed_by_learner_pseudonym_and_school(docs):
    docs.call("PUT", "/activities/state", state_params(), {"a": 1})
    (key,) = docs.store._docs
    assert key.agent == pseudonym(b"test-secret", AGENT)
    assert key.school == "school-a" and key.kind is DocumentKind.STATE
    # Another school with the same parameters sees nothing.
    assert docs.call("GET", "/activities/state", state_params(), key="key-b").status_code == 404
    # The same agent written differently (name omitted, mailto domain case) is the same learner.
    same = {"mbox": "mailto:ada@EXAMPLE.com"}
    r = docs.call("GET", "/activities/state", state_params(agent=json.dumps(same)))
    assert r.status_code == 200 and r.json() == {"a": 1}


@pytest.mark.parametrize("method", ["GET", "PUT", "POST", "DELETE"])
@pytest.mark.parametrize("missing", ["activityId", "agent"])
def test_state_requires_activity_and_agent(docs, method, missing):
    params = state_params()
    del params[missing]
    r = docs.call(method, "/activities/state", params, {"a": 1} if method in ("PUT", "POST") else None)
    assert r.status_code == 400
    assert r.json()["error"]["rule"] == f"query.{missing}.required"


@pytest.mark.parametrize(
    "agent, rule",
    [
        ("not JSON", "query.agent.json"),
        ("true", "query.agent.type"),
        (json.dumps({"name": "no ifi"}), "query.agent.ifi"),
        (json.dumps({"mbox": "ada@example.com"}), "query.agent.mbox"),
        (json.dumps({"mbox": "mailto:a@b.c", "openid": "http://x.org/a"}), "query.agent.ifi"),
        (json.dumps({"objectType": "Group", "mbox": "mailto:team@example.com"}), "query.agent.not-agent"),
        (json.dumps({"mbox": "mailto:a@b.c", "member": []}), "query.agent.properties"),
    ],
)
def test_state_rejects_malformed_agents(docs, agent, rule):
    r = docs.call("PUT", "/activities/state", state_params(agent=agent), {"a": 1})
    assert r.status_code == 400 and r.json()["error"]["rule"] == rule


def test_state_rejects_bad_registration_activity_and_unknown_parameters(docs):
    r = docs.call("PUT", "/activities/state", state_params(registration="not-a-uuid"), {"a": 1})
    assert r.json()["error"]["rule"] == "query.registration.uuid"
    r = docs.call("PUT", "/activities/state", state_params(activityId="not an iri"), {"a": 1})
    assert r.json()["error"]["rule"] == "query.activityId.iri"
    r = docs.call("GET", "/activities/state", state_params(profileId="x"))
    assert r.status_code == 400 and r.json()["error"]["rule"] == "query.unknown"
    r = docs.call("DELETE", "/activities/state", state_params(since="2024-01-01T00:00:00Z"))
    assert r.status_code == 400 and r.json()["error"]["rule"] == "query.since.context"
    r = docs.call("PUT", "/activities/state", {"activityId": ACT, "agent": json.dumps(AGENT)}, {"a": 1})
    assert r.status_code == 400 and r.json()["error"]["rule"] == "query.stateId.required"


def test_state_registration_scopes_documents(docs):
    reg = str(uuid.uuid4())
    docs.call("PUT", "/activities/state", state_params(registration=reg), {"r": 1})
    assert docs.call("GET", "/activities/state", state_params()).status_code == 404
    assert docs.call("GET", "/activities/state", state_params(registration=reg.upper())).json() == {"r": 1}


def test_state_id_list_since_and_delete_many(docs):
    reg = str(uuid.uuid4())
    docs.h.gateway.clock_ms = lambda: 1_700_000_000_000
    docs.call("PUT", "/activities/state", state_params(stateId="a"), {"a": 1})
    docs.h.gateway.clock_ms = lambda: 1_700_000_010_000
    docs.call("PUT", "/activities/state", state_params(stateId="b", registration=reg), {"b": 1})
    base = {"activityId": ACT, "agent": json.dumps(AGENT)}
    r = docs.call("GET", "/activities/state", base)
    assert sorted(r.json()) == ["a", "b"]
    assert r.headers["Last-Modified"] == "Tue, 14 Nov 2023 22:13:30 GMT"
    assert r.headers["ETag"] == f'"{hashlib.sha1(r.content).hexdigest()}"'
    assert docs.call("GET", "/activities/state", {**base, "registration": reg}).json() == ["b"]
    # since is exclusive, any ISO 8601 timestamp
    assert docs.call("GET", "/activities/state", {**base, "since": "2023-11-14T22:13:20Z"}).json() == ["b"]
    assert docs.call("GET", "/activities/state", {**base, "since": "2023-11-14T23:13:20+01:00"}).json() == ["b"]
    r = docs.call("GET", "/activities/state", {**base, "since": "yesterday"})
    assert r.status_code == 400 and r.json()["error"]["rule"] == "query.since"
    # DELETE without stateId: every document of the context (a registration narrows it).
    assert docs.call("DELETE", "/activities/state", {**base, "registration": reg}).status_code == 204
    assert docs.call("GET", "/activities/state", base).json() == ["a"]
    assert docs.call("DELETE", "/activities/state", base).status_code == 204
    assert docs.call("GET", "/activities/state", base).json() == []


# -- POST merge (Communication 2.2.s7, s8) ------------------------------------------------
@pytest.mark.parametrize("version", [V1, V2])
@pytest.mark.parametrize("resource", ["state", "activity", "agent"])
def test_post_merges_top_level_properties(docs, version, resource):
    path, params = ("/activities/state", state_params()) if resource == "state" else profile_params(resource)
    first = {"car": {"make": "Ford", "model": "Escape"}, "driver": "Dale"}
    assert docs.call("POST", path, params, first, version).status_code == 204
    assert docs.call("POST", path, params, {"car": {"make": "Dodge"}, "series": 1}, version).status_code == 204
    assert docs.call("GET", path, params, version=version).json() == {
        "car": {"make": "Dodge"}, "driver": "Dale", "series": 1,
    }  # fmt: skip


def test_post_to_new_document_stores_anything_like_put(docs):
    for i, (body, ctype) in enumerate([("1", "application/x-www-form-urlencoded"), ("true", "application/json"),
                                       (b"\x00\xff", "application/octet-stream")]):  # fmt: skip
        params = state_params(stateId=f"s{i}")
        assert docs.call("POST", "/activities/state", params, body, **{"Content-Type": ctype}).status_code == 204
        got = docs.call("GET", "/activities/state", params)
        assert got.content == (body.encode() if isinstance(body, str) else body)
        assert got.headers["Content-Type"] == ctype


@pytest.mark.parametrize(
    "stored, stored_type, posted, posted_type, rule",
    [
        ({"a": 1}, "application/json", "abc", "application/x-www-form-urlencoded", "document.merge.not-json"),
        ("plain", "text/plain", {"a": 1}, "application/json", "document.merge.not-json"),
        ({"a": 1}, "application/json", [1, 2], "application/json", "document.merge.not-object"),
        ([1], "application/json", {"a": 1}, "application/json", "document.merge.not-object"),
    ],
)
def test_post_merge_refuses_non_json_objects_and_changes_nothing(docs, stored, stored_type, posted, posted_type, rule):
    raw = json.dumps(stored) if stored_type == "application/json" else stored
    docs.call("PUT", "/activities/state", state_params(), raw, **{"Content-Type": stored_type})
    before = docs.call("GET", "/activities/state", state_params())
    body = json.dumps(posted) if posted_type == "application/json" else posted
    r = docs.call("POST", "/activities/state", state_params(), body, **{"Content-Type": posted_type})
    assert r.status_code == 400 and r.json()["error"]["rule"] == rule
    after = docs.call("GET", "/activities/state", state_params())
    assert after.content == before.content and after.headers["ETag"] == before.headers["ETag"]


def test_invalid_json_declared_as_json_is_refused(docs):
    r = docs.call("PUT", "/activities/state", state_params(), "{not json", **{"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["rule"] == "document.json"


# -- Concurrency (1.0.3 Communication 3.1, 9274.1.1 4.1.4) --------------------------------
@pytest.mark.parametrize("resource", ["activity", "agent"])
@pytest.mark.parametrize("version", [V1, V2])
def test_profile_put_without_precondition_on_existing_document_is_409(docs, resource, version):
    path, params = profile_params(resource)
    assert docs.call("PUT", path, params, {"v": 1}, version).status_code == 204  # absent: created
    r = docs.call("PUT", path, params, {"v": 2}, version)
    assert r.status_code == 409
    assert r.json()["error"]["rule"] == "concurrency.precondition-required"
    assert "If-Match" in r.json()["error"]["message"]
    assert docs.call("GET", path, params, version=version).json() == {"v": 1}


def test_state_put_without_precondition_overwrites_in_1_0_3_but_is_409_in_2_0(docs):
    assert docs.call("PUT", "/activities/state", state_params(), {"v": 1}, V1).status_code == 204
    assert docs.call("PUT", "/activities/state", state_params(), {"v": 2}, V1).status_code == 204
    assert docs.call("GET", "/activities/state", state_params()).json() == {"v": 2}
    r = docs.call("PUT", "/activities/state", state_params(), {"v": 3}, V2)
    assert r.status_code == 409 and r.json()["error"]["rule"] == "concurrency.precondition-required"
    assert docs.call("GET", "/activities/state", state_params()).json() == {"v": 2}


@pytest.mark.parametrize("version", [V1, V2])
@pytest.mark.parametrize("resource", ["state", "activity", "agent"])
def test_if_match_and_if_none_match_on_put_post_delete(docs, version, resource):
    path, params = ("/activities/state", state_params()) if resource == "state" else profile_params(resource)
    # If-None-Match: * creates only when absent
    assert docs.call("PUT", path, params, {"v": 1}, version, **{"If-None-Match": "*"}).status_code == 204
    r = docs.call("PUT", path, params, {"v": 9}, version, **{"If-None-Match": "*"})
    assert r.status_code == 412 and r.json()["error"]["rule"] == "concurrency.precondition-failed"
    etag = docs.call("GET", path, params, version=version).headers["ETag"]
    # a wrong or unquoted-wrong tag fails on every method and changes nothing
    for method, body in (("PUT", {"v": 9}), ("POST", {"w": 9}), ("DELETE", None)):
        for wrong in ('"1111111111111111111111111111111111111111"', "1234"):
            r = docs.call(method, path, params, body, version, **{"If-Match": wrong})
            assert r.status_code == 412, (method, wrong)
    assert docs.call("GET", path, params, version=version).json() == {"v": 1}
    # the right tag (any case) succeeds, and the answer carries the new ETag
    r = docs.call("PUT", path, params, {"v": 2}, version, **{"If-Match": etag.upper()})
    assert r.status_code == 204
    new_etag = r.headers["ETag"]
    assert docs.call("GET", path, params, version=version).headers["ETag"] == new_etag
    assert docs.call("POST", path, params, {"w": 1}, version, **{"If-Match": etag}).status_code == 412
    assert docs.call("POST", path, params, {"w": 1}, version, **{"If-Match": new_etag}).status_code == 204
    assert docs.call("GET", path, params, version=version).json() == {"v": 2, "w": 1}
    # If-Match and If-None-Match: * together never hold on an existing document
    current = docs.call("GET", path, params, version=version).headers["ETag"]
    r = docs.call("PUT", path, params, {"v": 3}, version, **{"If-Match": current, "If-None-Match": "*"})
    assert r.status_code == 412
    # If-Match with a list of tags matches any of them
    r = docs.call("PUT", path, params, {"v": 4}, version, **{"If-Match": f'"{"0" * 40}", {current}'})
    assert r.status_code == 204
    # If-None-Match with the current tag fails; with another it succeeds
    current = docs.call("GET", path, params, version=version).headers["ETag"]
    assert docs.call("PUT", path, params, {"v": 5}, version, **{"If-None-Match": current}).status_code == 412
    assert docs.call("PUT", path, params, {"v": 5}, version, **{"If-None-Match": f'"{"0" * 40}"'}).status_code == 204
    # DELETE with the right tag, then If-Match on the absent document fails
    current = docs.call("GET", path, params, version=version).headers["ETag"]
    assert docs.call("DELETE", path, params, version=version, **{"If-Match": current}).status_code == 204
    assert docs.call("GET", path, params, version=version).status_code == 404
    assert docs.call("PUT", path, params, {"v": 6}, version, **{"If-Match": "*"}).status_code == 412
    assert docs.call("DELETE", path, params, version=version, **{"If-Match": "*"}).status_code == 412


# -- Profiles, /activities, /agents ------------------------------------------------------
def test_profile_id_lists_and_parameters(docs):
    path, params = profile_params("activity")
    docs.call("PUT", path, params, {"v": 1}, **{"If-None-Match": "*"})
    docs.call("PUT", path, {**params, "profileId": "p2"}, "x", **{"Content-Type": "text/plain"})
    assert sorted(docs.call("GET", path, {"activityId": ACT}).json()) == ["p1", "p2"]
    r = docs.call("GET", path, {"activityId": ACT, "agent": json.dumps(AGENT)})
    assert r.status_code == 400 and r.json()["error"]["rule"] == "query.unknown"
    r = docs.call("DELETE", path, {"activityId": ACT})
    assert r.status_code == 400 and r.json()["error"]["rule"] == "query.profileId.required"
    apath, aparams = profile_params("agent")
    docs.call("PUT", apath, aparams, {"pref": "fr"}, **{"If-None-Match": "*"})
    assert docs.call("GET", apath, {"agent": json.dumps(AGENT)}).json() == ["p1"]
    assert docs.call("GET", apath, {"agent": json.dumps(AGENT), "activityId": ACT}).status_code == 400


@pytest.mark.parametrize("version", [V1, V2])
def test_activities_returns_an_activity_object_even_unknown(docs, version):
    r = docs.call("GET", "/activities", {"activityId": ACT}, version=version)
    assert r.status_code == 200 and r.json() == {"objectType": "Activity", "id": ACT}
    assert docs.call("GET", "/activities", {}, version=version).status_code == 400
    assert docs.call("GET", "/activities", {"activityId": "not an iri"}, version=version).status_code == 400
    assert docs.call("PUT", "/activities", {"activityId": ACT}, {"a": 1}, version).status_code == 405


@pytest.mark.parametrize("version", [V1, V2])
def test_agents_returns_a_person_built_from_the_agent(docs, version):
    r = docs.call("GET", "/agents", {"agent": json.dumps(AGENT)}, version=version)
    assert r.status_code == 200
    assert r.json() == {"objectType": "Person", "name": ["Ada"], "mbox": ["mailto:ada@example.com"]}
    account = {"account": {"homePage": "http://lms.example.com", "name": "u1"}}
    assert docs.call("GET", "/agents", {"agent": json.dumps(account)}).json() == {
        "objectType": "Person", "account": [account["account"]],
    }  # fmt: skip
    assert docs.call("GET", "/agents", {}, version=version).status_code == 400
    bad = {"account": {"homePage": "http://lms.example.com"}}
    assert docs.call("GET", "/agents", {"agent": json.dumps(bad)}, version=version).status_code == 400


# -- Envelope: credentials, version header, alternate syntax, limits ----------------------
def test_document_resources_need_credentials_and_version(docs):
    r = docs.h.http.get(docs.base + "/activities/state", params=state_params(),
                        headers={"X-Experience-API-Version": V1})  # fmt: skip
    assert r.status_code == 401
    r = docs.call("GET", "/activities/state", state_params(), version=None)
    assert r.status_code == 400 and r.json()["error"]["rule"] == "version.header"
    r = docs.call("PATCH", "/activities/state", state_params(), {"a": 1})
    assert r.status_code == 405


def test_alternate_request_syntax_in_1_0_3_only(docs):
    form = {
        "activityId": ACT, "agent": json.dumps(AGENT), "stateId": "alt", "content": json.dumps({"alt": True}),
        "Content-Type": "application/json", "X-Experience-API-Version": V1, "Authorization": docs.h.auth("key-a"),
    }  # fmt: skip
    url = docs.base + "/activities/state?method=PUT"
    ctype = {"Content-Type": "application/x-www-form-urlencoded"}
    r = docs.h.http.post(url, data=urlencode(form), headers=ctype)
    assert r.status_code == 204, r.text
    assert docs.call("GET", "/activities/state", state_params(stateId="alt")).json() == {"alt": True}
    delete = {k: v for k, v in form.items() if k not in ("content", "Content-Type")}
    # HEAD tunnelled in a POST: the GET's status and headers (ETag), no body.
    r = docs.h.http.post(docs.base + "/activities/state?method=HEAD", data=urlencode(delete), headers=ctype)
    assert r.status_code == 200 and r.content == b"" and r.headers["ETag"]
    r = docs.h.http.post(docs.base + "/activities/state?method=DELETE", data=urlencode(delete), headers=ctype)
    assert r.status_code == 204
    assert docs.call("GET", "/activities/state", state_params(stateId="alt")).status_code == 404
    r = docs.h.http.post(url, data=urlencode({**form, "X-Experience-API-Version": V2}), headers=ctype)
    assert r.status_code == 400 and r.json()["error"]["rule"] == "alternate.removed"


def test_document_over_the_size_limit_is_413_saying_so():
    from producers.gateway.documents import DocumentsConfig

    store = MemoryDocumentStore()
    with Harness(documents=store) as h:
        h.gateway  # noqa: B018 - started
        d = Docs(h)
        limit = DocumentsConfig().max_document_bytes
        r = d.call("PUT", "/activities/state", state_params(), b"x" * (limit + 1),
                   **{"Content-Type": "application/octet-stream"})  # fmt: skip
        assert r.status_code == 413
        assert r.json()["error"]["rule"] == "document.too-large" and str(limit) in r.json()["error"]["message"]
        assert d.call("GET", "/activities/state", state_params()).status_code == 404


def test_document_metrics_count_requests_changes_and_conflicts(docs):
    from prometheus_client import REGISTRY

    def value(name, **labels):
        return REGISTRY.get_sample_value(name, labels) or 0.0

    path, params = profile_params("activity", profileId="metrics")
    before = (
        value("learnpulse_lrs_document_requests_total", resource="activity_profile", method="PUT", status="409"),
        value("learnpulse_lrs_documents_changed_total", resource="activity_profile", operation="put"),
        value("learnpulse_lrs_document_conflicts_total", resource="activity_profile", kind="missing_precondition"),
    )
    docs.call("PUT", path, params, {"v": 1})
    docs.call("PUT", path, params, {"v": 2})
    after = (
        value("learnpulse_lrs_document_requests_total", resource="activity_profile", method="PUT", status="409"),
        value("learnpulse_lrs_documents_changed_total", resource="activity_profile", operation="put"),
        value("learnpulse_lrs_document_conflicts_total", resource="activity_profile", kind="missing_precondition"),
    )
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1, 1]


def test_activities_falls_back_to_the_bare_object_when_clickhouse_is_down():
    from aiohttp import web

    from producers.gateway.documents import DocumentResources
    from schemas.clickhouse.engine import ClickHouseUnavailable

    from .harness import ServedApp

    def down(_school, _activity):
        raise ClickHouseUnavailable("connection refused")

    with Harness() as h:
        # The resources with a definitions look-up that fails, on an app of their own.
        served = ServedApp()
        served.app, served.config = web.Application(), h.config
        DocumentResources(h.gateway, MemoryDocumentStore(), activities=down).mount(served.app, h.config.prefix)
        with served:
            r = served.http.get(f"http://127.0.0.1:{served.port}/xapi/activities", params={"activityId": ACT},
                                headers=h.headers("key-a"))  # fmt: skip
            assert r.status_code == 200 and r.json() == {"objectType": "Activity", "id": ACT}
