"""POST bodies (batches, raw JSON, version header), attachment parts, and xAPI 2.0 rules."""

from __future__ import annotations

import copy

import orjson
import pytest
from xapi_helpers import SHA256, accepted, cmi5_statement, rejected, statement

from schemas.errors import InvalidStatement
from schemas.xapi.validate import (
    attachments_needing_parts,
    parse_statements_json,
    validate_statement,
    validate_statements,
)

V2 = "2.0.0"

# ---------------------------------------------------------------------------------------
# Communication §3.3: the X-Experience-API-Version header


@pytest.mark.parametrize("header", ["1.0", "1.0.0", "1.0.1", "1.0.2", "1.0.3", "2.0", "2.0.0"])
def test_xapi_1_0_3_communication_3_3_supported_version_headers_accepted(header: str) -> None:
    assert accepted(statement(), header)


@pytest.mark.parametrize("header", ["0.95", "0.9", "1.1.0", "1", "3.0.0", "", None, "v1.0.3"])
def test_xapi_1_0_3_communication_3_3_unsupported_version_header_rejected(header) -> None:
    with pytest.raises(InvalidStatement) as err:
        validate_statement(statement(), version=header)
    assert err.value.rule == "version.header" and err.value.path == "$"


# ---------------------------------------------------------------------------------------
# Communication §2.1.2 POST Statements


def test_xapi_1_0_3_communication_2_1_2_single_statement_body_returns_a_list_of_one() -> None:
    doc = statement()
    assert validate_statements(doc) == [doc]


def test_xapi_1_0_3_communication_2_1_2_array_body_returns_the_statements() -> None:
    docs = [statement(id="fd41c918-b88b-4b20-a0a5-a4c32391aaa0"), statement(id=None), cmi5_statement()]
    assert validate_statements(docs) is docs


def test_xapi_1_0_3_communication_2_1_2_empty_array_rejected() -> None:
    with pytest.raises(InvalidStatement) as err:
        validate_statements([])
    assert (err.value.rule, err.value.path) == ("statements.empty", "$")


@pytest.mark.parametrize("body", ["[]", 3, None, True])
def test_xapi_1_0_3_communication_2_1_2_body_must_be_a_statement_or_an_array(body) -> None:
    with pytest.raises(InvalidStatement) as err:
        validate_statements(body)
    assert err.value.rule in ("statements.type", "value.null") and err.value.path == "$"


def test_xapi_1_0_3_communication_3_2_batch_is_all_or_nothing_with_indexed_path() -> None:
    docs = [statement(), statement(id=None, actor={"mbox": "ana@example.com"}), statement(id=None)]
    with pytest.raises(InvalidStatement) as err:
        validate_statements(docs)
    assert (err.value.rule, err.value.path) == ("actor.mbox.mailto", "$[1].actor.mbox")


def test_xapi_1_0_3_communication_2_1_2_duplicate_ids_in_a_batch_rejected() -> None:
    a = statement(id="fd41c918-b88b-4b20-a0a5-a4c32391aaa0")
    b = statement(id="FD41C918-B88B-4B20-A0A5-A4C32391AAA0")
    with pytest.raises(InvalidStatement) as err:
        validate_statements([a, statement(id=None), b])
    assert (err.value.rule, err.value.path) == ("statements.id.duplicate", "$[2].id")
    assert "$[0]" in err.value.message


def test_xapi_1_0_3_communication_2_1_2_statements_without_ids_are_not_duplicates() -> None:
    docs = [statement(id=None), statement(id=None)]
    assert validate_statements(docs) == docs


def test_xapi_1_0_3_communication_2_1_2_batch_version_header_applies_to_every_statement() -> None:
    docs = [statement(), statement(id=None, timestamp="2015-11-18T12:17:00")]
    assert validate_statements(docs, version="1.0.3") == docs
    with pytest.raises(InvalidStatement) as err:
        validate_statements(docs, version=V2)
    assert (err.value.rule, err.value.path) == ("timestamp.timezone.required", "$[1].timestamp")


# ---------------------------------------------------------------------------------------
# parse_statements_json


def test_parse_statements_json_parses_and_validates() -> None:
    doc = cmi5_statement()
    assert parse_statements_json(orjson.dumps([doc, statement(id=None)]), "1.0.3") == [doc, statement(id=None)]
    assert parse_statements_json(orjson.dumps(doc).decode(), "1.0.3") == [doc]


@pytest.mark.parametrize("raw", [b"", b"{", b'{"actor": }', b"[1,]", b'{"a": NaN}', b"\xff\xfe", b'{"a": 1} x'])
def test_xapi_1_0_3_communication_3_2_unparseable_json_rejected_with_json_parse(raw: bytes) -> None:
    with pytest.raises(InvalidStatement) as err:
        parse_statements_json(raw, "1.0.3")
    assert (err.value.rule, err.value.path) == ("json.parse", "$")
    assert isinstance(err.value.__cause__, orjson.JSONDecodeError)


