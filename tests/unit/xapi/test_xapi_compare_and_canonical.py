"""Statement comparison (xAPI 1.0.3 Data §2.3.1) and the stored (canonical) form."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from xapi_helpers import SHA256, cmi5_statement, statement

from schemas.xapi.canonical import canonicalize
from schemas.xapi.compare import comparison_key, same_as_compared, same_statement
from schemas.xapi.timefmt import format_ms, parse_ms
from schemas.xapi.validate import validate_statement

AUTHORITY = {"objectType": "Agent", "account": {"homePage": "https://learnpulse.dev/schools", "name": "school-1"}}


def _changed(change: Callable[[dict[str, Any]], Any], base: dict[str, Any] | None = None) -> tuple[dict, dict]:
    a = base if base is not None else cmi5_statement()
    b = copy.deepcopy(a)
    change(b)
    validate_statement(a)
    validate_statement(b)
    return a, b


def test_xapi_1_0_3_data_2_3_1_identical_statements_are_the_same() -> None:
    assert same_statement(cmi5_statement(), cmi5_statement())


# Changes from the exceptions to immutability (xAPI Data §2.3.1.b1-b7): ignored.
IGNORED = [
    pytest.param(lambda s: s.update(stored="2024-03-06T00:00:00Z"), id="stored-assigned"),
    pytest.param(lambda s: s.update(authority=AUTHORITY), id="authority-assigned"),
    pytest.param(lambda s: s.update(version="1.0.0"), id="version-assigned"),
    pytest.param(lambda s: s.update(timestamp="2024-03-05T16:09:47.253+01:00"), id="timestamp-other-zone"),
    pytest.param(lambda s: s.update(timestamp="2024-03-05T15:09:47.2539Z"), id="timestamp-beyond-ms"),
    pytest.param(lambda s: s.update(id=s["id"].upper()), id="id-case"),
    pytest.param(lambda s: s["verb"].update(display={"fr": "réussi"}), id="verb-display"),
    pytest.param(lambda s: s["verb"].pop("display"), id="verb-display-absent"),
    pytest.param(lambda s: s["object"].pop("definition"), id="activity-definition"),
    pytest.param(
        lambda s: s["context"]["contextActivities"]["parent"][0].pop("definition"), id="context-activity-definition"
    ),
    pytest.param(lambda s: s["actor"].pop("objectType"), id="agent-object-type-default"),
    pytest.param(lambda s: s["object"].pop("objectType"), id="activity-object-type-default"),
    pytest.param(
        lambda s: s["context"]["contextActivities"].update(
            category=s["context"]["contextActivities"]["category"][0]
        ),
        id="context-activity-single-vs-array",
    ),
    pytest.param(
        lambda s: s["context"].update(registration=s["context"]["registration"].upper()), id="registration-case"
    ),
    pytest.param(lambda s: s["result"].update(duration="PT12M31.500S"), id="duration-trailing-zeros"),
    pytest.param(lambda s: s["result"].update(duration="PT12M31.509S"), id="duration-beyond-centiseconds"),
    pytest.param(lambda s: s["result"]["score"].update(raw=82.0), id="number-1-vs-1.0"),
    pytest.param(
        lambda s: s["actor"]["account"].update(homePage="HTTPS://LMS.Example.ORG"), id="iri-scheme-host-case"
    ),
    pytest.param(
        lambda s: s["object"].update(id="https://example.org/course/geo/au/%34c07"), id="iri-percent-unreserved"
    ),
    pytest.param(
        lambda s: s.update(
            attachments=[
                {
                    "usageType": "http://adlnet.gov/expapi/attachments/signature",
                    "display": {"en": "sig"},
                    "contentType": "application/octet-stream",
                    "length": 10,
                    "sha2": SHA256,
                }
            ]
        ),
        id="attachments",
    ),
    pytest.param(lambda s: s.pop("id"), id="id-absent-one-side"),
    pytest.param(lambda s: s.pop("timestamp"), id="timestamp-absent-one-side"),
]
# Any other difference: not ignored.
NOT_IGNORED = [
    pytest.param(lambda s: s.update(id=str(uuid.UUID(int=1))), id="id"),
    pytest.param(lambda s: s.update(timestamp="2024-03-05T15:09:47.254Z"), id="timestamp-instant"),
    pytest.param(lambda s: s["actor"]["account"].update(name="4712"), id="actor"),
    pytest.param(lambda s: s["actor"].update(name="Other"), id="actor-name"),
    pytest.param(lambda s: s["verb"].update(id="http://adlnet.gov/expapi/verbs/failed"), id="verb-id"),
    pytest.param(lambda s: s["object"].update(id="https://example.org/course/geo/AU/4c07"), id="iri-path-case"),
    pytest.param(lambda s: s["result"]["score"].update(raw=83), id="score"),
    pytest.param(lambda s: s["result"].update(success=False), id="success"),
    pytest.param(lambda s: s["result"].update(duration="PT751.5S"), id="duration-other-units"),
    pytest.param(lambda s: s["result"].update(response="b"), id="response-added"),
    pytest.param(lambda s: s["context"].update(registration=str(uuid.UUID(int=2))), id="registration"),
    pytest.param(
        lambda s: s["context"]["contextActivities"]["parent"].append({"id": "http://example.com/p2"}),
        id="context-activity-added",
    ),
    pytest.param(
        lambda s: s["context"]["extensions"].update(
            {"https://w3id.org/xapi/cmi5/context/extensions/sessionid": "other"}
        ),
        id="extension-value",
    ),
    pytest.param(lambda s: s["context"].update(language="en"), id="language-added"),
    pytest.param(lambda s: s.pop("result"), id="result-removed"),
]


@pytest.mark.parametrize("change", IGNORED)
def test_xapi_1_0_3_data_2_3_1_differences_from_immutability_exceptions_are_ignored(change) -> None:
    a, b = _changed(change)
    assert same_statement(a, b) and same_statement(b, a)


@pytest.mark.parametrize("change", NOT_IGNORED)
def test_xapi_1_0_3_data_2_3_1_other_differences_are_not_ignored(change) -> None:
    a, b = _changed(change)
    assert not same_statement(a, b) and not same_statement(b, a)


def _same_as_pruned(stored: dict[str, Any], new: dict[str, Any]) -> bool:
    """What the accepted-id index decides once it kept only the stored statement's key."""
    return same_as_compared(new, stored["id"], comparison_key(stored), parse_ms(stored["timestamp"]))


