"""GET /statements parameters, the more cursor, and the ids/canonical formats (Communication §2.1.3)."""

from __future__ import annotations

import pytest

from producers.gateway.formats import canonical_format, choose_language, ids_format, parse_accept_language
from producers.gateway.protocol import XapiError
from producers.gateway.cursors import CursorSigner
from producers.gateway.query import StatementQuery, agent_ifi, parse_cursor, parse_query, parse_single


def test_xapi_1_0_3_comm_2_1_3_parse_query_defaults_and_limit_cap():
    q = parse_query({}, max_limit=500)
    assert q == StatementQuery(limit=500)
    assert parse_query({"limit": "10"}, 500).limit == 10
    assert parse_query({"limit": "100000"}, 500).limit == 500
    q = parse_query({"since": "2024-01-01T00:00:00Z", "until": "2024-01-01T01:00:00+01:00", "ascending": "true"}, 5)
    assert (q.since_ms, q.until_ms, q.ascending) == (1704067200000, 1704067200000, True)


@pytest.mark.parametrize(
    "params",
    [{"verb": "not an iri"}, {"activity": " "}, {"registration": "x"}, {"since": "yesterday"}, {"limit": "1.5"},
     {"format": "full"}, {"related_agents": "1"}, {"Agent": "{}"}, {"agent": "[]"},
     {"agent": '{"mbox": "a@example.com"}'}, {"agent": '{"mbox": "mailto:a@example.com", "openid": "http://x.y"}'},
     {"agent": '{"objectType": "Activity", "id": "http://x.y"}'}],
)  # fmt: skip
def test_xapi_1_0_3_comm_2_1_3_invalid_parameters_400(params):
    with pytest.raises(XapiError) as err:
        parse_query(params, 10)
    assert err.value.status == 400 and err.value.rule.startswith("query.")


def test_xapi_1_0_3_comm_2_1_3_agent_parameter_canonical_ifi():
    assert agent_ifi('{"mbox": "mailto:Ada@Example.COM"}') == agent_ifi(
        '{"objectType": "Agent", "mbox": "mailto:Ada@example.com"}'
    )
    assert agent_ifi('{"account": {"homePage": "http://lms.example", "name": "42"}}') == "account:http://lms.example|42"
    assert agent_ifi('{"objectType": "Group", "openid": "http://id.example/g"}') == "openid:http://id.example/g"


def test_xapi_1_0_3_comm_2_1_3_single_statement_parameters():
    sid = "E05AA883-ACAF-40AD-BF54-02C8CE485FB0"
    q = parse_single({"voidedStatementId": sid, "format": "ids", "attachments": "true"})
    assert (q.statement_id, q.voided, q.format, q.attachments) == (sid.lower(), True, "ids", True)
    assert parse_single({"verb": "http://x.example"}) is None
    for params in (
        {"statementId": sid, "voidedStatementId": sid},
        {"statementId": sid, "limit": "1"},
        {"statementId": "1"},
    ):
        with pytest.raises(XapiError):
            parse_single(params)


def test_more_cursor_round_trip_and_tamper_refused():
    signer = CursorSigner(b"k" * 32)
    q = parse_query({"verb": "http://adlnet.gov/expapi/verbs/completed", "limit": "3"}, 10)
    token = q.next_cursor((1700000000000, "e05aa883-acaf-40ad-bf54-02c8ce485fb0"), signer)
    back = parse_cursor(token, signer, 10)
    assert (
        back.verb == q.verb
        and back.limit == 3
        and back.after == (1700000000000, "e05aa883-acaf-40ad-bf54-02c8ce485fb0")
    )
    for bad in ("", "e30", token[:-4], token.replace("A", "B", 1) + "!", token.split(".")[0]):
        with pytest.raises(XapiError) as err:
            parse_cursor(bad, signer, 10)
        assert err.value.rule == "query.more.signature"
    with pytest.raises(XapiError):
        parse_cursor(token, CursorSigner(b"another key, another gateway"), 10)


def test_more_cursor_page_cap_applies_to_every_page():
    signer = CursorSigner(b"k" * 32)
    q = parse_query({"limit": "400"}, 500)
    token = q.next_cursor((1700000000000, "e05aa883-acaf-40ad-bf54-02c8ce485fb0"), signer)
    # The cap was lowered between two pages: the next page obeys the new one.
    assert parse_cursor(token, signer, 100).limit == 100


