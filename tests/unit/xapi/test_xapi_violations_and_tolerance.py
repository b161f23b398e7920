"""Every violation of a statement, tolerant validation, and ingestion policies (issue 14).

Statements are shaped like Open edX's (tests/openedx_shapes.py): each real defect kind
is refused strictly, reported with every rule id and path, and accepted — unchanged —
only by a policy that tolerates exactly its rules.
"""

from __future__ import annotations

import copy

import pytest
from xapi_helpers import statement

from schemas.errors import InvalidStatement
from schemas.policy import OPENEDX_RULES, IngestPolicy, PolicyError, check_tolerable, policy_of
from schemas.xapi.validate import (
    CONTINUABLE_RULES,
    MAX_VIOLATIONS,
    statement_violations,
    validate_statement,
    validate_statement_tolerant,
    validate_statements,
    validate_statements_tolerant,
)
from tests.openedx_shapes import KINDS, fresh


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_openedx_defect_is_refused_strictly_with_its_first_rule(kind):
    doc = fresh(kind)
    with pytest.raises(InvalidStatement) as err:
        validate_statement(doc)
    assert (err.value.rule, err.value.path) == KINDS[kind][1][0]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_openedx_defect_every_violation_reported_with_its_path(kind):
    found = statement_violations(fresh(kind))
    assert [(v.rule, v.path) for v in found] == KINDS[kind][1]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_openedx_preset_accepts_each_defect_kind_unchanged(kind):
    doc = fresh(kind)
    before = copy.deepcopy(doc)
    rules = validate_statement_tolerant(doc, tolerate=OPENEDX_RULES)
    assert rules == tuple(sorted({r for r, _ in KINDS[kind][1]}))
    assert doc == before  # stored as sent


def test_tolerating_one_rule_does_not_tolerate_another_in_the_same_statement():
    doc = fresh("group_and_zero_weight")
    with pytest.raises(InvalidStatement) as err:
        validate_statement_tolerant(doc, tolerate=frozenset({"objectType.value"}))
    assert (err.value.rule, err.value.path) == ("result.score.min-max.equal", "$.result.score.min")
    with pytest.raises(InvalidStatement) as err:
        validate_statement_tolerant(doc, tolerate=frozenset({"result.score.min-max.equal"}))
    assert err.value.rule == "objectType.value"


def test_equal_min_max_tolerated_but_reversed_range_still_refused():
    doc = fresh("zero_weight_score")
    doc["result"]["score"] = {"min": 5, "max": 0}
    with pytest.raises(InvalidStatement) as err:
        validate_statement_tolerant(doc, tolerate=OPENEDX_RULES)
    assert err.value.rule == "result.score.min-max"


def test_tolerated_defect_next_to_an_untolerable_one_is_refused_for_the_untolerable_one():
    doc = fresh("group_object")
    doc["timestamp"] = "30/11/2026 09:14"
    with pytest.raises(InvalidStatement) as err:
        validate_statement_tolerant(doc, tolerate=OPENEDX_RULES)
    assert (err.value.rule, err.value.path) == ("timestamp.format", "$.timestamp")
    assert [v.rule for v in statement_violations(doc)] == ["objectType.value", "timestamp.format"]


def test_group_activity_object_is_still_checked_as_an_activity_below_its_type():
    doc = fresh("group_object")
    doc["object"]["definition"]["type"] = "cmi.interaction"  # no scheme: a second, separate violation
    assert [(v.rule, v.path) for v in statement_violations(doc)] == [
        ("objectType.value", "$.object.objectType"),
        ("activity.definition.type.iri", "$.object.definition.type"),
    ]
    with pytest.raises(InvalidStatement):
        validate_statement_tolerant(doc, tolerate=frozenset({"objectType.value"}))


def test_actor_with_wrong_object_type_still_needs_its_identity():
    doc = statement(actor={"objectType": "Person", "name": "no identifier"})
    assert [v.rule for v in statement_violations(doc)] == ["objectType.value", "actor.ifi.exactly-one"]
    with pytest.raises(InvalidStatement) as err:
        validate_statement_tolerant(doc, tolerate=frozenset({"objectType.value"}))
    assert err.value.rule == "actor.ifi.exactly-one"


def test_wrong_json_type_is_never_walked_past_even_for_a_tolerated_rule():
    doc = fresh("bare_guid_grouping")
    doc["context"]["contextActivities"]["grouping"][0]["id"] = 42
    with pytest.raises(InvalidStatement) as err:
        validate_statement_tolerant(doc, tolerate=OPENEDX_RULES)
    assert err.value.rule == "activity.id.iri" and "found a number" in err.value.message


