"""xAPI 1.0.3 statement requirements, one or more tests each, named by spec section."""

from __future__ import annotations

import copy

import pytest
from xapi_helpers import ACTIVITY, SHA256, accepted, cmi5_statement, rejected, statement

from schemas.xapi.validate import validate_statement

# ---------------------------------------------------------------------------------------
# §2.2 Formatting requirements


def test_xapi_1_0_3_data_2_2_typical_cmi5_statement_accepted() -> None:
    assert accepted(cmi5_statement())


@pytest.mark.parametrize("prop", ["actor", "verb", "object"])
def test_xapi_1_0_3_data_2_2_statement_must_use_actor_verb_object(prop: str) -> None:
    rejected(statement(**{prop: None}), f"statement.{prop}.required", f"$.{prop}")


@pytest.mark.parametrize(
    ("where", "path"),
    [
        (lambda s: s.update(inProgress=False), "$.inProgress"),
        (lambda s: s["actor"].update(firstName="Ana"), "$.actor.firstName"),
        (lambda s: s["verb"].update(name="x"), "$.verb.name"),
        (lambda s: s["object"].update(title="x"), "$.object.title"),
        (lambda s: s["object"]["definition"].update(label={}), "$.object.definition.label"),
        (lambda s: s.update(result={"grade": "A"}), "$.result.grade"),
        (lambda s: s.update(result={"score": {"percent": 5}}), "$.result.score.percent"),
        (lambda s: s.update(context={"course": "x"}), "$.context.course"),
        (lambda s: s.update(context={"contextActivities": {"sibling": []}}), "$.context.contextActivities.sibling"),
        (
            lambda s: s.update(actor={"account": {"homePage": "http://a.example", "name": "n", "id": 1}}),
            "$.actor.account.id",
        ),
        (
            lambda s: s.update(
                object={"objectType": "StatementRef", "id": "fd41c918-b88b-4b20-a0a5-a4c32391aaa0", "x": 1}
            ),
            "$.object.x",
        ),
        (lambda s: s.update(**{"odd key": 1}), '$["odd key"]'),
    ],
)
def test_xapi_1_0_3_data_2_2_unknown_property_rejected_at_every_level(where, path: str) -> None:
    doc = statement()
    where(doc)
    rejected(doc, "property.unknown", path)


@pytest.mark.parametrize(
    ("where", "path"),
    [
        (lambda s: s.update(Actor=s.pop("actor")), "$.Actor"),
        (lambda s: s["actor"].update(objecttype=s["actor"].pop("objectType")), "$.actor.objecttype"),
        (
            lambda s: s["object"]["definition"].update(Type=s["object"]["definition"].pop("type")),
            "$.object.definition.Type",
        ),
    ],
)
def test_xapi_1_0_3_data_2_2_key_with_wrong_case_rejected(where, path: str) -> None:
    doc = statement()
    where(doc)
    err = rejected(doc, "property.case", path)
    assert "case" in err.message


@pytest.mark.parametrize(
    ("where", "path"),
    [
        (lambda s: s.update(id=None), "$.id"),
        (lambda s: s["actor"].update(name=None), "$.actor.name"),
        (lambda s: s["actor"].update(objectType=None), "$.actor.objectType"),
        (lambda s: s["verb"].update(display=None), "$.verb.display"),
        (lambda s: s["verb"]["display"].update({"en-US": None}), '$.verb.display["en-US"]'),
        (lambda s: s["object"].update(definition=None), "$.object.definition"),
        (lambda s: s.update(result={"success": None}), "$.result.success"),
        (lambda s: s.update(result={"score": {"raw": None}}), "$.result.score.raw"),
        (lambda s: s.update(context={"registration": None}), "$.context.registration"),
        (lambda s: s.update(timestamp=None), "$.timestamp"),
    ],
)
def test_xapi_1_0_3_data_2_2_null_values_rejected(where, path: str) -> None:
    doc = statement()
    # statement(**{k: None}) deletes; set nulls explicitly instead
    where(doc)
    rejected(doc, "value.null", path)


def test_xapi_1_0_3_data_2_2_null_values_inside_extensions_accepted() -> None:
    doc = statement(result={"extensions": {"http://example.com/ext": None}})
    doc["context"] = {"extensions": {"http://example.com/ext": {"nested": None, "list": [None]}}}
    assert accepted(doc)


def test_xapi_1_0_3_data_2_2_string_where_number_required_rejected() -> None:
    err = rejected(statement(result={"score": {"raw": "82"}}), "result.score.raw.type", "$.result.score.raw")
    assert "even if it contains a number" in err.message


def test_xapi_1_0_3_data_2_2_boolean_where_number_required_rejected() -> None:
    rejected(statement(result={"score": {"scaled": True}}), "result.score.scaled.type", "$.result.score.scaled")


def test_xapi_1_0_3_data_2_2_string_where_boolean_required_rejected() -> None:
    err = rejected(statement(result={"success": "true"}), "result.success.type", "$.result.success")
    assert "even if it contains a boolean" in err.message


def test_xapi_1_0_3_data_2_2_number_where_boolean_required_rejected() -> None:
    rejected(statement(result={"completion": 1}), "result.completion.type", "$.result.completion")


@pytest.mark.parametrize(
    ("where", "path"),
    [
        (lambda s: s["actor"].update(objectType="agent"), "$.actor.objectType"),
        (lambda s: s["object"].update(objectType="activity"), "$.object.objectType"),
        (
            lambda s: s.update(object={"objectType": "statementref", "id": "fd41c918-b88b-4b20-a0a5-a4c32391aaa0"}),
            "$.object.objectType",
        ),
    ],
)
def test_xapi_1_0_3_data_2_2_object_type_values_are_case_sensitive(where, path: str) -> None:
    doc = statement()
    where(doc)
    err = rejected(doc, "objectType.value", path)
    assert "case-sensitive" in err.message


@pytest.mark.parametrize(
    ("where", "rule", "path"),
    [
        (lambda s: s.update(id=""), "statement.id.uuid", "$.id"),
        (lambda s: s["verb"].update(id=""), "verb.id.iri", "$.verb.id"),
        (lambda s: s["actor"].update(mbox=""), "actor.mbox.mailto", "$.actor.mbox"),
        (lambda s: s["object"].update(id=""), "activity.id.iri", "$.object.id"),
        (lambda s: s.update(timestamp=""), "timestamp.format", "$.timestamp"),
        (lambda s: s.update(result={"duration": ""}), "result.duration.format", "$.result.duration"),
        (lambda s: s.update(context={"language": ""}), "context.language.rfc5646", "$.context.language"),
    ],
)
def test_xapi_1_0_3_data_2_2_empty_string_where_format_required_rejected(where, rule: str, path: str) -> None:
    doc = statement()
    where(doc)
    rejected(doc, rule, path)


@pytest.mark.parametrize("doc", [[], "statement", 42, None])
def test_xapi_1_0_3_data_2_4_statement_must_be_an_object(doc) -> None:
    rejected(doc, "value.null" if doc is None else "statement.type", "$")