def test_xapi_1_0_3_comm_2_1_3_format_ids_minimum_identifiers_everywhere():
    st = {
        "id": "e05aa883-acaf-40ad-bf54-02c8ce485fb0",
        "actor": {"objectType": "Group", "name": "team", "member": [
            {"name": "Ada", "mbox": "mailto:ada@example.com"}, {"name": "Bob", "account": {"homePage": "http://h", "name": "b"}}]},
        "verb": {"id": "http://v", "display": {"en": "v"}},
        "object": {"objectType": "SubStatement", "actor": {"name": "Cy", "openid": "http://cy"},
                   "verb": {"id": "http://w", "display": {"en": "w"}},
                   "object": {"id": "http://a", "definition": {"name": {"en": "A"}}}},
        "context": {"instructor": {"name": "Prof", "mbox": "mailto:p@example.com"},
                    "contextActivities": {"parent": [{"id": "http://p", "definition": {"name": {"en": "P"}}}]}},
        "authority": {"objectType": "Agent", "name": "LRS", "account": {"homePage": "http://lrs", "name": "s"}},
    }  # fmt: skip
    out = ids_format(st)
    assert out["actor"] == {"objectType": "Group", "member": [{"mbox": "mailto:ada@example.com"},
                                                              {"account": {"homePage": "http://h", "name": "b"}}]}  # fmt: skip
    assert out["verb"] == {"id": "http://v"}
    assert out["object"]["actor"] == {"openid": "http://cy"}
    assert out["object"]["verb"] == {"id": "http://w"} and out["object"]["object"] == {"id": "http://a"}
    assert out["context"]["instructor"] == {"mbox": "mailto:p@example.com"}
    assert out["context"]["contextActivities"]["parent"] == [{"id": "http://p"}]
    assert out["authority"] == {"objectType": "Agent", "account": {"homePage": "http://lrs", "name": "s"}}
    assert st["verb"]["display"] == {"en": "v"}  # input untouched


def test_xapi_1_0_3_comm_2_1_3_format_ids_activities_keep_only_their_id():
    # "Activity Objects contain only the id property" (Communication §2.1.3, format=ids):
    # an explicit "objectType": "Activity" goes too, on the object and in contextActivities.
    act = {"objectType": "Activity", "id": "http://a", "definition": {"name": {"en": "A"}}}
    st = {"id": "e05aa883-acaf-40ad-bf54-02c8ce485fb0", "actor": {"mbox": "mailto:a@example.com"},
          "verb": {"id": "http://v"}, "object": dict(act),
          "context": {"contextActivities": {"parent": [dict(act)], "grouping": dict(act)}}}  # fmt: skip
    out = ids_format(st)
    assert out["object"] == {"id": "http://a"}
    assert out["context"]["contextActivities"] == {"parent": [{"id": "http://a"}], "grouping": {"id": "http://a"}}


def test_xapi_1_0_3_comm_2_1_3_s4_accept_language_per_map():
    ranges = parse_accept_language("de;q=0.5, fr-CA, en;q=0.8, *;q=0.1, es;q=0")
    assert [r for r, _ in ranges] == ["fr-ca", "en", "de", "*"]
    assert choose_language(["en-US", "de-DE"], ranges) == "en-US"  # "en" matches en-US by prefix
    assert choose_language(["es", "ja"], ranges) == "es"  # only '*' matches: first entry
    assert choose_language(["ja"], []) == "ja"
    st = {"verb": {"id": "http://v", "display": {"en-US": "did", "fr-CA": "fait"}},
          "object": {"id": "http://a", "definition": {"name": {"de": "A", "en-GB": "A!"},
                     "choices": [{"id": "1", "description": {"de": "eins", "en": "one"}}]}},
          "actor": {"mbox": "mailto:a@example.com", "name": "kept"}}  # fmt: skip
    out = canonical_format(st, "fr-CA, en;q=0.8")
    assert out["verb"]["display"] == {"fr-CA": "fait"}
    assert out["object"]["definition"]["name"] == {"en-GB": "A!"}
    assert out["object"]["definition"]["choices"][0]["description"] == {"en": "one"}
    assert out["actor"] == st["actor"]