@pytest.mark.parametrize("change", IGNORED + NOT_IGNORED)
def test_comparison_key_decides_as_the_whole_stored_statement_does(change) -> None:
    # The stored side always has an id and a timestamp (the LRS sets them).
    for stored, new in (_changed(change), _changed(change)[::-1]):
        if "id" in stored and "timestamp" in stored:
            assert _same_as_pruned(stored, new) == same_statement(stored, new)


def test_comparison_key_of_unordered_parts_does_not_depend_on_their_order() -> None:
    members = [{"mbox": "mailto:a@example.com"}, {"mbox": "mailto:b@example.com"}, {"mbox": "mailto:a@example.com"}]
    a = statement(actor={"objectType": "Group", "name": "T", "member": members})
    a["context"] = {"extensions": {f"https://example.org/ext/{i}": {"v": i, "w": [i, str(i)]} for i in range(20)}}
    b = copy.deepcopy(a)
    b["actor"]["member"].reverse()
    b["context"]["extensions"] = dict(reversed(list(b["context"]["extensions"].items())))
    assert comparison_key(a) == comparison_key(b)
    b["actor"]["member"][0] = {"mbox": "mailto:b@example.com"}
    assert comparison_key(a) != comparison_key(b)


def test_comparison_key_tells_a_string_from_a_number_and_nesting_apart() -> None:
    a = statement()
    a["result"] = {"response": "1"}
    b = copy.deepcopy(a)
    b["result"] = {"response": 1}
    assert same_statement(a, b) is False and comparison_key(a) != comparison_key(b)
    c, d = copy.deepcopy(a), copy.deepcopy(a)
    c["context"] = {"extensions": {"https://example.org/x": ["a", ["b"]]}}
    d["context"] = {"extensions": {"https://example.org/x": [["a"], "b"]}}
    assert comparison_key(c) != comparison_key(d)