# ---------------------------------------------------------------------------------------
# §2.4.1 id, §4.4 UUIDs


@pytest.mark.parametrize(
    "sid",
    [
        "fd41c918-b88b-4b20-a0a5-a4c32391aaa0",
        "FD41C918-B88B-4B20-A0A5-A4C32391AAA0",
        "12345678-1234-5678-1234-567812345678",  # the spec's own example (§2.4), not RFC 4122 variant
        "0190f3c4-6a1e-7b2c-9d3e-4f5a6b7c8d9e",  # version 7
    ],
)
def test_xapi_1_0_3_data_2_4_1_statement_id_in_standard_uuid_form_accepted(sid: str) -> None:
    assert accepted(statement(id=sid))


@pytest.mark.parametrize(
    "sid",
    [
        "fd41c918b88b4b20a0a5a4c32391aaa0",
        "{fd41c918-b88b-4b20-a0a5-a4c32391aaa0}",
        "urn:uuid:fd41c918-b88b-4b20-a0a5-a4c32391aaa0",
        "fd41c918-b88b-4b20-a0a5-a4c32391aaa",
        "gd41c918-b88b-4b20-a0a5-a4c32391aaa0",
        "fd41c918-b88b-4b20-a0a5-a4c32391aaa0\n",
    ],
)
def test_xapi_1_0_3_data_4_4_uuid_not_in_standard_string_form_rejected(sid: str) -> None:
    rejected(statement(id=sid), "statement.id.uuid", "$.id")


def test_xapi_1_0_3_data_2_4_1_statement_without_id_accepted() -> None:
    assert accepted(statement(id=None))


def test_xapi_1_0_3_data_2_4_1_numeric_id_rejected() -> None:
    rejected(statement(id=12345), "statement.id.uuid", "$.id")


# ---------------------------------------------------------------------------------------
# §2.4.2 Actor: Agents, Groups, inverse functional identifiers


@pytest.mark.parametrize(
    "ifi",
    [
        {"mbox": "mailto:ana@example.com"},
        {"mbox_sha1sum": "ebd31e95054c018b10727ccffd2ef2ec3a016ee9"},
        {"openid": "http://ana.openid.example.org/"},
        {"account": {"homePage": "http://www.example.com", "name": "1625378"}},
    ],
)
def test_xapi_1_0_3_data_2_4_2_1_agent_with_each_single_ifi_accepted(ifi: dict) -> None:
    assert accepted(statement(actor=ifi))


def test_xapi_1_0_3_data_2_4_2_1_agent_with_two_ifis_rejected() -> None:
    err = rejected(
        statement(actor={"mbox": "mailto:a@example.com", "openid": "http://a.example.org/"}),
        "actor.ifi.exactly-one",
        "$.actor",
    )
    assert "found 2 (mbox, openid)" in err.message and "§2.4.2.1" in err.message


def test_xapi_1_0_3_data_2_4_2_1_agent_without_ifi_rejected() -> None:
    rejected(statement(actor={"objectType": "Agent", "name": "Ana"}), "actor.ifi.exactly-one", "$.actor")


def test_xapi_1_0_3_data_2_4_2_1_agent_name_must_be_a_string() -> None:
    rejected(statement(actor={"mbox": "mailto:a@example.com", "name": ["Ana"]}), "actor.name.type", "$.actor.name")


def test_xapi_1_0_3_data_2_4_2_1_agent_object_type_must_be_agent_or_group() -> None:
    rejected(
        statement(actor={"objectType": "Person", "mbox": "mailto:a@example.com"}),
        "objectType.value",
        "$.actor.objectType",
    )


def _group(**extra) -> dict:
    return {"objectType": "Group", "name": "Team", **extra}


MEMBERS = [
    {"mbox": "mailto:a@example.com"},
    {"objectType": "Agent", "account": {"homePage": "http://x.example", "name": "b"}},
]


def test_xapi_1_0_3_data_2_4_2_2_anonymous_group_with_members_accepted() -> None:
    assert accepted(statement(actor=_group(member=copy.deepcopy(MEMBERS))))


def test_xapi_1_0_3_data_2_4_2_2_anonymous_group_without_member_rejected() -> None:
    rejected(statement(actor=_group()), "group.member.required", "$.actor")


def test_xapi_1_0_3_data_2_4_2_2_anonymous_group_with_empty_member_list_rejected() -> None:
    rejected(statement(actor=_group(member=[])), "group.member.empty", "$.actor.member")


def test_xapi_1_0_3_data_2_4_2_2_identified_group_without_members_accepted() -> None:
    assert accepted(statement(actor=_group(mbox="mailto:team@example.com")))


def test_xapi_1_0_3_data_2_4_2_2_identified_group_with_members_accepted() -> None:
    assert accepted(
        statement(actor=_group(account={"homePage": "http://x.example", "name": "t"}, member=copy.deepcopy(MEMBERS)))
    )


def test_xapi_1_0_3_data_2_4_2_2_identified_group_with_two_ifis_rejected() -> None:
    rejected(
        statement(actor=_group(mbox="mailto:t@example.com", openid="http://t.example.org/")),
        "actor.ifi.exactly-one",
        "$.actor",
    )


@pytest.mark.parametrize("ifi", [{}, {"mbox": "mailto:team@example.com"}])
def test_xapi_1_0_3_data_2_4_2_2_group_must_not_contain_groups(ifi: dict) -> None:
    inner = _group(member=[{"mbox": "mailto:c@example.com"}])
    rejected(
        statement(actor=_group(**ifi, member=[MEMBERS[0], inner])),
        "group.member.agent",
        "$.actor.member[1].objectType",
    )


def test_xapi_1_0_3_data_2_4_2_2_group_member_must_be_a_valid_agent() -> None:
    bad = {"mbox": "mailto:a@example.com", "mbox_sha1sum": "ebd31e95054c018b10727ccffd2ef2ec3a016ee9"}
    rejected(statement(actor=_group(member=[MEMBERS[0], bad])), "actor.ifi.exactly-one", "$.actor.member[1]")


def test_xapi_1_0_3_data_2_4_2_2_group_member_must_be_an_array() -> None:
    rejected(statement(actor=_group(member={"mbox": "mailto:a@example.com"})), "group.member.type", "$.actor.member")


def test_xapi_1_0_3_data_2_4_2_2_group_needs_object_type_group() -> None:
    # Without objectType the actor is an Agent, and Agents have no "member".
    rejected(statement(actor={"member": copy.deepcopy(MEMBERS)}), "property.unknown", "$.actor.member")


@pytest.mark.parametrize(
    "mbox",
    [
        "mailto:user%@example.com",
        "mailto:user%4@example.com",
        "mailto:us{er@example.com",
        "ana@example.com",
        "mailto:",
        "mailto:ana",
        "mailto:ana@",
        "mailto:@example.com",
        "mailto:a@b.com?subject=hi",
        "mailto:a b@example.com",
        "http://example.com",
        "mailto:a@example.com,b@example.com",
    ],
)
def test_xapi_1_0_3_data_2_4_2_3_mbox_must_be_a_mailto_iri(mbox: str) -> None:
    rejected(statement(actor={"mbox": mbox}), "actor.mbox.mailto", "$.actor.mbox")


