"""The Statements API against in-memory Kafka and store (the real stack: test_gateway_api.py).

Test names cite the xAPI 1.0.3 (``xapi_1_0_3``) or IEEE 9274.1.1 (``xapi_2_0``) section.
"""

from __future__ import annotations

import hashlib
import json
import time

import orjson
import pytest

from producers.gateway import multipart
from producers.gateway.app import GatewayConfig

from .harness import Harness, new_id, statement


@pytest.fixture
def h():
    with Harness() as harness:
        yield harness


# -- versions, authentication -----------------------------------------------------------
def test_xapi_1_0_3_comm_3_3_missing_version_header_400_with_version_header(h):
    r = h.http.post(h.url, json=statement(), headers=h.headers(version=None))
    assert r.status_code == 400
    assert r.json()["error"]["rule"] == "version.header"
    assert r.headers["X-Experience-API-Version"] == "1.0.3"
    assert h.committed == []


def test_xapi_2_0_comm_3_3_missing_version_header_echoes_configured_default():
    with Harness(GatewayConfig(default_version="2.0.0")) as h:
        r = h.http.get(h.url, headers=h.headers(version=None))
        assert r.status_code == 400
        assert r.headers["X-Experience-API-Version"] == "2.0.0"


@pytest.mark.parametrize("sent,served", [("1.0", "1.0.3"), ("1.0.0", "1.0.3"), ("1.0.2", "1.0.3"), ("2.0", "2.0.0"),
                                         ("2.0.0", "2.0.0")])  # fmt: skip
def test_xapi_1_0_3_comm_3_3_version_header_negotiated_and_echoed(h, sent, served):
    r = h.post(statement(), version=sent)
    assert r.status_code == 200, r.text
    assert r.headers["X-Experience-API-Version"] == served


@pytest.mark.parametrize("sent", ["0.95", "0.9", "1.1.0", "3.0.0", "garbage"])
def test_xapi_1_0_3_comm_3_3_unsupported_version_rejected_400(h, sent):
    r = h.post(statement(), version=sent)
    assert r.status_code == 400
    assert h.committed == []


def test_xapi_1_0_3_comm_4_0_missing_credentials_401_nothing_produced(h):
    r = h.http.post(h.url, json=statement(), headers={"X-Experience-API-Version": "1.0.3"})
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Basic")
    assert h.committed == [] and all(p.transactions == 0 and p.open is None for p in h.producers)


def test_xapi_1_0_3_comm_4_0_wrong_secret_401_nothing_produced(h):
    headers = {"Authorization": "Basic " + __import__("base64").b64encode(b"key-a:wrong").decode(),
               "X-Experience-API-Version": "1.0.3"}  # fmt: skip
    assert h.http.post(h.url, json=statement(), headers=headers).status_code == 401
    assert h.http.get(h.url, headers=headers).status_code == 401
    assert h.committed == []


def test_xapi_1_0_3_comm_2_8_about_needs_no_credentials_nor_version(h):
    r = h.http.get(f"http://127.0.0.1:{h.port}/xapi/about")
    assert r.status_code == 200
    assert {"1.0.3", "2.0.0"} <= set(r.json()["version"])


@pytest.mark.parametrize("sent", ["1.0.3", "1.0.2", "1.0"])
def test_xapi_1_0_3_comm_2_8_s5_b1_about_lists_only_1_0_x_versions_to_a_1_0_client(h, sent):
    r = h.http.get(f"http://127.0.0.1:{h.port}/xapi/about", headers={"X-Experience-API-Version": sent})
    assert r.status_code == 200
    assert r.json()["version"] == ["1.0.0", "1.0.1", "1.0.2", "1.0.3"]
    r = h.http.get(f"http://127.0.0.1:{h.port}/xapi/about", headers={"X-Experience-API-Version": "2.0.0"})
    assert "2.0.0" in r.json()["version"]


@pytest.mark.parametrize("method", ["GET", "POST", "PUT"])
def test_xapi_1_0_3_comm_3_3_s4_b1_missing_version_header_400_even_without_credentials(h, method):
    r = h.http.request(method, h.url, params={"statementId": new_id()} if method != "POST" else None,
                       json=statement() if method != "GET" else None)  # fmt: skip
    assert r.status_code == 400, r.text
    assert r.json()["error"]["rule"] == "version.header"
    # §2.1.3.s2.b5: the header comes with every answer, errors included.
    assert "X-Experience-API-Consistent-Through" in r.headers
    assert h.committed == []


