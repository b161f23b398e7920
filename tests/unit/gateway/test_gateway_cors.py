"""CORS on every LRS resource: preflights, the grant on answers, per-school origins."""

from __future__ import annotations

import json

import pytest

from learnpulse.credentials import CredentialStore, add_credential, list_credentials, update_origins
from learnpulse.errors import UserError
from producers.gateway.cors import normalize_origin

from ..lrsstore.fake_documents import MemoryDocumentStore
from .harness import Harness, statement

ALLOWED = "http://course.example.org:8080"


class Origins:
    """school → allowed origins (the credentials file's role)."""

    def __init__(self, by_school: dict[str, set[str]]) -> None:
        self.by_school = by_school

    def origin_allowed(self, origin: str, school: str | None) -> bool:
        schools = self.by_school if school is None else {school: self.by_school.get(school, set())}
        return any(origin in o for o in schools.values())


@pytest.fixture
def h():
    with Harness(documents=MemoryDocumentStore(), origins=Origins({"school-a": {ALLOWED}})) as served:
        yield served


STATE_Q = {"activityId": "http://example.com/a", "agent": json.dumps({"mbox": "mailto:a@example.com"}),
           "stateId": "resume"}  # fmt: skip


def preflight(h, path: str, origin: str, method: str = "PUT", headers: str = "authorization,content-type,"
              "x-experience-api-version,if-match"):  # fmt: skip
    return h.http.options(
        f"http://127.0.0.1:{h.port}/xapi{path}",
        headers={"Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": headers},
    )


@pytest.mark.parametrize("path", ["/statements", "/activities/state", "/activities/profile", "/agents/profile",
                                  "/activities", "/agents", "/about"])  # fmt: skip