def test_every_unknown_property_reported():
    doc = statement(foo=1, bar=2)
    assert [(v.rule, v.path) for v in statement_violations(doc)] == [
        ("property.unknown", "$.foo"), ("property.unknown", "$.bar")
    ]  # fmt: skip


def test_valid_statement_has_no_violations_and_nothing_tolerated():
    assert statement_violations(statement()) == []
    assert validate_statement_tolerant(statement(), tolerate=OPENEDX_RULES) == ()


def test_too_many_violations_refused_even_when_all_are_tolerated():
    doc = statement(**{f"x{i}": i for i in range(MAX_VIOLATIONS + 5)})
    with pytest.raises(InvalidStatement) as err:
        validate_statement_tolerant(doc, tolerate=frozenset({"property.unknown"}))
    assert err.value.rule == "statement.violations.too-many"


def test_batch_tolerant_returns_rules_per_statement_and_keeps_batch_rules():
    docs = [fresh("group_object"), statement(id="aa41c918-b88b-4b20-a0a5-a4c32391aaa0"), fresh("zero_weight_score")]
    out, rules = validate_statements_tolerant(docs, tolerate=OPENEDX_RULES)
    assert out is docs and rules == [("objectType.value",), (), ("result.score.min-max.equal",)]
    with pytest.raises(InvalidStatement) as err:
        validate_statements(docs)
    assert err.value.path == "$[0].object.objectType"
    twice = [fresh("group_object")] * 2
    with pytest.raises(InvalidStatement) as err:
        validate_statements_tolerant(twice, tolerate=OPENEDX_RULES)
    assert err.value.rule == "statements.id.duplicate"
    with pytest.raises(InvalidStatement) as err:
        validate_statements_tolerant([fresh("zero_weight_score"), fresh("object_without_id")],
                                     tolerate=frozenset({"result.score.min-max.equal"}))  # fmt: skip
    assert (err.value.rule, err.value.path) == ("activity.id.required", "$[1].object.id")


def test_walk_state_is_reset_after_collecting():
    # A later strict validation must not pass over anything left from a tolerant walk.
    with pytest.raises(InvalidStatement):
        validate_statement_tolerant(fresh("group_and_zero_weight"), tolerate=frozenset({"objectType.value"}))
    with pytest.raises(InvalidStatement) as err:
        validate_statement(fresh("group_object"))
    assert err.value.rule == "objectType.value"


# -- policies --------------------------------------------------------------------------
def test_openedx_preset_is_exactly_what_its_statements_need():
    needed = {rule for _, found in KINDS.values() for rule, _ in found}
    assert OPENEDX_RULES == needed
    assert OPENEDX_RULES <= CONTINUABLE_RULES


@pytest.mark.parametrize(
    ("rule", "says"),
    [
        ("json.parse", "not JSON"),
        ("statement.id.uuid", "statement id"),
        ("statement.actor.required", "no learner"),
        ("actor.ifi.exactly-one", "pseudonym"),
        ("verb.id.iri", "verb id"),
        ("timestamp.format", "event time"),
        ("attachment.sha2.hex", "not a rule that can be tolerated"),
        ("no.such.rule", "not a rule that can be tolerated"),
    ],
)
def test_untolerable_rules_refused_with_a_clear_reason(rule, says):
    with pytest.raises(PolicyError) as err:
        check_tolerable([rule, "objectType.value"])
    assert rule in str(err.value) and says in str(err.value)
    assert "objectType.value" in str(err.value)  # the list of what can be tolerated


def test_policy_modes():
    assert IngestPolicy().tolerated == frozenset()
    assert IngestPolicy("strict", OPENEDX_RULES).tolerated == frozenset()
    assert policy_of("tolerant", presets=["openedx"]).tolerated == OPENEDX_RULES
    assert policy_of("tolerant", ["property.unknown"], ["openedx"]).tolerated == OPENEDX_RULES | {"property.unknown"}
    with pytest.raises(PolicyError, match="needs the rules"):
        IngestPolicy("tolerant")
    with pytest.raises(PolicyError, match="unknown preset"):
        policy_of("tolerant", presets=["moodle-ish"])
    with pytest.raises(PolicyError, match="strict, tolerant"):
        IngestPolicy("lenient")