@pytest.mark.parametrize(
    "mbox",
    ["mailto:ana@example.com", "mailto:Ana.Lima+x@Example.COM", "MAILTO:ana@example.com", "mailto:ana@localhost",
     "mailto:ana%2Bx@example.com"],
)
def test_xapi_1_0_3_data_2_4_2_3_mbox_mailto_forms_accepted(mbox: str) -> None:
    assert accepted(statement(actor={"mbox": mbox}))


@pytest.mark.parametrize(
    "sha",
    [
        "ebd31e95054c018b10727ccffd2ef2ec3a016ee",
        "ebd31e95054c018b10727ccffd2ef2ec3a016ee9a",
        "zbd31e95054c018b10727ccffd2ef2ec3a016ee9",
        "",
    ],
)
def test_xapi_1_0_3_data_2_4_2_3_mbox_sha1sum_must_be_40_hex_digits(sha: str) -> None:
    rejected(statement(actor={"mbox_sha1sum": sha}), "actor.mbox_sha1sum.hex", "$.actor.mbox_sha1sum")


def test_xapi_1_0_3_data_2_4_2_3_mbox_sha1sum_upper_case_hex_accepted() -> None:
    assert accepted(statement(actor={"mbox_sha1sum": "EBD31E95054C018B10727CCFFD2EF2EC3A016EE9"}))


@pytest.mark.parametrize("openid", ["ana.openid.example.org", "/ana", "", 7])
def test_xapi_1_0_3_data_2_4_2_3_openid_must_be_a_uri(openid) -> None:
    rejected(statement(actor={"openid": openid}), "actor.openid.uri", "$.actor.openid")


def test_xapi_1_0_3_data_2_4_2_4_account_home_page_required() -> None:
    rejected(statement(actor={"account": {"name": "n"}}), "actor.account.homePage.required", "$.actor.account.homePage")


def test_xapi_1_0_3_data_2_4_2_4_account_home_page_must_be_an_irl() -> None:
    rejected(
        statement(actor={"account": {"homePage": "www.example.com", "name": "n"}}),
        "actor.account.homePage.irl",
        "$.actor.account.homePage",
    )


def test_xapi_1_0_3_data_2_4_2_4_account_name_required() -> None:
    rejected(
        statement(actor={"account": {"homePage": "http://x.example"}}),
        "actor.account.name.required",
        "$.actor.account.name",
    )


def test_xapi_1_0_3_data_2_4_2_4_account_name_must_be_a_non_empty_string() -> None:
    rejected(
        statement(actor={"account": {"homePage": "http://x.example", "name": 42}}),
        "actor.account.name.type",
        "$.actor.account.name",
    )
    rejected(
        statement(actor={"account": {"homePage": "http://x.example", "name": ""}}),
        "actor.account.name.empty",
        "$.actor.account.name",
    )


def test_xapi_1_0_3_data_2_4_2_4_account_must_be_an_object() -> None:
    rejected(statement(actor={"account": "x.example|n"}), "actor.account.type", "$.actor.account")


# ---------------------------------------------------------------------------------------
# §2.4.3 Verb, §2.3.2 voiding


def test_xapi_1_0_3_data_2_4_3_verb_id_required() -> None:
    rejected(statement(verb={"display": {"en-US": "did"}}), "verb.id.required", "$.verb.id")


@pytest.mark.parametrize("vid", ["completed", "adlnet.gov/expapi/verbs/completed", "http://example.com/a b", 3])
def test_xapi_1_0_3_data_2_4_3_verb_id_must_be_an_iri(vid) -> None:
    rejected(statement(verb={"id": vid}), "verb.id.iri", "$.verb.id")


def test_xapi_1_0_3_data_2_4_3_verb_without_display_accepted() -> None:
    assert accepted(statement(verb={"id": "http://example.com/verbs/did"}))


def test_xapi_1_0_3_data_2_4_3_verb_display_must_be_a_language_map() -> None:
    rejected(statement(verb={"id": "http://example.com/v", "display": "did"}), "language-map.type", "$.verb.display")
    rejected(
        statement(verb={"id": "http://example.com/v", "display": {"en_US": "did"}}),
        "language-map.key.rfc5646",
        "$.verb.display.en_US",
    )


def test_xapi_1_0_3_data_2_4_3_verb_must_be_an_object() -> None:
    rejected(statement(verb="completed"), "verb.type", "$.verb")


VOIDED = {"id": "http://adlnet.gov/expapi/verbs/voided", "display": {"en-US": "voided"}}
REF = {"objectType": "StatementRef", "id": "e05aa883-acaf-40ad-bf54-02c8ce485fb0"}


def test_xapi_1_0_3_data_2_3_2_voiding_statement_with_statement_ref_accepted() -> None:
    assert accepted(statement(verb=VOIDED, object=dict(REF)))


def test_xapi_1_0_3_data_2_3_2_voiding_statement_object_must_be_statement_ref() -> None:
    rejected(statement(verb=VOIDED), "verb.voided.statementref", "$.object")


# ---------------------------------------------------------------------------------------
# §2.4.4 Object: Activity, Agent/Group, StatementRef, SubStatement


def test_xapi_1_0_3_data_2_4_4_object_without_object_type_is_an_activity() -> None:
    assert accepted(statement(object={"id": "http://example.com/a"}))


def test_xapi_1_0_3_data_2_4_4_object_with_unknown_object_type_rejected() -> None:
    rejected(
        statement(object={"objectType": "Thing", "id": "http://example.com/a"}),
        "objectType.value",
        "$.object.objectType",
    )


def test_xapi_1_0_3_data_2_4_4_1_activity_id_required() -> None:
    rejected(statement(object={"objectType": "Activity"}), "activity.id.required", "$.object.id")


@pytest.mark.parametrize(
    "aid",
    [
        "non-absolute-activity-id",
        "//example.com/a",
        "http://example.com/a#b#c",
        "http://example.com/%zz",
        "http://exa mple.com",
        "",
    ],
)
def test_xapi_1_0_3_data_2_4_4_1_activity_id_must_be_an_absolute_iri(aid: str) -> None:
    rejected(statement(object={"id": aid}), "activity.id.iri", "$.object.id")


@pytest.mark.parametrize(
    "aid",
    [
        "http://example.com/a",
        "urn:uuid:fd41c918-b88b-4b20-a0a5-a4c32391aaa0",
        "http://example.com/فعل/خواندن",
        "tag:example.com,2024:a",
        "http://example.com/a%20b#frag",
    ],
)
def test_xapi_1_0_3_data_4_3_absolute_iris_accepted(aid: str) -> None:
    assert accepted(statement(object={"id": aid}))


def test_xapi_1_0_3_data_2_4_4_1_definition_type_must_be_an_iri() -> None:
    rejected(
        statement(object={"id": "http://example.com/a", "definition": {"type": "course"}}),
        "activity.definition.type.iri",
        "$.object.definition.type",
    )