def test_xapi_1_0_3_data_2_3_1_group_members_are_unordered() -> None:
    members = [{"mbox": "mailto:a@example.com"}, {"mbox": "mailto:b@example.com"}, {"mbox": "mailto:a@example.com"}]
    a = statement(actor={"objectType": "Group", "name": "T", "member": members})
    b = copy.deepcopy(a)
    b["actor"]["member"].reverse()
    assert same_statement(a, b)
    b["actor"]["member"][0] = {"mbox": "mailto:b@example.com"}  # multiset differs: a,b,b vs a,a,b
    assert not same_statement(a, b)


def test_xapi_1_0_3_data_2_3_1_mbox_domain_is_case_insensitive_but_local_part_is_not() -> None:
    a = statement(actor={"mbox": "mailto:Ana@example.com"})
    assert same_statement(a, statement(actor={"mbox": "mailto:Ana@EXAMPLE.com"}))
    assert not same_statement(a, statement(actor={"mbox": "mailto:ana@example.com"}))


def test_xapi_1_0_3_data_2_3_1_language_tags_are_case_insensitive() -> None:
    assert same_statement(statement(context={"language": "en-US"}), statement(context={"language": "en-us"}))


def test_xapi_1_0_3_data_2_3_1_booleans_never_equal_numbers() -> None:
    a = statement(result={"extensions": {"http://example.com/x": True}})
    b = statement(result={"extensions": {"http://example.com/x": 1}})
    assert not same_statement(a, b)
    assert same_statement(b, statement(result={"extensions": {"http://example.com/x": 1.0}}))


def test_xapi_1_0_3_data_2_3_1_sub_statement_timestamp_is_compared() -> None:
    sub = {
        "objectType": "SubStatement",
        "actor": {"mbox": "mailto:a@example.com"},
        "verb": {"id": "http://example.com/v", "display": {"en": "v"}},
        "object": {"id": "http://example.com/a", "definition": {"name": {"en": "A"}}},
        "timestamp": "2030-01-01T00:00:00Z",
    }
    a = statement(object=sub)
    b = copy.deepcopy(a)
    b["object"]["verb"]["display"] = {"de": "v"}
    b["object"]["object"].pop("definition")
    b["object"]["timestamp"] = "2030-01-01T01:00:00+01:00"
    assert same_statement(a, b)
    b["object"].pop("timestamp")
    assert not same_statement(a, b)


def test_xapi_2_0_context_agents_are_compared() -> None:
    ctx = {
        "contextAgents": [
            {
                "objectType": "contextAgent",
                "agent": {"mbox": "mailto:c@example.com"},
                "relevantTypes": ["http://example.com/t"],
            }
        ]
    }
    a = statement(context=ctx)
    b = copy.deepcopy(a)
    assert same_statement(a, b)
    b["context"]["contextAgents"][0]["relevantTypes"] = ["http://example.com/u"]
    assert not same_statement(a, b)


def test_same_statement_survives_deeply_nested_extension_values() -> None:
    deep: Any = 1
    for _ in range(5000):
        deep = {"a": [deep]}
    a = statement(result={"extensions": {"http://example.com/x": deep}})
    b = statement(result={"extensions": {"http://example.com/x": deep}})
    assert same_statement(a, b)
    assert not same_statement(a, statement(result={"extensions": {"http://example.com/x": {"a": [deep, 2]}}}))


def test_same_statement_does_not_modify_its_arguments() -> None:
    a, b = cmi5_statement(), cmi5_statement()
    b["context"]["contextActivities"]["category"] = b["context"]["contextActivities"]["category"][0]
    before = copy.deepcopy((a, b))
    same_statement(a, b)
    assert (a, b) == before


# ---------------------------------------------------------------------------------------
# canonicalize: what the LRS stores (§2.4.1, §2.4.6.2, §2.4.7-§2.4.10)

STORED_MS = 1_709_651_400_000