def test_preflight_is_granted_to_an_allowed_origin_on_every_resource(h, path):
    r = preflight(h, path, ALLOWED)
    assert r.status_code == 204
    assert r.headers["Access-Control-Allow-Origin"] == ALLOWED
    methods = {m.strip() for m in r.headers["Access-Control-Allow-Methods"].split(",")}
    assert {"GET", "PUT", "POST", "DELETE", "HEAD"} <= methods
    allowed = {x.strip().lower() for x in r.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type", "x-experience-api-version", "if-match", "if-none-match"} <= allowed
    assert "Access-Control-Allow-Credentials" not in r.headers
    assert "Origin" in r.headers["Vary"]


def test_preflight_from_a_disallowed_origin_gets_no_grant(h):
    for origin in ("http://evil.example.net", "http://course.example.org", "null"):
        r = preflight(h, "/statements", origin)
        assert r.status_code == 403
        assert not any(k.lower().startswith("access-control-") for k in r.headers)


def test_preflight_for_unknown_headers_or_methods_is_refused(h):
    assert preflight(h, "/statements", ALLOWED, headers="x-custom").status_code == 403
    assert preflight(h, "/statements", ALLOWED, method="PATCH").status_code == 403


def test_answers_to_an_allowed_origin_expose_the_xapi_headers(h):
    r = h.http.post(h.url, json=statement(), headers=h.headers("key-a", Origin=ALLOWED))
    assert r.status_code == 200
    assert r.headers["Access-Control-Allow-Origin"] == ALLOWED
    exposed = {x.strip() for x in r.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"ETag", "Last-Modified", "X-Experience-API-Version", "X-Experience-API-Consistent-Through"} <= exposed
    base = f"http://127.0.0.1:{h.port}/xapi/activities/state"
    r = h.http.put(base, params=STATE_Q, json={"a": 1}, headers=h.headers("key-a", Origin=ALLOWED))
    assert r.status_code == 204 and r.headers["Access-Control-Allow-Origin"] == ALLOWED
    # errors too, so the page can read why
    r = h.http.get(base, params=STATE_Q, headers={"Origin": ALLOWED, "X-Experience-API-Version": "1.0.3"})
    assert r.status_code == 401 and r.headers["Access-Control-Allow-Origin"] == ALLOWED


def test_router_errors_to_an_allowed_origin_carry_the_grant_so_the_page_can_read_them(h):
    # aiohttp's router raises 404/405 instead of returning them; without the grant the
    # page sees only "Network Error".
    base = f"http://127.0.0.1:{h.port}/xapi"
    for method, url in (("GET", f"{base}/no-such-resource"), ("PATCH", f"{base}/statements")):
        r = h.http.request(method, url, headers=h.headers("key-a", Origin=ALLOWED))
        assert r.status_code in (404, 405), (method, url, r.status_code)
        assert r.headers.get("Access-Control-Allow-Origin") == ALLOWED, (method, url)


def test_a_school_that_did_not_allow_the_origin_is_refused_before_anything_is_written(h):
    n = len(h.committed)
    r = h.http.post(h.url, json=statement(), headers=h.headers("key-b", Origin=ALLOWED))
    assert r.status_code == 403 and r.json()["error"]["rule"] == "cors.origin"
    base = f"http://127.0.0.1:{h.port}/xapi/activities/state"
    r = h.http.put(base, params=STATE_Q, json={"a": 1}, headers=h.headers("key-b", Origin=ALLOWED))
    assert r.status_code == 403
    assert h.http.get(base, params=STATE_Q, headers=h.headers("key-b")).status_code == 404
    assert len(h.committed) == n
    # a disallowed origin gets no grant on the answer either
    r = h.http.post(h.url, json=statement(), headers=h.headers("key-a", Origin="http://evil.example.net"))
    assert r.status_code == 403 and "Access-Control-Allow-Origin" not in r.headers


def test_requests_without_origin_are_untouched(h):
    r = h.post(statement())
    assert r.status_code == 200 and "Access-Control-Allow-Origin" not in r.headers


def test_normalize_origin():
    assert normalize_origin("HTTP://Course.Example.org:80/") == "http://course.example.org"
    assert normalize_origin("https://x.org:8443") == "https://x.org:8443"
    for bad in ("*", "course.example.org", "http://x.org/path", "ftp://x.org", "null"):
        with pytest.raises(ValueError):
            normalize_origin(bad)


def test_credentials_store_origins_per_school(tmp_path):
    path = tmp_path / "credentials.json"
    key_a, _ = add_credential(path, "school-a", ["http://Course.example.org:8080/"])
    key_b, _ = add_credential(path, "school-b")
    store = CredentialStore(path, reload_every_s=0)
    assert store.origin_allowed(ALLOWED, "school-a") and store.origin_allowed(ALLOWED, None)
    assert not store.origin_allowed(ALLOWED, "school-b")
    assert not store.origin_allowed("null", None)
    update_origins(path, key_b, add=["https://b.example.org"])
    assert [c.allow_origins for c in list_credentials(path)] == [(ALLOWED,), ("https://b.example.org",)]
    update_origins(path, key_a, clear=True)
    assert not store.origin_allowed(ALLOWED, None)
    assert store.origin_allowed("https://b.example.org", "school-b")
    with pytest.raises(UserError):
        update_origins(path, key_a, add=["*"])
    with pytest.raises(UserError):
        update_origins(path, "lp_nope", add=[ALLOWED])


class _BrokenDocuments(MemoryDocumentStore):
    def get(self, key):
        raise RuntimeError("disk on fire")


def test_an_unexpected_failure_is_a_json_500_the_page_can_read():
    with Harness(documents=_BrokenDocuments(), origins=Origins({"school-a": {ALLOWED}})) as h:
        r = h.http.get(f"http://127.0.0.1:{h.port}/xapi/activities/state", params=STATE_Q,
                       headers=h.headers("key-a", Origin=ALLOWED))  # fmt: skip
    assert r.status_code == 500
    assert r.headers.get("Access-Control-Allow-Origin") == ALLOWED
    assert r.json()["error"]["rule"] == "internal"
    assert "disk on fire" not in r.text  # internals stay in the log