def test_xapi_1_0_3_data_2_4_4_1_definition_more_info_must_be_an_irl() -> None:
    rejected(
        statement(object={"id": "http://example.com/a", "definition": {"moreInfo": "info.html"}}),
        "activity.definition.moreInfo.irl",
        "$.object.definition.moreInfo",
    )


def test_xapi_1_0_3_data_2_4_4_1_definition_name_and_description_are_language_maps() -> None:
    rejected(
        statement(object={"id": "http://example.com/a", "definition": {"name": "Quiz"}}),
        "language-map.type",
        "$.object.definition.name",
    )
    rejected(
        statement(object={"id": "http://example.com/a", "definition": {"description": {"en": 5}}}),
        "language-map.value.type",
        "$.object.definition.description.en",
    )


def test_xapi_1_0_3_data_2_4_4_1_definition_must_be_an_object() -> None:
    rejected(
        statement(object={"id": "http://example.com/a", "definition": []}),
        "activity.definition.type",
        "$.object.definition",
    )


# Appendix C: one definition per interactionType, with the component lists it supports.
INTERACTIONS = {
    "true-false": {"correctResponsesPattern": ["true"]},
    "choice": {
        "correctResponsesPattern": ["golf[,]tetris"],
        "choices": [{"id": "golf", "description": {"en-US": "Golf"}}, {"id": "tetris"}],
    },
    "fill-in": {"correctResponsesPattern": ["Bob's your uncle"]},
    "long-fill-in": {
        "correctResponsesPattern": ["{case_matters=false}{lang=en}To store and provide access to learning experiences."]
    },
    "matching": {
        "correctResponsesPattern": ["ben[.]3[,]chris[.]2"],
        "source": [{"id": "ben"}, {"id": "chris"}],
        "target": [{"id": "2"}, {"id": "3"}],
    },
    "performance": {"correctResponsesPattern": ["pong[.]1:[,]dg[.]:10"], "steps": [{"id": "pong"}, {"id": "dg"}]},
    "sequencing": {"correctResponsesPattern": ["tim[,]mike"], "choices": [{"id": "tim"}, {"id": "mike"}]},
    "likert": {"correctResponsesPattern": ["likert_3"], "scale": [{"id": "likert_0"}, {"id": "likert_3"}]},
    "numeric": {"correctResponsesPattern": ["4[:]"]},
    "other": {"correctResponsesPattern": ["(35.937432,-86.868896)"]},
}


def _interaction(itype: str, **extra) -> dict:
    definition = {"type": "http://adlnet.gov/expapi/activities/cmi.interaction", "interactionType": itype}
    definition.update(copy.deepcopy(INTERACTIONS.get(itype, {})))
    definition.update(extra)
    return statement(object={"id": "http://example.com/q", "definition": definition})


@pytest.mark.parametrize("itype", sorted(INTERACTIONS))
def test_xapi_1_0_3_data_2_4_4_1_every_interaction_type_with_its_component_lists_accepted(itype: str) -> None:
    assert accepted(_interaction(itype))


@pytest.mark.parametrize("itype", ["True-False", "multiple-choice", "", 3])
def test_xapi_1_0_3_data_2_4_4_1_interaction_type_must_be_valid(itype) -> None:
    rejected(_interaction(itype), "activity.definition.interactionType.value", "$.object.definition.interactionType")


@pytest.mark.parametrize(
    ("itype", "lst"),
    [
        ("true-false", "choices"),
        ("choice", "scale"),
        ("likert", "steps"),
        ("numeric", "source"),
        ("performance", "target"),
    ],
)
def test_xapi_1_0_3_data_2_4_4_1_component_list_not_supported_by_interaction_type_rejected(
    itype: str, lst: str
) -> None:
    rejected(
        _interaction(itype, **{lst: [{"id": "a"}]}),
        "activity.definition.components.not-allowed",
        f"$.object.definition.{lst}",
    )


def test_xapi_1_0_3_data_2_4_4_1_interaction_properties_without_interaction_type_rejected() -> None:
    doc = statement(object={"id": "http://example.com/q", "definition": {"correctResponsesPattern": ["a"]}})
    rejected(doc, "activity.definition.interactionType.required", "$.object.definition.correctResponsesPattern")


def test_xapi_1_0_3_data_2_4_4_1_correct_responses_pattern_is_an_array_of_strings() -> None:
    rejected(
        _interaction("choice", correctResponsesPattern="golf"),
        "activity.definition.correctResponsesPattern.type",
        "$.object.definition.correctResponsesPattern",
    )
    rejected(
        _interaction("numeric", correctResponsesPattern=[4]),
        "activity.definition.correctResponsesPattern.type",
        "$.object.definition.correctResponsesPattern[0]",
    )


def test_xapi_1_0_3_data_2_4_4_1_empty_correct_responses_pattern_accepted() -> None:
    assert accepted(_interaction("choice", correctResponsesPattern=[]))


def test_xapi_1_0_3_data_2_4_4_1_interaction_component_ids_must_be_distinct() -> None:
    rejected(
        _interaction("choice", choices=[{"id": "a"}, {"id": "b"}, {"id": "a"}]),
        "activity.definition.component.id.unique",
        "$.object.definition.choices[2].id",
    )


def test_xapi_1_0_3_data_2_4_4_1_interaction_component_needs_an_id() -> None:
    rejected(
        _interaction("likert", scale=[{"description": {"en": "x"}}]),
        "activity.definition.component.id.required",
        "$.object.definition.scale[0].id",
    )
    rejected(
        _interaction("likert", scale=[{"id": ""}]),
        "activity.definition.component.id.empty",
        "$.object.definition.scale[0].id",
    )
    rejected(
        _interaction("likert", scale=[{"id": 1}]),
        "activity.definition.component.id.type",
        "$.object.definition.scale[0].id",
    )


def test_xapi_1_0_3_data_2_4_4_1_interaction_component_description_is_a_language_map() -> None:
    rejected(
        _interaction("choice", choices=[{"id": "a", "description": {"en": 1}}]),
        "language-map.value.type",
        "$.object.definition.choices[0].description.en",
    )


def test_xapi_1_0_3_data_2_4_4_1_interaction_components_must_be_an_array() -> None:
    rejected(
        _interaction("choice", choices={"id": "a"}),
        "activity.definition.components.type",
        "$.object.definition.choices",
    )


def test_xapi_1_0_3_data_4_1_extension_keys_must_be_iris() -> None:
    doc = statement(object={"id": "http://example.com/a", "definition": {"extensions": {"color": "red"}}})
    rejected(doc, "extensions.key.iri", "$.object.definition.extensions.color")


def test_xapi_1_0_3_data_4_1_extensions_must_be_an_object() -> None:
    rejected(statement(result={"extensions": ["x"]}), "extensions.type", "$.result.extensions")