def test_parse_statements_json_reports_validation_errors_with_batch_paths() -> None:
    raw = orjson.dumps([statement(), statement(id=None, verb={"id": "completed"})])
    with pytest.raises(InvalidStatement) as err:
        parse_statements_json(raw, "1.0.3")
    assert (err.value.rule, err.value.path) == ("verb.id.iri", "$[1].verb.id")


# ---------------------------------------------------------------------------------------
# Communication §1.5.2: attachments that need a multipart/mixed part


def _att(sha2: str = SHA256, **extra) -> dict:
    return {
        "usageType": "http://example.com/u",
        "display": {"en": "a"},
        "contentType": "text/plain",
        "length": 1,
        "sha2": sha2,
        **extra,
    }


def test_xapi_1_0_3_communication_1_5_2_attachments_with_file_url_need_no_part() -> None:
    doc = statement(attachments=[_att(fileUrl="https://example.com/a")])
    assert accepted(doc) and attachments_needing_parts(doc) == []


def test_xapi_1_0_3_communication_1_5_2_attachments_without_file_url_need_parts_once_each() -> None:
    other = "ab" * 32
    doc = statement(attachments=[_att(), _att(other), _att(fileUrl="https://example.com/x", sha2="cd" * 32), _att()])
    assert accepted(doc)
    assert attachments_needing_parts(doc) == [SHA256, other]


def test_xapi_1_0_3_communication_1_5_2_sub_statement_attachments_need_parts_too() -> None:
    sub = {
        "objectType": "SubStatement",
        "actor": {"mbox": "mailto:a@example.com"},
        "verb": {"id": "http://example.com/v"},
        "object": {"id": "http://example.com/a"},
        "attachments": [_att("ef" * 32)],
    }
    doc = statement(object=sub, attachments=[_att()])
    assert accepted(doc)
    assert attachments_needing_parts(doc) == [SHA256, "ef" * 32]


def test_xapi_1_0_3_communication_1_5_2_statement_without_attachments_needs_no_part() -> None:
    assert attachments_needing_parts(cmi5_statement()) == []


# ---------------------------------------------------------------------------------------
# IEEE 9274.1.1 (xAPI 2.0)


def _ctx_agent(**extra) -> dict:
    return {"objectType": "contextAgent", "agent": {"objectType": "Agent", "mbox": "mailto:coach@example.com"}, **extra}


def _ctx_group(**extra) -> dict:
    group = {
        "objectType": "Group",
        "name": "Study group",
        "member": [{"mbox": "mailto:a@example.com"}, {"mbox": "mailto:b@example.com"}],
    }
    return {"objectType": "contextGroup", "group": group, **extra}


def test_xapi_2_0_typical_cmi5_statement_accepted() -> None:
    assert accepted(cmi5_statement(), V2)


def test_xapi_2_0_context_agents_and_groups_accepted() -> None:
    ctx = {
        "contextAgents": [_ctx_agent(relevantTypes=["https://example.com/types/coach"]), _ctx_agent()],
        "contextGroups": [_ctx_group(relevantTypes=["https://example.com/types/cohort", "urn:x:peer"])],
    }
    assert accepted(statement(context=ctx), V2)


def test_xapi_2_0_empty_context_agents_array_accepted() -> None:
    assert accepted(statement(context={"contextAgents": [], "contextGroups": []}), V2)


def test_xapi_2_0_context_agent_object_type_required_and_exact() -> None:
    item = _ctx_agent()
    del item["objectType"]
    rejected(
        statement(context={"contextAgents": [item]}),
        "context.contextAgent.objectType",
        "$.context.contextAgents[0].objectType",
        V2,
    )
    rejected(
        statement(context={"contextAgents": [_ctx_agent(objectType="ContextAgent")]}),
        "objectType.value",
        "$.context.contextAgents[0].objectType",
        V2,
    )


def test_xapi_2_0_context_agent_agent_required_and_must_be_an_agent() -> None:
    item = _ctx_agent()
    del item["agent"]
    rejected(
        statement(context={"contextAgents": [item]}),
        "context.contextAgent.agent.required",
        "$.context.contextAgents[0].agent",
        V2,
    )
    group = _ctx_group()["group"]
    rejected(
        statement(context={"contextAgents": [_ctx_agent(agent=group)]}),
        "objectType.value",
        "$.context.contextAgents[0].agent.objectType",
        V2,
    )
    rejected(
        statement(context={"contextAgents": [_ctx_agent(), _ctx_agent(agent={"name": "x"})]}),
        "actor.ifi.exactly-one",
        "$.context.contextAgents[1].agent",
        V2,
    )


def test_xapi_2_0_context_group_group_must_be_a_group() -> None:
    rejected(
        statement(context={"contextGroups": [_ctx_group(group={"mbox": "mailto:a@example.com"})]}),
        "objectType.value",
        "$.context.contextGroups[0].group.objectType",
        V2,
    )
    rejected(
        statement(context={"contextGroups": [_ctx_group(group={"objectType": "Group"})]}),
        "group.member.required",
        "$.context.contextGroups[0].group",
        V2,
    )
    item = _ctx_group()
    del item["group"]
    rejected(
        statement(context={"contextGroups": [item]}),
        "context.contextGroup.group.required",
        "$.context.contextGroups[0].group",
        V2,
    )
    rejected(
        statement(context={"contextGroups": [_ctx_group(objectType="contextAgent")]}),
        "objectType.value",
        "$.context.contextGroups[0].objectType",
        V2,
    )