def test_xapi_1_0_3_comm_3_2_s3_b1_unsupported_method_405_even_without_credentials(h):
    r = h.http.delete(h.url, params={"statementId": new_id()}, headers={"X-Experience-API-Version": "1.0.1"})
    assert r.status_code == 405
    assert "X-Experience-API-Consistent-Through" in r.headers


def test_xapi_1_0_3_comm_1_3_s3_b4_alternate_syntax_body_not_url_encoded_400(h):
    form = {"statementId": new_id(), "content": json.dumps(statement()), "X-Experience-API-Version": "1.0.3",
            "Authorization": h.auth("key-a")}  # fmt: skip
    r = h.http.post(h.url, params={"method": "PUT"}, data=json.dumps(form),
                    headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert r.status_code == 400, r.text
    assert h.committed == []


# -- POST / PUT -----------------------------------------------------------------------------
def test_xapi_1_0_3_comm_2_1_2_post_returns_ids_in_order_after_kafka_commit(h):
    given = new_id()
    r = h.post([statement(), statement(id=given), statement()])
    assert r.status_code == 200
    ids = r.json()
    assert len(ids) == 3 and ids[1] == given and len(set(ids)) == 3
    # The answer came after the commit: everything is already in "Kafka".
    assert [s["id"] for s in h.statements_in_kafka()] == ids
    stored = h.statements_in_kafka()[0]
    assert stored["authority"]["account"]["name"] == "school-a"
    assert stored["version"] == "1.0.0" and stored["stored"] == stored["timestamp"]


def test_xapi_1_0_3_comm_3_2_post_batch_all_or_nothing_names_rule_and_path(h):
    bad = statement()
    bad["verb"] = {"id": "not an iri"}
    r = h.post([statement(), statement(), bad])
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["path"].startswith("$[2].verb")
    assert err["rule"]
    assert h.committed == []


def test_xapi_1_0_3_comm_2_1_2_s2_b6_post_duplicate_ids_in_batch_400(h):
    sid = new_id()
    r = h.post([statement(id=sid), statement(id=sid.upper())])
    assert r.status_code == 400
    assert r.json()["error"]["rule"] == "statements.id.duplicate"
    assert h.committed == []


def test_xapi_1_0_3_comm_3_2_malformed_json_400_parse_rule(h):
    r = h.http.post(h.url, data=b'{"actor": ', headers={**h.headers(), "Content-Type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"]["rule"] == "json.parse"


def test_xapi_1_0_3_comm_2_1_1_put_stores_with_id_from_parameter_204(h):
    sid = new_id()
    r = h.put(statement(), sid)
    assert r.status_code == 204 and r.content == b""
    assert [s["id"] for s in h.statements_in_kafka()] == [sid]


def test_xapi_1_0_3_comm_2_1_1_put_without_statement_id_400(h):
    r = h.http.put(h.url, json=statement(), headers=h.headers())
    assert r.status_code == 400
    assert h.committed == []


def test_xapi_1_0_3_comm_2_1_1_s3_b3_put_id_differs_from_parameter_400(h):
    r = h.put(statement(id=new_id()), new_id())
    assert r.status_code == 400
    assert r.json()["error"]["rule"] == "put.id-mismatch"


def test_xapi_1_0_3_comm_2_1_1_put_same_id_different_content_409_while_in_flight_registry(h):
    sid = new_id()
    assert h.put(statement(), sid).status_code == 204
    other = statement(verb={"id": "http://adlnet.gov/expapi/verbs/failed"})
    r = h.put(other, sid)
    assert r.status_code == 409
    assert r.json()["error"]["rule"] == "statement.conflict"
    assert len(h.committed) == 1


def test_xapi_1_0_3_comm_2_1_1_put_same_id_different_content_409_from_store(h):
    sid = new_id()
    assert h.put(statement(), sid).status_code == 204
    r = h.post(statement(id=sid, verb={"id": "http://adlnet.gov/expapi/verbs/failed"}))
    assert r.status_code == 409
    assert len(h.committed) == 1


def test_xapi_1_0_3_comm_2_1_1_s2_b2_same_id_same_content_no_duplicate(h):
    sid = new_id()
    assert h.put(statement(), sid).status_code == 204
    assert h.put(statement(), sid).status_code == 204
    # Display and definition differences are not differences (Data §2.3.1).
    assert h.post(statement(id=sid, verb={"id": "http://adlnet.gov/expapi/verbs/completed"})).status_code == 204
    assert h.post(statement(id=sid)).status_code == 204
    assert len(h.statements_in_kafka()) == 1


def test_xapi_1_0_3_comm_2_1_2_post_mixed_new_and_existing_stores_only_new(h):
    sid = new_id()
    assert h.put(statement(), sid).status_code == 204
    r = h.post([statement(id=sid), statement()])
    assert r.status_code == 200
    assert r.json()[0] == sid
    assert len(h.statements_in_kafka()) == 2


def test_xapi_2_0_statement_version_set_to_2_0_0(h):
    r = h.post(statement(), version="2.0.0")
    assert r.status_code == 200
    assert h.statements_in_kafka()[0]["version"] == "2.0.0"


def test_xapi_2_0_context_agents_rejected_under_1_0_3_accepted_under_2_0(h):
    st = statement(
        context={"contextAgents": [{"objectType": "contextAgent", "agent": {"mbox": "mailto:t@example.com"}}]}
    )
    assert h.post(st, version="1.0.3").status_code == 400
    assert h.post(st, version="2.0.0").status_code == 200


def test_tenancy_same_id_in_two_schools_is_independent(h):
    sid = new_id()
    assert h.put(statement(), sid, key="key-a").status_code == 204
    # School B does not learn that A has this id: its own, different statement is accepted.
    assert h.put(statement(verb={"id": "http://adlnet.gov/expapi/verbs/failed"}), sid, key="key-b").status_code == 204
    assert h.get({"statementId": sid}, key="key-b").json()["verb"]["id"].endswith("failed")
    assert h.get({"statementId": sid}, key="key-a").json()["verb"]["id"].endswith("completed")
    assert all(s["id"] != sid for s in h.get(key="key-b").json()["statements"] if s["verb"]["id"].endswith("completed"))


# -- limits ---------------------------------------------------------------------------------
def test_request_body_over_limit_413_with_clear_message():
    with Harness(GatewayConfig(max_body_bytes=2_000)) as h:
        r = h.post([statement() for _ in range(20)])
        assert r.status_code == 413
        assert "2000 bytes" in r.json()["error"]["message"]
        assert h.committed == []


def test_batch_over_limit_413_with_clear_message():
    with Harness(GatewayConfig(max_batch=3)) as h:
        r = h.post([statement() for _ in range(4)])
        assert r.status_code == 413
        assert r.json()["error"]["rule"] == "batch.too-large"
        assert "at most 3" in r.json()["error"]["message"]
        assert h.post([statement() for _ in range(3)]).status_code == 200


# -- voiding --------------------------------------------------------------------------------
def _voiding(target: str, **extra) -> dict:
    return {
        "actor": {"mbox": "mailto:teacher@example.com"},
        "verb": {"id": "http://adlnet.gov/expapi/verbs/voided", "display": {"en-US": "voided"}},
        "object": {"objectType": "StatementRef", "id": target},
        **extra,
    }


def test_xapi_1_0_3_data_2_3_2_voided_statement_hidden_but_returned_by_voided_statement_id(h):
    target = new_id()
    assert h.put(statement(), target).status_code == 204
    vid = h.post(_voiding(target)).json()[0]
    assert h.get({"statementId": target}).status_code == 404
    r = h.get({"voidedStatementId": target})
    assert r.status_code == 200 and r.json()["id"] == target
    assert h.get({"voidedStatementId": vid}).status_code == 404
    ids = [s["id"] for s in h.get().json()["statements"]]
    assert target not in ids and vid in ids


def test_xapi_1_0_3_data_2_3_2_voiding_a_voiding_statement_rejected_400(h):
    target = new_id()
    h.put(statement(), target)
    vid = h.post(_voiding(target)).json()[0]
    r = h.post(_voiding(vid))  # the index knows the first voiding
    assert r.status_code == 400 and r.json()["error"]["rule"] == "voiding.target-is-voiding"
    assert r.json()["error"]["path"] == "$[0].object.id"
    v1 = new_id()
    r = h.post([_voiding(target, id=v1), _voiding(v1)])  # same batch
    assert r.status_code == 400
    assert len(h.statements_in_kafka()) == 2


def test_xapi_1_0_3_comm_2_1_4_statements_targeting_voided_statement_still_match_filters(h):
    target = new_id()
    h.put(statement(object={"id": "http://example.com/activities/explosives"}), target)
    vid = h.post(_voiding(target)).json()[0]
    r = h.get({"activity": "http://example.com/activities/explosives"})
    assert [s["id"] for s in r.json()["statements"]] == [vid]


# -- GET --------------------------------------------------------------------------------------
def test_xapi_1_0_3_comm_2_1_3_s2_b1_statement_id_and_voided_statement_id_together_400(h):
    assert h.get({"statementId": new_id(), "voidedStatementId": new_id()}).status_code == 400


def test_xapi_1_0_3_comm_2_1_3_s2_b2_statement_id_with_other_parameter_400(h):
    assert h.get({"statementId": new_id(), "verb": "http://x.example/v"}).status_code == 400
    assert h.get({"statementId": new_id(), "format": "ids", "attachments": "false"}).status_code == 404


def test_xapi_1_0_3_comm_2_1_3_unknown_or_miscased_parameter_400(h):
    assert h.get({"Verb": "http://x.example/v"}).status_code == 400
    assert h.get({"limit": "-1"}).status_code == 400
    assert h.get({"ascending": "yes"}).status_code == 400
    assert h.get({"agent": '{"name": "no ifi"}'}).status_code == 400


def test_xapi_1_0_3_comm_2_1_3_s2_b4_no_match_returns_empty_statement_result(h):
    r = h.get({"verb": "http://example.com/never"})
    assert r.status_code == 200
    assert r.json() == {"statements": [], "more": ""}


def test_xapi_1_0_3_comm_2_1_3_filters_agent_verb_activity_registration(h):
    reg = new_id()
    a = h.post(statement(context={"registration": reg})).json()[0]
    b = h.post(statement(actor={"mbox": "mailto:bob@example.com"})).json()[0]
    c = h.post(statement(verb={"id": "http://adlnet.gov/expapi/verbs/attempted"})).json()[0]
    group = {"objectType": "Group", "mbox": "mailto:team@example.com",
             "member": [{"mbox": "mailto:bob@example.com"}, {"mbox": "mailto:cy@example.com"}]}  # fmt: skip
    d = h.post(statement(actor=group)).json()[0]

    def ids(**params):
        return {s["id"] for s in h.get({k: v for k, v in params.items()}).json()["statements"]}

    assert ids(agent=json.dumps({"mbox": "mailto:bob@example.com"})) == {b, d}  # Groups with the member match
    assert ids(verb="http://adlnet.gov/expapi/verbs/attempted") == {c}
    assert ids(registration=reg) == {a}
    assert ids(activity="http://example.com/activities/geology") == {a, b, c, d}


def test_xapi_1_0_3_data_2_4_2_2_anonymous_group_actor_accepted(h):
    group = {"objectType": "Group", "member": [{"mbox": "mailto:bob@example.com"}, {"mbox": "mailto:cy@example.com"}]}
    assert h.post(statement(actor=group)).status_code == 200


def test_xapi_1_0_3_comm_2_1_3_related_agents_and_related_activities(h):
    st = statement(
        context={
            "instructor": {"mbox": "mailto:prof@example.com"},
            "contextActivities": {"parent": [{"id": "http://example.com/courses/earth"}]},
        }
    )
    sid = h.post(st).json()[0]
    prof = json.dumps({"mbox": "mailto:prof@example.com"})
    assert h.get({"agent": prof}).json()["statements"] == []
    assert [s["id"] for s in h.get({"agent": prof, "related_agents": "true"}).json()["statements"]] == [sid]
    course = "http://example.com/courses/earth"
    assert h.get({"activity": course}).json()["statements"] == []
    assert [s["id"] for s in h.get({"activity": course, "related_activities": "true"}).json()["statements"]] == [sid]


def test_xapi_1_0_3_comm_2_1_3_more_link_pages_everything_once_in_stored_order(h):
    ids = [h.post(statement()).json()[0] for _ in range(7)]
    seen, pages = [], 0
    r = h.get({"limit": "3"})
    while True:
        body = r.json()
        seen += [s["id"] for s in body["statements"]]
        pages += 1
        if not body["more"]:
            break
        r = h.http.get(f"http://127.0.0.1:{h.port}{body['more']}", headers=h.headers())
        assert r.status_code == 200
    assert pages == 3
    assert sorted(seen) == sorted(ids) and len(seen) == 7
    stored = [h.get({"statementId": i}).json()["stored"] for i in seen]
    assert stored == sorted(stored, reverse=True)
    asc = [s["id"] for s in h.get({"ascending": "true"}).json()["statements"]]
    assert asc == list(reversed(seen))


def test_xapi_1_0_3_comm_2_1_3_more_token_tampered_400(h):
    assert h.get({"more": "not-a-token"}).status_code == 400


def test_xapi_1_0_3_comm_2_1_3_since_exclusive_until_inclusive(h):
    first = h.post(statement()).json()[0]
    time.sleep(0.01)
    second = h.post(statement()).json()[0]
    s1 = h.get({"statementId": first}).json()["stored"]
    s2 = h.get({"statementId": second}).json()["stored"]
    assert {s["id"] for s in h.get({"since": s1}).json()["statements"]} == {second}
    assert {s["id"] for s in h.get({"until": s1}).json()["statements"]} == {first}
    assert {s["id"] for s in h.get({"since": s1, "until": s2}).json()["statements"]} == {second}


def test_xapi_1_0_3_comm_2_1_3_format_ids_and_canonical(h):
    sid = h.post(statement()).json()[0]
    ids = h.get({"statementId": sid, "format": "ids"}).json()
    assert ids["actor"] == {"objectType": "Agent", "mbox": "mailto:ada@example.com"}
    assert ids["verb"] == {"id": "http://adlnet.gov/expapi/verbs/completed"}
    assert ids["object"] == {"id": "http://example.com/activities/geology"}  # Activity Objects: only the id
    canonical = h.get({"statementId": sid, "format": "canonical"}, **{"Accept-Language": "fr-FR, en;q=0.5"}).json()
    assert canonical["verb"]["display"] == {"fr-FR": "terminé"}
    assert canonical["object"]["definition"]["name"] == {"fr-FR": "Géologie"}
    assert canonical["actor"]["name"] == "Ada"


def test_xapi_1_0_3_comm_2_1_3_exact_format_is_byte_for_byte_as_stored(h):
    sid = h.post(statement()).json()[0]
    assert h.get({"statementId": sid}).content == h.store.raw[("school-a", sid)][0]


def test_xapi_1_0_3_comm_2_1_3_s2_b8_last_modified_and_s2_b5_consistent_through(h):
    h.sink_through = None
    sid = h.post(statement()).json()[0]
    r = h.get({"statementId": sid})
    stored_ms = h.store.raw[("school-a", sid)][1]
    assert r.headers["Last-Modified"] == __import__("email.utils").utils.formatdate(stored_ms / 1000, usegmt=True)
    h.sink_through = stored_ms + 5_000
    time.sleep(0.6)  # the gateway refreshes the sink's progress every 0.2 s
    r = h.get({"statementId": sid})
    assert r.headers["X-Experience-API-Consistent-Through"].startswith(
        __import__("schemas.xapi.timefmt", fromlist=["format_ms"]).format_ms(stored_ms + 5_000)[:19]
    )
    assert "X-Experience-API-Consistent-Through" in h.post(statement()).headers


def test_an_idle_gateway_reads_the_sinks_progress_rarely_and_again_once_asked():
    """Each read of the sinks' progress is a ClickHouse query (~6 ms of CPU on chDB): at the busy
    interval, five a second, they were 29 of an idle gateway's 35 ms of CPU a second. Idle, it
    reads rarely; the next answer that carries Consistent-Through wakes the refresh."""
    config = GatewayConfig(consistent_refresh_s=0.02, consistent_idle_after_s=0.2, consistent_idle_refresh_s=60)
    h = Harness(config)
    reads: list[float] = []

    def counted() -> int | None:
        reads.append(time.monotonic())
        return h.sink_through

    h.gateway._consistent_through = counted
    with h:
        deadline = time.monotonic() + 20
        while not (reads and time.monotonic() - reads[-1] > 0.5):  # idle: no read for 25 intervals
            assert time.monotonic() < deadline, f"still reading the progress when idle: {len(reads)} reads"
            time.sleep(0.05)
        before = len(reads)
        time.sleep(1.0)
        assert len(reads) - before <= 1
        asked = len(reads)
        assert h.post(statement()).status_code == 200
        deadline = time.monotonic() + 20
        while len(reads) == asked:
            assert time.monotonic() < deadline, "the answer did not wake the refresh"
            time.sleep(0.02)


def test_xapi_1_0_3_comm_2_1_3_s2_b5_consistent_through_not_before_stored_of_any_returned_statement(h):
    first = h.post(statement()).json()[0]

    def acked(sid: str) -> int:
        # When Kafka acknowledged it: the sink's progress passes that once it has written it.
        return h.index.get("school-a", [sid])[sid].acked_ms

    h.sink_through = acked(first) + 1  # the sink has written the first statement
    time.sleep(0.01)
    second = h.post(statement()).json()[0]  # readable already, but the sink's progress lags
    stored_second = h.store.raw[("school-a", second)][1]
    assert stored_second > h.sink_through

    def answer():
        r = h.get()
        assert r.status_code == 200, r.text
        through = r.headers["X-Experience-API-Consistent-Through"]
        for s in r.json()["statements"]:
            assert s["stored"] <= through, (s["stored"], through)
        return [s["id"] for s in r.json()["statements"]], through

    time.sleep(0.06)  # a read re-reads the sink's progress if the last read is older than 50 ms
    ids, _ = answer()
    assert ids == [first]  # the snapshot the header covers
    h.sink_through = acked(second) + 1  # the sink caught up: seen without waiting for the 0.2 s refresh
    time.sleep(0.06)
    ids, _ = answer()
    assert ids == [second, first]


def test_xapi_1_0_3_comm_1_1_head_answers_like_get_without_body(h):
    sid = h.post(statement()).json()[0]
    get = h.get({"statementId": sid})
    head = h.http.head(h.url, params={"statementId": sid}, headers=h.headers())
    assert head.status_code == 200 and head.content == b""
    assert head.headers["Last-Modified"] == get.headers["Last-Modified"]
    assert h.http.head(h.url, params={"statementId": new_id()}, headers=h.headers()).status_code == 404


def test_unsupported_method_405(h):
    assert h.http.delete(h.url, headers=h.headers()).status_code == 405


# -- attachments ------------------------------------------------------------------------------
def _with_attachment(content: bytes, **att_extra) -> tuple[dict, str]:
    sha = hashlib.sha256(content).hexdigest()
    att = {"usageType": "http://example.com/usage/report", "display": {"en-US": "report"},
           "contentType": "text/plain", "length": len(content), "sha2": sha, **att_extra}  # fmt: skip
    return statement(attachments=[att]), sha


def _multipart(statements, parts, boundary="abcABC0123'()+_,-./:=?") -> tuple[bytes, str]:
    chunks = [f"--{boundary}\r\nContent-Type: application/json\r\n\r\n".encode(), orjson.dumps(statements)]
    for sha, data, headers in parts:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        chunks += [f"\r\n--{boundary}\r\nContent-Type: text/plain\r\n{head}X-Experience-API-Hash: {sha}\r\n\r\n".encode(),
                   data]  # fmt: skip
    chunks.append(f"\r\n--{boundary}--".encode())
    return b"".join(chunks), f'multipart/mixed; boundary="{boundary}"'


def test_xapi_1_0_3_comm_1_5_2_json_post_with_attachment_without_file_url_400(h):
    st, _ = _with_attachment(b"here is a simple attachment")
    r = h.post(st)
    assert r.status_code == 400 and r.json()["error"]["rule"] == "attachments.needs-multipart"
    st["attachments"][0]["fileUrl"] = "http://example.com/report.txt"
    assert h.post(st).status_code == 200


def test_xapi_1_0_3_comm_1_5_2_multipart_post_stores_content_returned_with_attachments_true(h):
    content = b"here is a simple attachment\r\n--not a boundary\x00\xff binary"
    st, sha = _with_attachment(content)
    body, ctype = _multipart([st], [(sha, content, {"Content-Transfer-Encoding": "binary"})])
    r = h.http.post(h.url, data=body, headers={**h.headers(), "Content-Type": ctype})
    assert r.status_code == 200, r.text
    sid = r.json()[0]
    plain = h.get({"statementId": sid})
    assert plain.headers["Content-Type"].startswith("application/json")
    r = h.get({"statementId": sid, "attachments": "true"})
    assert r.headers["Content-Type"].startswith("multipart/mixed")
    parts = multipart.parse(r.content, multipart.boundary_of(r.headers["Content-Type"]))
    assert json.loads(parts[0].body)["id"] == sid
    assert parts[1].body == content
    assert parts[1].headers["x-experience-api-hash"] == sha
    assert parts[1].headers["content-transfer-encoding"] == "binary"
    listing = h.get({"attachments": "true"})
    parts = multipart.parse(listing.content, multipart.boundary_of(listing.headers["Content-Type"]))
    assert [p.body for p in parts[1:]] == [content]


def test_xapi_1_0_3_comm_1_5_2_multipart_missing_part_hash_mismatch_and_unmatched_part_400(h):
    content = b"attachment data"
    st, sha = _with_attachment(content)
    body, ctype = _multipart([st], [])
    r = h.http.post(h.url, data=body, headers={**h.headers(), "Content-Type": ctype})
    assert r.status_code == 400 and r.json()["error"]["rule"] == "attachments.missing-part"
    body, ctype = _multipart([st], [(sha, b"other data", {})])
    r = h.http.post(h.url, data=body, headers={**h.headers(), "Content-Type": ctype})
    assert r.status_code == 400 and r.json()["error"]["rule"] == "attachments.part.hash-mismatch"
    extra = b"extra"
    body, ctype = _multipart([st], [(sha, content, {}), (hashlib.sha256(extra).hexdigest(), extra, {})])
    r = h.http.post(h.url, data=body, headers={**h.headers(), "Content-Type": ctype})
    assert r.status_code == 400 and r.json()["error"]["rule"] == "attachments.part.unmatched"
    body, ctype = _multipart([st], [(sha, content, {"Content-Transfer-Encoding": "base64"})])
    r = h.http.post(h.url, data=body, headers={**h.headers(), "Content-Type": ctype})
    assert r.status_code == 400 and r.json()["error"]["rule"] == "attachments.part.transfer-encoding"
    assert h.committed == [] and h.store.files == {}


def test_xapi_1_0_3_data_2_6_malformed_signature_400_well_formed_accepted(h):
    import base64

    def b64(d: bytes) -> str:
        return base64.urlsafe_b64encode(d).decode().rstrip("=")

    st = statement(id=new_id())

    def signed(alg: str, payload: dict) -> tuple[dict, bytes, str]:
        jws = f"{b64(orjson.dumps({'alg': alg}))}.{b64(orjson.dumps(payload))}.{b64(b'sig')}".encode()
        sha = hashlib.sha256(jws).hexdigest()
        att = {"usageType": "http://adlnet.gov/expapi/attachments/signature", "display": {"en-US": "signature"},
               "contentType": "application/octet-stream", "length": len(jws), "sha2": sha}  # fmt: skip
        return {**st, "attachments": [att]}, jws, sha

    for alg, payload, status in [("HS256", st, 400), ("RS256", {**st, "verb": {"id": "http://x.example/v"}}, 400),
                                 ("RS256", st, 200)]:  # fmt: skip
        doc, jws, sha = signed(alg, payload)
        body, ctype = _multipart([doc], [(sha, jws, {})])
        r = h.http.post(h.url, data=body, headers={**h.headers(), "Content-Type": ctype})
        assert r.status_code == status, (alg, r.text)


# -- alternate request syntax ---------------------------------------------------------------
def test_xapi_1_0_3_comm_1_3_alternate_syntax_put_and_get(h):
    sid = new_id()
    form = {"Authorization": h.headers()["Authorization"], "X-Experience-API-Version": "1.0.3",
            "Content-Type": "application/json", "statementId": sid, "content": json.dumps(statement())}  # fmt: skip
    r = h.http.post(h.url, params={"method": "PUT"}, data=form)
    assert r.status_code == 204, r.text
    r = h.http.post(h.url, params={"method": "GET"}, data={**{k: form[k] for k in ("Authorization",
                    "X-Experience-API-Version")}, "statementId": sid})  # fmt: skip
    assert r.status_code == 200 and r.json()["id"] == sid
    # HEAD tunnelled in a POST: the GET's status and headers, no body (Communication §2.1.3 HEAD).
    r = h.http.post(h.url, params={"method": "HEAD"}, data={**{k: form[k] for k in ("Authorization",
                    "X-Experience-API-Version")}, "statementId": sid})  # fmt: skip
    assert r.status_code == 200 and r.content == b"" and r.headers["X-Experience-API-Consistent-Through"]
    # Anything but 'method' in the query string is refused.
    r = h.http.post(h.url, params={"method": "PUT", "statementId": sid}, data=form)
    assert r.status_code == 400


def test_xapi_2_0_alternate_syntax_removed_rejected(h):
    form = {"X-Experience-API-Version": "2.0.0", "content": json.dumps(statement())}
    r = h.http.post(h.url, params={"method": "PUT"}, data=form, headers={"Authorization": h.headers()["Authorization"]})
    assert r.status_code == 400 and r.json()["error"]["rule"] == "alternate.removed"
    r = h.http.post(h.url, params={"method": "GET"}, headers=h.headers(version="2.0.0"))
    assert r.status_code == 400
    assert h.committed == []


# -- Kafka failures -------------------------------------------------------------------------
def test_kafka_send_failure_503_nothing_committed_and_id_free_for_retry():
    down = [True]
    with Harness(fail_send=lambda: RuntimeError("broker gone") if down[0] else None) as h:
        sid = new_id()
        r = h.put(statement(), sid)
        assert r.status_code == 503 and r.json()["error"]["rule"] == "kafka.unavailable"
        assert h.committed == []
        # The failed producer is dropped right after the answer went out (the sender's thread).
        deadline = time.monotonic() + 5
        while not any(p.closed for p in h.producers) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert any(p.closed for p in h.producers)
        down[0] = False  # Kafka is back
        assert h.put(statement(), sid).status_code == 204  # the failed attempt reserved nothing
        assert len(h.statements_in_kafka()) == 1


def test_kafka_hang_503_outcome_unknown_then_retry_with_same_id_is_safe():
    import threading

    gate = threading.Event()
    with Harness(block=gate) as h:
        sid = new_id()
        r = h.put(statement(), sid)
        assert r.status_code == 503 and r.json()["error"]["rule"] == "kafka.outcome-unknown"
        gate.set()  # Kafka comes back and the transaction commits after all
        for _ in range(50):
            if h.committed:
                break
            time.sleep(0.05)
        assert h.put(statement(), sid).status_code == 204
        assert len(h.statements_in_kafka()) == 1


def test_kafka_commit_failure_outcome_unknown_503_ids_stay_held():
    """A commit_transaction that fails after EndTxn(COMMIT) was sent is not "nothing written":
    Kafka may complete that commit. Not known after reading it back: the ids stay reserved,
    so a retry is held (never a second copy, never a false "nothing written") until the
    reservation is taken over as stale."""
    from kafka.errors import KafkaTimeoutError

    with Harness(fail_commit=KafkaTimeoutError("EndTxn not answered"), commit_lands=True) as h:
        sid = new_id()
        r = h.put(statement(), sid)
        assert r.status_code == 503, r.text
        assert r.json()["error"]["rule"] == "kafka.outcome-unknown" and r.headers["Retry-After"]
        for p in h.producers:
            p.fail_commit = None  # Kafka works again
        r = h.put(statement(), sid)
        assert r.status_code == 503 and r.json()["error"]["rule"] == "statement.held", r.text
        assert len(h.statements_in_kafka()) == 1


@pytest.mark.parametrize("landed", [True, False], ids=["committed", "aborted"])
def test_kafka_commit_failure_read_back_answers_what_kafka_did(landed):
    """The failed commit's record read back once the transactional id is re-initialized:
    committed -> 204 and the id accepted (a retry is a SAME, one copy); aborted -> 503
    "nothing written" and the id free (a retry stores it, one copy)."""
    from kafka.errors import KafkaTimeoutError

    with Harness(fail_commit=KafkaTimeoutError("EndTxn not answered"), commit_lands=landed,
                 read_committed=lambda *a: landed) as h:  # fmt: skip
        sid = new_id()
        r = h.put(statement(), sid)
        if landed:
            assert r.status_code == 204, r.text
        else:
            assert r.status_code == 503 and r.json()["error"]["rule"] == "kafka.unavailable", r.text
        for p in h.producers:
            p.fail_commit = None
        assert h.put(statement(), sid).status_code == 204
        assert len(h.statements_in_kafka()) == 1


def test_every_answer_is_counted_by_method_and_status(h):
    """The per-request metrics' children are looked up once and reused: each answer still counts."""
    from prometheus_client import REGISTRY

    def count(method: str, status: str) -> float:
        labels = {"method": method, "status": status}
        return REGISTRY.get_sample_value("learnpulse_gateway_requests_total", labels) or 0.0

    def observed(method: str) -> float:
        return REGISTRY.get_sample_value("learnpulse_gateway_request_seconds_count", {"method": method}) or 0.0

    ok, bad, timed = count("POST", "200"), count("POST", "400"), observed("POST")
    for _ in range(3):
        assert h.post(statement()).status_code == 200
    assert h.post({"actor": 1}).status_code == 400
    assert count("POST", "200") == ok + 3
    assert count("POST", "400") == bad + 1
    assert observed("POST") == timed + 4


def test_methods_outside_the_statement_resource_share_one_metrics_label(h):
    """A client names the method: counting each name it invents as a label would grow the
    metrics without bound (one series per name)."""
    from prometheus_client import REGISTRY

    before = REGISTRY.get_sample_value("learnpulse_gateway_requests_total", {"method": "other", "status": "405"}) or 0.0
    for name in ("PURGE", "MKCOL", "PROPFIND"):
        r = h.http.request(name, h.url, headers={"X-Experience-API-Version": "1.0.3"})
        assert r.status_code == 405, r.text
    after = REGISTRY.get_sample_value("learnpulse_gateway_requests_total", {"method": "other", "status": "405"})
    assert after == before + 3
    assert REGISTRY.get_sample_value("learnpulse_gateway_requests_total", {"method": "MKCOL", "status": "405"}) is None