def test_xapi_1_0_3_data_4_1_extension_values_are_not_validated() -> None:
    ext = {"http://example.com/a": [1, "two", {"three": None}], "urn:x:b": False}
    assert accepted(statement(context={"extensions": ext}, result={"extensions": ext}))


def test_xapi_1_0_3_data_2_4_4_2_agent_as_object_requires_object_type() -> None:
    assert accepted(statement(object={"objectType": "Agent", "mbox": "mailto:b@example.com"}))
    # Without objectType the object is an Activity, which has no "mbox".
    rejected(statement(object={"mbox": "mailto:b@example.com"}), "property.unknown", "$.object.mbox")


def test_xapi_1_0_3_data_2_4_4_2_group_as_object_accepted_and_validated() -> None:
    assert accepted(statement(object=_group(member=copy.deepcopy(MEMBERS))))
    rejected(statement(object=_group()), "group.member.required", "$.object")


def test_xapi_1_0_3_data_2_4_4_3_statement_ref_accepted() -> None:
    assert accepted(statement(object=dict(REF)))


@pytest.mark.parametrize("rid", ["e05aa883", "http://example.com/s/1", 1])
def test_xapi_1_0_3_data_2_4_4_3_statement_ref_id_must_be_a_uuid(rid) -> None:
    rejected(statement(object={"objectType": "StatementRef", "id": rid}), "statementref.id.uuid", "$.object.id")


def test_xapi_1_0_3_data_2_4_4_3_statement_ref_id_required() -> None:
    rejected(statement(object={"objectType": "StatementRef"}), "statementref.id.required", "$.object.id")


def _sub(**extra) -> dict:
    sub = {
        "objectType": "SubStatement",
        "actor": {"mbox": "mailto:test@example.com"},
        "verb": {"id": "http://example.com/visited", "display": {"en-US": "will visit"}},
        "object": {"objectType": "Activity", "id": "http://example.com/website"},
    }
    sub.update(extra)
    return sub


def test_xapi_1_0_3_data_2_4_4_3_sub_statement_accepted() -> None:
    sub = _sub(
        result={"completion": False},
        context={"platform": "web", "contextActivities": {"parent": {"id": "http://example.com/site"}}},
        timestamp="2999-01-01T00:00:00Z",  # a SubStatement MAY have a future timestamp (§2.4.7)
    )
    assert accepted(statement(verb={"id": "http://example.com/planned"}, object=sub))


@pytest.mark.parametrize(
    ("prop", "value"),
    [
        ("id", "fd41c918-b88b-4b20-a0a5-a4c32391aaa0"),
        ("stored", "2015-11-18T12:17:00Z"),
        ("version", "1.0.0"),
        ("authority", {"mbox": "mailto:x@example.com"}),
    ],
)
def test_xapi_1_0_3_data_2_4_4_3_sub_statement_must_not_have_id_stored_version_authority(prop: str, value) -> None:
    rejected(statement(object=_sub(**{prop: value})), "substatement.property.forbidden", f"$.object.{prop}")


def test_xapi_1_0_3_data_2_4_4_3_sub_statement_must_not_be_nested() -> None:
    rejected(statement(object=_sub(object=_sub())), "substatement.nested", "$.object.object.objectType")


def test_xapi_1_0_3_data_2_4_4_3_sub_statement_is_validated_as_a_statement() -> None:
    rejected(statement(object=_sub(actor={"name": "no ifi"})), "actor.ifi.exactly-one", "$.object.actor")
    rejected(statement(object=_sub(verb=None) | {}), "value.null", "$.object.verb")
    sub = _sub()
    del sub["verb"]
    rejected(statement(object=sub), "statement.verb.required", "$.object.verb")


def test_xapi_1_0_3_data_2_4_4_3_sub_statement_context_revision_needs_activity_object() -> None:
    sub = _sub(object={"objectType": "Agent", "mbox": "mailto:b@example.com"}, context={"revision": "2"})
    rejected(statement(object=sub), "context.revision.activity-only", "$.object.context.revision")


# ---------------------------------------------------------------------------------------
# §2.4.5 Result, §2.4.5.1 Score, §4.6 Durations


def test_xapi_1_0_3_data_2_4_5_full_result_accepted() -> None:
    result = {
        "score": {"scaled": -1, "raw": -5.5, "min": -10, "max": 10.25},
        "success": False,
        "completion": True,
        "response": "",
        "duration": "P3Y1M29DT4H35M59.14S",
        "extensions": {"http://example.com/ext": 1},
    }
    assert accepted(statement(result=result))


def test_xapi_1_0_3_data_2_4_5_result_must_be_an_object() -> None:
    rejected(statement(result=[]), "result.type", "$.result")


def test_xapi_1_0_3_data_2_4_5_response_must_be_a_string() -> None:
    rejected(statement(result={"response": 42}), "result.response.type", "$.result.response")


@pytest.mark.parametrize("scaled", [-1, 1, 0, 0.5, -0.25, 1.0])
def test_xapi_1_0_3_data_2_4_5_1_scaled_between_minus_one_and_one_accepted(scaled) -> None:
    assert accepted(statement(result={"score": {"scaled": scaled}}))


@pytest.mark.parametrize("scaled", [1.0001, -1.5, 95, -2])
def test_xapi_1_0_3_data_2_4_5_1_scaled_outside_minus_one_and_one_rejected(scaled) -> None:
    rejected(statement(result={"score": {"scaled": scaled}}), "result.score.scaled.range", "$.result.score.scaled")


@pytest.mark.parametrize("raw", [0, 100, 50.5])
def test_xapi_1_0_3_data_2_4_5_1_raw_between_min_and_max_accepted(raw) -> None:
    assert accepted(statement(result={"score": {"raw": raw, "min": 0, "max": 100}}))


@pytest.mark.parametrize(
    ("score", "bad"),
    [({"raw": 101, "max": 100}, "raw"), ({"raw": -1, "min": 0}, "raw"), ({"raw": 5, "min": 10, "max": 20}, "raw")],
)
def test_xapi_1_0_3_data_2_4_5_1_raw_outside_min_and_max_rejected(score: dict, bad: str) -> None:
    rejected(statement(result={"score": score}), "result.score.raw.range", f"$.result.score.{bad}")


def test_xapi_1_0_3_data_2_4_5_1_raw_without_bounds_is_unrestricted() -> None:
    assert accepted(statement(result={"score": {"raw": -1e9}}))


@pytest.mark.parametrize(("lo", "hi"), [(10, 5), (0.5, -1)])
def test_xapi_1_0_3_data_2_4_5_1_min_must_be_less_than_max(lo, hi) -> None:
    rejected(statement(result={"score": {"min": lo, "max": hi}}), "result.score.min-max", "$.result.score.min")


@pytest.mark.parametrize(("lo", "hi", "raw"), [(10, 10, None), (0, 0, 0), (0.0, 0, None)])
def test_xapi_1_0_3_data_2_4_5_1_min_equal_to_max_has_its_own_rule(lo, hi, raw) -> None:
    # "min MUST be less than max": equality is refused too, but under its own rule id so that
    # a credential can tolerate it alone (zero-weight problems send min = max = 0).
    score = {"min": lo, "max": hi} if raw is None else {"min": lo, "max": hi, "raw": raw}
    err = rejected(statement(result={"score": score}), "result.score.min-max.equal", "$.result.score.min")
    assert "equal" in err.message and "2.4.5.1" in err.message