@pytest.mark.parametrize("kind", ["contextAgents", "contextGroups"])
def test_xapi_2_0_relevant_types_must_be_a_non_empty_array_of_iris(kind: str) -> None:
    make = _ctx_agent if kind == "contextAgents" else _ctx_group
    base = f"$.context.{kind}[0].relevantTypes"
    rejected(statement(context={kind: [make(relevantTypes=[])]}), "context.relevantTypes.empty", base, V2)
    rejected(
        statement(context={kind: [make(relevantTypes=["https://example.com/t", "coach"])]}),
        "context.relevantTypes.iri",
        base + "[1]",
        V2,
    )
    rejected(
        statement(context={kind: [make(relevantTypes="https://example.com/t")]}), "context.relevantTypes.type", base, V2
    )


@pytest.mark.parametrize("kind", ["contextAgents", "contextGroups"])
def test_xapi_2_0_context_agents_and_groups_must_be_arrays_of_objects_without_extra_keys(kind: str) -> None:
    make = _ctx_agent if kind == "contextAgents" else _ctx_group
    rejected(statement(context={kind: make()}), f"context.{kind}.type", f"$.context.{kind}", V2)
    rejected(statement(context={kind: ["x"]}), f"context.{kind}.type", f"$.context.{kind}[0]", V2)
    rejected(statement(context={kind: [make(role="coach")]}), "property.unknown", f"$.context.{kind}[0].role", V2)


def test_xapi_2_0_sub_statement_context_agents_validated() -> None:
    sub = {
        "objectType": "SubStatement",
        "actor": {"mbox": "mailto:a@example.com"},
        "verb": {"id": "http://example.com/v"},
        "object": {"id": "http://example.com/a"},
        "context": {"contextAgents": [_ctx_agent(relevantTypes=[])]},
    }
    rejected(statement(object=sub), "property.unknown", "$.object.context.contextAgents", "1.0.3")
    rejected(
        statement(object=sub), "context.relevantTypes.empty", "$.object.context.contextAgents[0].relevantTypes", V2
    )


@pytest.mark.parametrize(
    "ts", ["2015-11-18T12:17:00Z", "2015-11-18T12:17:00.123+02:00", "2015-11-18t12:17:00z", "2016-12-31T23:59:60Z"]
)
def test_xapi_2_0_rfc_3339_timestamps_with_offset_accepted(ts: str) -> None:
    assert accepted(statement(timestamp=ts), V2)


def test_xapi_2_0_timestamp_must_include_a_time_zone_offset() -> None:
    err = rejected(statement(timestamp="2015-11-18T12:17:00.123"), "timestamp.timezone.required", "$.timestamp", V2)
    assert "9274.1.1" in err.message
    rejected(statement(stored="2015-11-18T12:17:00"), "stored.timezone.required", "$.stored", V2)


@pytest.mark.parametrize(
    "ts", ["20151118T121700Z", "2015-11-18T12:17Z", "2015-11-18T12:17:00+01", "2015-11-18T12:17:00,5Z"]
)
def test_xapi_2_0_timestamp_must_be_rfc_3339(ts: str) -> None:
    rejected(statement(timestamp=ts), "timestamp.format", "$.timestamp", V2)
    assert accepted(statement(timestamp=ts), "1.0.3")


def test_xapi_2_0_negative_zero_offset_rejected() -> None:
    rejected(statement(timestamp="2015-11-18T12:17:00-00:00"), "timestamp.offset.negative-zero", "$.timestamp", V2)


@pytest.mark.parametrize("version", ["2.0.0", "1.0.0", "1.0.3"])
def test_xapi_2_0_statement_version_2_0_or_1_0_accepted(version: str) -> None:
    assert accepted(statement(version=version), V2)


@pytest.mark.parametrize("version", ["2.1.0", "3.0.0", "2.0", "0.95"])
def test_xapi_2_0_other_statement_versions_rejected(version: str) -> None:
    err = rejected(statement(version=version), "version.format", "$.version", V2)
    assert "9274.1.1" in err.message


def test_xapi_2_0_keeps_every_xapi_1_0_3_rule() -> None:
    rejected(
        statement(actor={"mbox": "mailto:a@example.com", "openid": "http://a.example/"}),
        "actor.ifi.exactly-one",
        "$.actor",
        V2,
    )
    rejected(statement(result={"score": {"scaled": 1.5}}), "result.score.scaled.range", "$.result.score.scaled", V2)
    rejected(statement(extra=1), "property.unknown", "$.extra", V2)


def test_xapi_2_0_rules_do_not_leak_into_1_0_3() -> None:
    doc = copy.deepcopy(statement(context={"contextAgents": [_ctx_agent()]}))
    assert accepted(doc, V2)
    rejected(doc, "property.unknown", "$.context.contextAgents", "1.0.3")