def test_xapi_1_0_3_data_2_4_1_canonical_assigns_a_uuid_when_id_is_absent() -> None:
    out = canonicalize(statement(id=None), authority=AUTHORITY, stored_ms=STORED_MS)
    assert uuid.UUID(out["id"]).version == 4


def test_xapi_1_0_3_data_2_4_1_canonical_keeps_a_given_id() -> None:
    out = canonicalize(statement(), authority=AUTHORITY, stored_ms=STORED_MS)
    assert out["id"] == statement()["id"]


def test_xapi_1_0_3_data_2_4_8_canonical_sets_stored_and_defaults_timestamp_to_it() -> None:
    out = canonicalize(
        statement(timestamp=None, stored="2000-01-01T00:00:00Z"), authority=AUTHORITY, stored_ms=STORED_MS
    )
    assert out["stored"] == format_ms(STORED_MS) == out["timestamp"]
    kept = canonicalize(statement(), authority=AUTHORITY, stored_ms=STORED_MS)
    assert kept["timestamp"] == statement()["timestamp"]


def test_xapi_1_0_3_data_2_4_9_canonical_overwrites_authority() -> None:
    out = canonicalize(
        statement(authority={"mbox": "mailto:liar@example.com"}), authority=AUTHORITY, stored_ms=STORED_MS
    )
    assert out["authority"] == AUTHORITY


@pytest.mark.parametrize(("header", "expected"), [("1.0.3", "1.0.0"), ("1.0", "1.0.0"), ("2.0.0", "2.0.0")])
def test_xapi_1_0_3_data_2_4_10_canonical_sets_version_by_request_version(header: str, expected: str) -> None:
    assert canonicalize(statement(), authority=AUTHORITY, stored_ms=STORED_MS, version=header)["version"] == expected


def test_xapi_1_0_3_data_2_4_10_canonical_default_is_1_0_behaviour_and_keeps_a_given_version() -> None:
    assert canonicalize(statement(), authority=AUTHORITY, stored_ms=STORED_MS)["version"] == "1.0.0"
    assert (
        canonicalize(statement(version="1.0.3"), authority=AUTHORITY, stored_ms=STORED_MS, version="2.0.0")["version"]
        == "1.0.3"
    )


def test_xapi_1_0_3_data_2_4_6_2_canonical_stores_context_activities_as_arrays() -> None:
    single = {"id": "http://example.com/p"}
    sub = {
        "objectType": "SubStatement",
        "actor": {"mbox": "mailto:a@example.com"},
        "verb": {"id": "http://example.com/v"},
        "object": {"id": "http://example.com/a"},
        "context": {"contextActivities": {"other": single}},
    }
    doc = statement(object=sub, context={"contextActivities": {"parent": single, "grouping": [single]}})
    before = copy.deepcopy(doc)
    out = canonicalize(doc, authority=AUTHORITY, stored_ms=STORED_MS)
    assert out["context"]["contextActivities"] == {"parent": [single], "grouping": [single]}
    assert out["object"]["context"]["contextActivities"] == {"other": [single]}
    assert doc == before  # input untouched
    validate_statement(out)
    assert same_statement(doc, out)


def test_canonical_is_deterministic_apart_from_the_assigned_id() -> None:
    first = canonicalize(statement(id=None), authority=AUTHORITY, stored_ms=STORED_MS)
    second = canonicalize(statement(id=None), authority=AUTHORITY, stored_ms=STORED_MS)
    assert first.pop("id") != second.pop("id")
    assert first == second


def test_iri_normalization_keeps_only_short_iris_in_its_cache():
    """Long made-up IRIs (a client's attack on memory) are normalized every time, never kept."""
    from schemas.xapi import compare

    long_iri = "HTTP://Example.COM/" + "a%7e" * 2_000
    before = compare._iri_cached.cache_info().currsize
    assert compare._iri(long_iri) == "http://example.com/" + "a~" * 2_000
    assert compare._iri_cached.cache_info().currsize == before
    short = f"HTTP://Example.COM/short-{before}"
    assert compare._iri(short) == f"http://example.com/short-{before}"
    assert compare._iri_cached.cache_info().currsize == before + 1