@pytest.mark.parametrize("name", ["scaled", "raw", "min", "max"])
def test_xapi_1_0_3_data_2_4_5_1_score_values_must_be_finite_numbers(name: str) -> None:
    rejected(statement(result={"score": {name: "0.5"}}), f"result.score.{name}.type", f"$.result.score.{name}")
    rejected(statement(result={"score": {name: float("nan")}}), f"result.score.{name}.type", f"$.result.score.{name}")


@pytest.mark.parametrize(
    "duration",
    [
        "PT4H35M59.14S",
        "P16559.14S",
        "P3Y1M29DT4H35M59.14S",
        "P3Y",
        "P4W",
        "PT1234S",
        "PT0H0M3S",
        "P1DT12H",
        "PT0.5S",
        "PT1,5S",
        "P0.5Y",
        "PT1M30.123456S",
    ],
)
def test_xapi_1_0_3_data_4_6_iso_8601_durations_accepted(duration: str) -> None:
    assert accepted(statement(result={"duration": duration}))


@pytest.mark.parametrize(
    "duration",
    [
        "P4W1D",
        "PT",
        "P",
        "1H",
        "PT1.5H30M",
        "P1.5Y2M",
        "P0001-02-03T04:05:06",
        "-PT1S",
        "pt1s",
        "PT1H ",
        "P1DT",
        "PT1S2M",
        "P1.5W2D",
        "PT1.S",
    ],
)
def test_xapi_1_0_3_data_4_6_malformed_durations_rejected(duration: str) -> None:
    rejected(statement(result={"duration": duration}), "result.duration.format", "$.result.duration")


# ---------------------------------------------------------------------------------------
# §2.4.6 Context


def test_xapi_1_0_3_data_2_4_6_full_context_accepted() -> None:
    context = {
        "registration": "ec531277-b57b-4c15-8d91-d292c5b2b8f7",
        "instructor": {"mbox": "mailto:teacher@example.com"},
        "team": _group(member=copy.deepcopy(MEMBERS)),
        "contextActivities": {
            "parent": [{"id": "http://example.com/test1"}],
            "grouping": [{"id": "http://example.com/Algebra1", "objectType": "Activity"}],
            "category": [
                {
                    "id": "https://w3id.org/xapi/cmi5/context/categories/cmi5",
                    "definition": {"type": "http://adlnet.gov/expapi/activities/profile"},
                }
            ],
            "other": [],
        },
        "revision": "1.2",
        "platform": "Example virtual meeting software",
        "language": "tlh",
        "statement": dict(REF),
        "extensions": {"http://example.com/profiles/meetings/extension/location": "X:\\meetings"},
    }
    assert accepted(statement(context=context))


def test_xapi_1_0_3_data_2_4_6_context_must_be_an_object() -> None:
    rejected(statement(context="ctx"), "context.type", "$.context")


@pytest.mark.parametrize("reg", ["not-a-uuid", "", 17])
def test_xapi_1_0_3_data_2_4_6_registration_must_be_a_uuid(reg) -> None:
    rejected(statement(context={"registration": reg}), "context.registration.uuid", "$.context.registration")


def test_xapi_1_0_3_data_2_4_6_instructor_may_be_an_agent_or_a_group() -> None:
    assert accepted(statement(context={"instructor": {"mbox": "mailto:t@example.com"}}))
    assert accepted(statement(context={"instructor": _group(member=copy.deepcopy(MEMBERS))}))
    rejected(statement(context={"instructor": {"name": "Mr T"}}), "actor.ifi.exactly-one", "$.context.instructor")


def test_xapi_1_0_3_data_2_4_6_team_must_be_a_group() -> None:
    rejected(statement(context={"team": {"mbox": "mailto:t@example.com"}}), "context.team.group", "$.context.team")
    rejected(statement(context={"team": _group()}), "group.member.required", "$.context.team")


def test_xapi_1_0_3_data_2_4_6_2_context_activities_single_activity_accepted() -> None:
    assert accepted(statement(context={"contextActivities": {"parent": {"id": "http://example.com/p"}}}))


def test_xapi_1_0_3_data_2_4_6_2_context_activities_keys_restricted() -> None:
    rejected(
        statement(context={"contextActivities": {"Parent": []}}), "property.case", "$.context.contextActivities.Parent"
    )


@pytest.mark.parametrize("value", ["http://example.com/p", ["http://example.com/p"], 1])
def test_xapi_1_0_3_data_2_4_6_2_context_activities_values_are_activities(value) -> None:
    path = "$.context.contextActivities.parent" + ("[0]" if isinstance(value, list) else "")
    rejected(
        statement(context={"contextActivities": {"parent": value}}),
        "context.contextActivities.type" if not isinstance(value, list) else "activity.type",
        path,
    )


def test_xapi_1_0_3_data_2_4_6_2_context_activity_is_validated_with_path() -> None:
    ca = {"parent": [{"id": "http://example.com/p"}, {"id": "p2"}]}
    rejected(
        statement(context={"contextActivities": ca}), "activity.id.iri", "$.context.contextActivities.parent[1].id"
    )
    ca = {"grouping": [{"id": "http://example.com/g", "objectType": "Agent"}]}
    rejected(
        statement(context={"contextActivities": ca}),
        "objectType.value",
        "$.context.contextActivities.grouping[0].objectType",
    )


@pytest.mark.parametrize("prop", ["revision", "platform"])
@pytest.mark.parametrize(
    "obj",
    [
        {"objectType": "Agent", "mbox": "mailto:b@example.com"},
        {"objectType": "StatementRef", "id": "e05aa883-acaf-40ad-bf54-02c8ce485fb0"},
    ],
)
def test_xapi_1_0_3_data_2_4_6_revision_and_platform_only_with_activity_object(prop: str, obj: dict) -> None:
    rejected(statement(object=obj, context={prop: "x"}), f"context.{prop}.activity-only", f"$.context.{prop}")
    assert accepted(statement(context={prop: "x"}))


def test_xapi_1_0_3_data_2_4_6_revision_must_be_a_string() -> None:
    rejected(statement(context={"revision": 2}), "context.revision.type", "$.context.revision")


@pytest.mark.parametrize(
    "lang",
    [
        "en",
        "en-US",
        "zh-Hant-TW",
        "tlh",
        "es-419",
        "de-CH-1901",
        "sgn-BE-FR",
        "i-klingon",
        "x-private",
        "en-a-bbb-x-a-ccc",
        "EN-us",
    ],
)
def test_xapi_1_0_3_data_2_4_6_language_rfc_5646_tags_accepted(lang: str) -> None:
    assert accepted(statement(context={"language": lang}))
    assert accepted(statement(verb={"id": "http://example.com/v", "display": {lang: "did"}}))


@pytest.mark.parametrize(
    "lang", ["en_US", "en-", "-en", "e", "12", "en--US", "en-US-", "abcdefghi", "en-a", "x", "de-419-419"]
)
def test_xapi_1_0_3_data_2_2_s4_b2_language_tags_not_matching_rfc_5646_rejected(lang: str) -> None:
    rejected(statement(context={"language": lang}), "context.language.rfc5646", "$.context.language")
    rejected(
        statement(verb={"id": "http://example.com/v", "display": {lang: "did"}}),
        "language-map.key.rfc5646",
        f"$.verb.display{'.' + lang if lang.isidentifier() else '[' + chr(34) + lang + chr(34) + ']'}",
    )


def test_xapi_1_0_3_data_2_4_6_statement_must_be_a_statement_ref() -> None:
    assert accepted(statement(context={"statement": dict(REF)}))
    rejected(
        statement(context={"statement": {"id": REF["id"]}}), "statementref.objectType", "$.context.statement.objectType"
    )
    rejected(
        statement(context={"statement": {"objectType": "StatementRef", "id": "x"}}),
        "statementref.id.uuid",
        "$.context.statement.id",
    )


def test_xapi_1_0_3_data_2_4_6_context_agents_are_not_xapi_1_0() -> None:
    doc = statement(
        context={"contextAgents": [{"objectType": "contextAgent", "agent": {"mbox": "mailto:a@example.com"}}]}
    )
    err = rejected(doc, "property.unknown", "$.context.contextAgents")
    assert "2.0" in err.message


# ---------------------------------------------------------------------------------------
# §2.4.7 Timestamp, §2.4.8 Stored, §4.5 Timestamps


@pytest.mark.parametrize(
    "ts",
    [
        "2015-11-18T12:17:00+00:00",
        "2015-11-18T12:17:00Z",
        "2015-11-18T12:17:00.123456789Z",
        "2014-07-23T12:34:02-05:00",
        "2015-11-18T12:17:00",  # §4.5 only SHOULD include a time zone
        "2015-11-18T12:17Z",  # reduced precision
        "2015-11-18T12:17:00,5+01",  # comma fraction, hour-only offset
        "20151118T121700Z",  # basic format
        "20151118T121700.25+0530",
        "2016-02-29T00:00:00Z",
        "2016-12-31T23:59:60Z",  # leap second
    ],
)
def test_xapi_1_0_3_data_4_5_iso_8601_timestamps_accepted(ts: str) -> None:
    assert accepted(statement(timestamp=ts))


@pytest.mark.parametrize(
    "ts",
    [
        "2015-11-18",
        "2015-11-18 12:17:00Z",
        "18/11/2015 12:17",
        "2015-13-01T00:00:00Z",
        "2015-02-29T00:00:00Z",
        "2015-04-31T00:00:00Z",
        "2015-11-18T24:00:00Z",
        "2015-11-18T12:60:00Z",
        "2015-11-18T12:17:00+25:00",
        "2015-11-18T12:17:00ZZ",
        "1447849020",
        "2015-11-18T12:17:00.Z",
    ],
)
def test_xapi_1_0_3_data_4_5_malformed_timestamps_rejected(ts: str) -> None:
    rejected(statement(timestamp=ts), "timestamp.format", "$.timestamp")


@pytest.mark.parametrize("ts", ["2015-11-18T12:17:00-00:00", "2015-11-18T12:17:00-00", "20151118T121700-0000"])
def test_xapi_1_0_3_data_4_5_negative_zero_offset_rejected(ts: str) -> None:
    rejected(statement(timestamp=ts), "timestamp.offset.negative-zero", "$.timestamp")


def test_xapi_1_0_3_data_2_4_7_numeric_timestamp_rejected() -> None:
    rejected(statement(timestamp=1447849020000), "timestamp.format", "$.timestamp")


def test_xapi_1_0_3_data_2_4_8_stored_is_accepted_and_validated() -> None:
    assert accepted(statement(stored="2016-12-02T15:12:41.005126+00:00"))
    rejected(statement(stored="yesterday"), "stored.format", "$.stored")


# ---------------------------------------------------------------------------------------
# §2.4.9 Authority


def test_xapi_1_0_3_data_2_4_9_authority_agent_accepted() -> None:
    assert accepted(
        statement(authority={"objectType": "Agent", "account": {"homePage": "http://lrs.example", "name": "school-1"}})
    )


def test_xapi_1_0_3_data_2_4_9_authority_three_legged_oauth_group_of_two_accepted() -> None:
    group = {
        "objectType": "Group",
        "member": [
            {"account": {"homePage": "http://example.com/xAPI/OAuth/Token", "name": "oauth_consumer_x75db"}},
            {"mbox": "mailto:bob@example.com"},
        ],
    }
    assert accepted(statement(authority=group))


@pytest.mark.parametrize("count", [1, 3])
def test_xapi_1_0_3_data_2_4_9_authority_group_must_have_two_agents(count: int) -> None:
    members = [{"mbox": f"mailto:m{i}@example.com"} for i in range(count)]
    rejected(
        statement(authority={"objectType": "Group", "member": members}), "authority.group.two-agents", "$.authority"
    )


def test_xapi_1_0_3_data_2_4_9_authority_identified_group_without_members_rejected() -> None:
    rejected(
        statement(authority={"objectType": "Group", "mbox": "mailto:g@example.com"}),
        "authority.group.two-agents",
        "$.authority",
    )


@pytest.mark.parametrize(
    "ifi",
    [{"mbox": "mailto:xapigroup@example.com"}, {"mbox_sha1sum": "cd9b00a5611f94eaa7b1661edab976068e364975"},
     {"openid": "http://openid.example.org/12345"}, {"account": {"homePage": "http://www.example.com", "name": "g"}}],
)  # fmt: skip
def test_xapi_1_0_3_data_2_4_9_authority_identified_group_of_two_rejected(ifi: dict) -> None:
    group = {"objectType": "Group", "name": "xAPI Group", **ifi,
             "member": [{"name": "agentA", "mbox": "mailto:agentA@example.com"},
                        {"name": "agentB", "mbox": "mailto:agentB@example.com"}]}  # fmt: skip
    rejected(statement(authority=group), "authority.group.anonymous", "$.authority")


def test_xapi_1_0_3_data_2_4_9_authority_is_validated_as_an_agent() -> None:
    rejected(statement(authority={"name": "lrs"}), "actor.ifi.exactly-one", "$.authority")


# ---------------------------------------------------------------------------------------
# §2.4.10 Version


@pytest.mark.parametrize("version", ["1.0.0", "1.0.3", "1.0.9", "1.0.10", "1.0"])
def test_xapi_1_0_3_data_2_4_10_version_starting_with_1_0_accepted(version: str) -> None:
    assert accepted(statement(version=version))


@pytest.mark.parametrize(
    "version", ["1.1.0", "2.0.0", "0.95", "1.0.", "v1.0.0", 1.0, "1.0-rc1", "1.0.3-", "1.0.3-rc..1", "1.0.3-01", "1.0.3 "]
)
def test_xapi_1_0_3_data_2_4_10_version_not_starting_with_1_0_rejected(version) -> None:
    rejected(statement(version=version), "version.format", "$.version")


@pytest.mark.parametrize("version", ["1.0.3-rc1", "1.0.0-alpha", "1.0.0-beta", "1.0.0-alpha.1", "1.0.2-0.3.7",
                                     "1.0.0+build.5", "1.0.3-rc.1+sha.5114f85"])  # fmt: skip
def test_xapi_1_0_3_data_2_4_10_with_comm_3_3_semver_pre_release_versions_accepted(version: str) -> None:
    # Data §2.4.10 asks for a version starting with "1.0."; Communication §3.3 says versions
    # are Semantic Versioning 1.0.0, whose pre-release (and build) suffixes keep that start.
    assert accepted(statement(version=version))


# ---------------------------------------------------------------------------------------
# §2.4.11 Attachments, §2.6 Signed statements


def _attachment(**extra) -> dict:
    att = {
        "usageType": "http://example.com/attachment-usage/test",
        "display": {"en-US": "A test attachment"},
        "description": {"en-US": "A test attachment (description)"},
        "contentType": "text/plain; charset=ascii",
        "length": 27,
        "sha2": SHA256,
    }
    att.update(extra)
    return {k: v for k, v in att.items() if v is not None}


def test_xapi_1_0_3_data_2_4_11_attachment_accepted() -> None:
    assert accepted(statement(attachments=[_attachment(), _attachment(fileUrl="https://example.com/a.txt")]))


@pytest.mark.parametrize("prop", ["usageType", "display", "contentType", "length", "sha2"])
def test_xapi_1_0_3_data_2_4_11_attachment_required_properties(prop: str) -> None:
    rejected(
        statement(attachments=[_attachment(**{prop: None})]), f"attachment.{prop}.required", f"$.attachments[0].{prop}"
    )


def test_xapi_1_0_3_data_2_4_11_attachment_usage_type_must_be_an_iri() -> None:
    rejected(
        statement(attachments=[_attachment(usageType="signature")]),
        "attachment.usageType.iri",
        "$.attachments[0].usageType",
    )


@pytest.mark.parametrize("ctype", ["text", "", "text/plain/extra", "text /plain", 5])
def test_xapi_1_0_3_data_2_4_11_attachment_content_type_must_be_a_media_type(ctype) -> None:
    rejected(
        statement(attachments=[_attachment(contentType=ctype)]),
        "attachment.contentType.media-type",
        "$.attachments[0].contentType",
    )


@pytest.mark.parametrize(
    ("length", "rule"),
    [
        ("27", "attachment.length.type"),
        (27.0, "attachment.length.type"),
        (True, "attachment.length.type"),
        (-1, "attachment.length.negative"),
    ],
)
def test_xapi_1_0_3_data_2_4_11_attachment_length_must_be_an_integer(length, rule: str) -> None:
    rejected(statement(attachments=[_attachment(length=length)]), rule, "$.attachments[0].length")


@pytest.mark.parametrize("sha2", [SHA256[:-1], "x" * 64, "", "ab" * 28, "AB" * 48, "ab" * 64])
def test_xapi_1_0_3_data_2_4_11_attachment_sha2_must_be_a_sha2_hex_digest(sha2: str) -> None:
    valid = len(sha2) in (56, 96, 128) and all(c in "0123456789abcdefABCDEF" for c in sha2)
    doc = statement(attachments=[_attachment(sha2=sha2)])
    if valid:
        assert accepted(doc)
    else:
        rejected(doc, "attachment.sha2.hex", "$.attachments[0].sha2")


def test_xapi_1_0_3_data_2_4_11_attachment_file_url_must_be_an_irl() -> None:
    rejected(
        statement(attachments=[_attachment(fileUrl="a.txt")]),
        "attachment.fileUrl.irl",
        "$.attachments[1 - 1].fileUrl".replace("1 - 1", "0"),
    )


def test_xapi_1_0_3_data_2_4_11_attachment_display_is_a_language_map() -> None:
    rejected(statement(attachments=[_attachment(display="A")]), "language-map.type", "$.attachments[0].display")


def test_xapi_1_0_3_data_2_4_11_attachments_must_be_an_array_of_objects() -> None:
    rejected(statement(attachments=_attachment()), "attachments.type", "$.attachments")
    rejected(statement(attachments=[_attachment(), "x"]), "attachments.type", "$.attachments[1]")


def test_xapi_1_0_3_data_2_6_signature_attachment_must_be_octet_stream() -> None:
    sig = "http://adlnet.gov/expapi/attachments/signature"
    assert accepted(statement(attachments=[_attachment(usageType=sig, contentType="application/octet-stream")]))
    rejected(
        statement(attachments=[_attachment(usageType=sig, contentType="application/jose")]),
        "attachment.signature.contentType",
        "$.attachments[0].contentType",
    )


def test_xapi_1_0_3_data_2_4_4_3_sub_statement_attachments_validated() -> None:
    sub = _sub(attachments=[_attachment(length="x")])
    rejected(statement(object=sub), "attachment.length.type", "$.object.attachments[0].length")


# ---------------------------------------------------------------------------------------
# Validator contract


def test_validate_statement_does_not_modify_its_input() -> None:
    doc = cmi5_statement()
    before = copy.deepcopy(doc)
    validate_statement(doc)
    assert doc == before


def test_validate_statement_path_prefix_is_applied() -> None:
    with pytest.raises(Exception) as err:
        validate_statement(statement(actor={"name": "x"}), path="$.statements[3]")
    assert err.value.path == "$.statements[3].actor"


def test_validate_statement_message_cites_the_spec_section() -> None:
    err = rejected(statement(result={"score": {"scaled": 2}}), "result.score.scaled.range", "$.result.score.scaled")
    assert err.message.startswith("xAPI 1.0.3 Data §2.4.5.1:")


def test_validate_statement_accepts_a_copy_of_the_base_activity() -> None:
    assert accepted(statement(object=copy.deepcopy(ACTIVITY)))


@pytest.mark.parametrize(
    ("where", "rule", "path"),
    [
        (lambda s: s.update(timestamp="\u0662\u0660\u0661\u0665-11-18T12:17:00Z"), "timestamp.format", "$.timestamp"),
        (lambda s: s.update(result={"duration": "PT\u0661S"}), "result.duration.format", "$.result.duration"),
        (lambda s: s.update(context={"language": "\u017fv"}), "context.language.rfc5646", "$.context.language"),
        (lambda s: s.update(context={"language": "\u212aa"}), "context.language.rfc5646", "$.context.language"),
        (lambda s: s.update(actor={"mbox": "ma\u0130lto:a@example.com"}), "actor.mbox.mailto", "$.actor.mbox"),
    ],
)
def test_xapi_1_0_3_data_2_2_formats_use_ascii_digits_and_letters_only(where, rule: str, path: str) -> None:
    doc = statement()
    where(doc)
    rejected(doc, rule, path)
