"""Property tests of the validator: generated valid statements pass, one violation is named.

``valid_statements()`` builds statements from the parts xAPI 1.0.3 allows (every kind of
actor, verbs, activities with definitions and interactions, results, contexts,
attachments with fileUrl, SubStatements). Each entry of ``MUTATIONS`` breaks exactly one
requirement of such a statement, leaving the rest valid; the validator must refuse the
result with that requirement's rule id, and when the rule is one the walk goes past,
``statement_violations`` must find that one violation and no other.
"""

from __future__ import annotations

import copy
import string
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.errors import InvalidStatement
from schemas.xapi.validate import (
    CONTINUABLE_RULES,
    SIGNATURE_USAGE,
    VOIDED,
    statement_violations,
    validate_statement,
)

Doc = dict[str, Any]
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------------------------------
# Valid parts

_LOWER = st.text(alphabet=string.ascii_lowercase + string.digits, min_size=1, max_size=8)
_WORD = st.text(alphabet=string.ascii_letters + string.digits + "-_", min_size=1, max_size=8)
uuids = st.uuids().map(str)
iris = st.builds(
    lambda scheme, host, segments: f"{scheme}://{host}.example.org/" + "/".join(segments),
    st.sampled_from(["http", "https"]),
    _LOWER,
    st.lists(_WORD, max_size=3),
) | st.builds(lambda u: f"urn:uuid:{u}", uuids)
language_tags = st.sampled_from(["en", "en-US", "de-DE", "fr", "es-419", "zh-Hans-CN", "und", "x-klingon", "sgn-BE-FR"])
language_maps = st.dictionaries(language_tags, st.text(max_size=20), min_size=1, max_size=3)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
extensions = st.dictionaries(iris, json_values, max_size=3)
mboxes = st.builds(
    lambda local, host, tld: f"mailto:{local}@{host}.{tld}", _LOWER, _LOWER, st.sampled_from(["org", "com"])
)
sha1s = st.binary(min_size=20, max_size=20).map(bytes.hex)
sha256s = st.binary(min_size=32, max_size=32).map(bytes.hex)
accounts = st.fixed_dictionaries({"homePage": iris, "name": st.text(min_size=1, max_size=12)})
# One inverse functional identifier, as a one-key dict.
ifis = st.one_of(
    mboxes.map(lambda v: {"mbox": v}),
    sha1s.map(lambda v: {"mbox_sha1sum": v}),
    iris.map(lambda v: {"openid": v}),
    accounts.map(lambda v: {"account": v}),
)
IFI_KEYS = ("mbox", "mbox_sha1sum", "openid", "account")
OTHER_IFI = {
    "mbox": {"mbox": "mailto:other@example.org"},
    "mbox_sha1sum": {"mbox_sha1sum": "0" * 40},
    "openid": {"openid": "https://openid.example.org/other"},
    "account": {"account": {"homePage": "https://lms.example.org", "name": "other"}},
}


@st.composite
def agents(draw: st.DrawFn) -> Doc:
    agent: Doc = draw(ifis)
    if draw(st.booleans()):
        agent["objectType"] = "Agent"
    if draw(st.booleans()):
        agent["name"] = draw(st.text(max_size=12))
    return agent


@st.composite
def groups(draw: st.DrawFn, identified: bool | None = None) -> Doc:
    """A Group: identified (one IFI, members optional) or anonymous (members required)."""
    if identified is None:
        identified = draw(st.booleans())
    group: Doc = {"objectType": "Group"}
    if identified:
        group.update(draw(ifis))
    if not identified or draw(st.booleans()):
        group["member"] = draw(st.lists(agents(), min_size=0 if identified else 1, max_size=3))
    if draw(st.booleans()):
        group["name"] = draw(st.text(max_size=12))
    return group


actors = st.one_of(agents(), groups())
# As a statement's object an Agent names its objectType (the default there is Activity).
object_agents = agents().map(lambda agent: {**agent, "objectType": "Agent"})
verbs = st.builds(
    lambda vid, display: {"id": vid, **({"display": display} if display else {})},
    iris,
    st.none() | language_maps,
)
INTERACTION_LISTS = {
    "true-false": (),
    "choice": ("choices",),
    "fill-in": (),
    "long-fill-in": (),
    "matching": ("source", "target"),
    "performance": ("steps",),
    "sequencing": ("choices",),
    "likert": ("scale",),
    "numeric": (),
    "other": (),
}


@st.composite
def components(draw: st.DrawFn) -> list[Doc]:
    ids = draw(st.lists(_WORD, min_size=1, max_size=4, unique=True))
    return [{"id": cid, **({"description": draw(language_maps)} if draw(st.booleans()) else {})} for cid in ids]


@st.composite
def definitions(draw: st.DrawFn) -> Doc:
    d: Doc = {}
    for key, values in (
        ("name", language_maps),
        ("description", language_maps),
        ("type", iris),
        ("moreInfo", iris),
        ("extensions", extensions),
    ):
        if draw(st.booleans()):
            d[key] = draw(values)
    if draw(st.booleans()):
        itype = draw(st.sampled_from(sorted(INTERACTION_LISTS)))
        d["interactionType"] = itype
        if draw(st.booleans()):
            d["correctResponsesPattern"] = draw(st.lists(st.text(max_size=10), max_size=3))
        for list_name in INTERACTION_LISTS[itype]:
            if draw(st.booleans()):
                d[list_name] = draw(components())
    return d


@st.composite
def activities(draw: st.DrawFn) -> Doc:
    act: Doc = {"id": draw(iris)}
    if draw(st.booleans()):
        act["objectType"] = "Activity"
    if draw(st.booleans()):
        act["definition"] = draw(definitions())
    return act


statement_refs = uuids.map(lambda u: {"objectType": "StatementRef", "id": u})


@st.composite
def scores(draw: st.DrawFn) -> Doc:
    score: Doc = {}
    if draw(st.booleans()):
        score["scaled"] = draw(st.floats(-1, 1) | st.sampled_from([-1, 0, 1]))
    lo = draw(st.none() | st.integers(-100, 100))
    hi = draw(st.none() | st.integers(-100, 100).filter(lambda h: lo is None or h > lo))
    if lo is not None:
        score["min"] = lo
    if hi is not None:
        score["max"] = hi
    if draw(st.booleans()):
        score["raw"] = draw(st.integers(-1000 if lo is None else lo, 1000 if hi is None else hi))
    return score


durations = st.sampled_from(["PT12M31.5S", "P2W", "PT0S", "P1DT2H", "PT1H2M3.45S", "P1Y2M3DT4H5M6S"])


@st.composite
def results(draw: st.DrawFn) -> Doc:
    res: Doc = {}
    for key, values in (
        ("score", scores()),
        ("success", st.booleans()),
        ("completion", st.booleans()),
        ("response", st.text(max_size=20)),
        ("duration", durations),
        ("extensions", extensions),
    ):
        if draw(st.booleans()):
            res[key] = draw(values)
    return res


@st.composite
def contexts(draw: st.DrawFn, object_is_activity: bool) -> Doc:
    ctx: Doc = {}
    kinds = st.sampled_from(["parent", "grouping", "category", "other"])
    optional: list[tuple[str, st.SearchStrategy[Any]]] = [
        ("registration", uuids),
        ("instructor", actors),
        ("team", groups()),
        ("contextActivities", st.dictionaries(kinds, st.lists(activities(), min_size=1, max_size=2) | activities())),
        ("language", language_tags),
        ("statement", statement_refs),
        ("extensions", extensions),
    ]
    if object_is_activity:
        optional += [("revision", st.text(max_size=8)), ("platform", st.text(max_size=8))]
    for key, values in optional:
        if draw(st.booleans()):
            ctx[key] = draw(values)
    return ctx


@st.composite
def attachments(draw: st.DrawFn) -> Doc:
    att: Doc = {
        "usageType": draw(iris),
        "display": draw(language_maps),
        "contentType": draw(st.sampled_from(["application/pdf", "image/png", "text/plain; charset=utf-8"])),
        "length": draw(st.integers(0, 10**9)),
        "sha2": draw(sha256s),
        "fileUrl": draw(iris),
    }
    if draw(st.booleans()):
        att["description"] = draw(language_maps)
    return att


timestamps = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)).map(
    lambda t: t.isoformat().replace("+00:00", "Z")
)


@st.composite
def parts(draw: st.DrawFn, objects: st.SearchStrategy[Doc]) -> Doc:
    """What Statements and SubStatements share."""
    obj = draw(objects)
    is_activity = obj.get("objectType", "Activity") == "Activity"
    doc: Doc = {"actor": draw(actors), "verb": draw(verbs), "object": obj}
    for key, values in (
        ("result", results()),
        ("context", contexts(is_activity)),
        ("timestamp", timestamps),
        ("attachments", st.lists(attachments(), max_size=2)),
    ):
        if draw(st.booleans()):
            doc[key] = draw(values)
    return doc


sub_objects = st.one_of(activities(), object_agents, groups(identified=True), statement_refs)
substatements = parts(sub_objects).map(lambda sub: {"objectType": "SubStatement", **sub})


@st.composite
def valid_statements(draw: st.DrawFn) -> Doc:
    doc = draw(parts(st.one_of(activities(), activities(), object_agents, groups(), statement_refs, substatements)))
    if draw(st.booleans()):
        doc["id"] = draw(uuids)
    if draw(st.booleans()):
        doc["version"] = draw(st.sampled_from(["1.0.0", "1.0.3", "1.0"]))
    return doc


# ---------------------------------------------------------------------------------------
# Valid statements pass


@SETTINGS
@given(valid_statements())
def test_generated_statement_is_valid_in_both_versions(doc: Doc) -> None:
    before = copy.deepcopy(doc)
    validate_statement(doc, version="1.0.3")
    validate_statement(doc, version="2.0.0")
    assert statement_violations(doc) == []
    assert doc == before  # validation never modifies


@st.composite
def context_agents(draw: st.DrawFn) -> Doc:
    item: Doc = {"objectType": "contextAgent", "agent": draw(agents())}
    if draw(st.booleans()):
        item["relevantTypes"] = draw(st.lists(iris, min_size=1, max_size=2))
    return item


@st.composite
def context_groups(draw: st.DrawFn) -> Doc:
    item: Doc = {"objectType": "contextGroup", "group": draw(groups())}
    if draw(st.booleans()):
        item["relevantTypes"] = draw(st.lists(iris, min_size=1, max_size=2))
    return item


@SETTINGS
@given(valid_statements(), st.lists(context_agents(), max_size=2), st.lists(context_groups(), max_size=2))
def test_context_agents_and_groups_valid_in_2_0_only(doc: Doc, cagents: list[Doc], cgroups: list[Doc]) -> None:
    doc.setdefault("context", {}).update(contextAgents=cagents, contextGroups=cgroups)
    validate_statement(doc, version="2.0.0")
    with pytest.raises(InvalidStatement) as err:
        validate_statement(doc, version="1.0.3")
    assert err.value.rule == "property.unknown"
    assert err.value.path == "$.context.contextAgents"


# ---------------------------------------------------------------------------------------
# One mutation, one violation


def _actor_ifis_to(doc: Doc, n: int) -> None:
    """Give the actor exactly ``n`` IFIs (well-formed ones) where it had 0 or 1."""
    actor = doc["actor"]
    for key in IFI_KEYS:
        if sum(k in actor for k in IFI_KEYS) >= n:
            break
        if key not in actor:
            actor.update(copy.deepcopy(OTHER_IFI[key]))


def _replace_actor_ifi(doc: Doc, ifi: Doc) -> None:
    actor = doc["actor"]
    for key in IFI_KEYS:
        actor.pop(key, None)
    actor.update(ifi)


def _set_object(doc: Doc, obj: Doc) -> None:
    """Replace the object; drop the context properties only an Activity object may have."""
    doc["object"] = obj
    ctx = doc.get("context")
    if ctx is not None and obj.get("objectType", "Activity") != "Activity":
        ctx.pop("revision", None)
        ctx.pop("platform", None)


def _score(doc: Doc) -> Doc:
    return doc.setdefault("result", {}).setdefault("score", {})


def _set_score(doc: Doc, **values: Any) -> None:
    score = _score(doc)
    score.clear()
    score.update(values)


def _first_activity(doc: Doc) -> Doc:
    """The object if it is an Activity, else a new Activity object in its place."""
    obj = doc["object"]
    if obj.get("objectType", "Activity") != "Activity":
        obj = {"objectType": "Activity", "id": "https://example.org/activity"}
        _set_object(doc, obj)
    return obj


def _definition(doc: Doc) -> Doc:
    return _first_activity(doc).setdefault("definition", {})


INTERACTION_KEYS = ("interactionType", "correctResponsesPattern", "choices", "scale", "source", "target", "steps")


def _interaction(doc: Doc, itype: str | None) -> Doc:
    """The definition of an Activity object, its interaction properties replaced by ``itype`` alone."""
    d = _definition(doc)
    for key in INTERACTION_KEYS:
        d.pop(key, None)
    if itype is not None:
        d["interactionType"] = itype
    return d


def _context(doc: Doc) -> Doc:
    return doc.setdefault("context", {})


def _attachment(doc: Doc) -> Doc:
    atts = doc.setdefault("attachments", [])
    if not atts:
        atts.append(
            {
                "usageType": "https://example.org/usage",
                "display": {"en": "a file"},
                "contentType": "application/pdf",
                "length": 1,
                "sha2": "a" * 64,
                "fileUrl": "https://example.org/file.pdf",
            }
        )
    return atts[-1]


def _nested_substatement(doc: Doc) -> None:
    inner = {
        "objectType": "SubStatement",
        "actor": {"mbox": "mailto:inner@example.org"},
        "verb": {"id": "https://example.org/verbs/did"},
        "object": {"id": "https://example.org/activity"},
    }
    outer = {"objectType": "SubStatement", "actor": copy.deepcopy(doc["actor"]), "verb": doc["verb"], "object": inner}
    _set_object(doc, outer)


def _substatement_with(doc: Doc, key: str, value: Any) -> None:
    sub = {
        "objectType": "SubStatement",
        "actor": {"mbox": "mailto:sub@example.org"},
        "verb": {"id": "https://example.org/verbs/did"},
        "object": {"id": "https://example.org/activity"},
        key: value,
    }
    _set_object(doc, sub)


def _voiding_without_ref(doc: Doc) -> None:
    doc["verb"]["id"] = VOIDED
    if doc["object"].get("objectType") == "StatementRef":
        _set_object(doc, {"id": "https://example.org/activity"})


def _activity_only_on(prop: str) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        _set_object(doc, {"objectType": "StatementRef", "id": "fd41c918-b88b-4b20-a0a5-a4c32391aaa0"})
        _context(doc)[prop] = "r1"

    return mutate


def _anonymous_group_without_members(doc: Doc) -> None:
    doc["actor"] = {"objectType": "Group", "name": "nobody"}


def _group_in_group(doc: Doc) -> None:
    doc["actor"] = {"objectType": "Group", "member": [{"objectType": "Group", "member": []}], "mbox": "mailto:g@x.org"}


def _team_agent(doc: Doc) -> None:
    _context(doc)["team"] = {"objectType": "Agent", "mbox": "mailto:t@example.org"}


def _duplicate_component(doc: Doc) -> None:
    _interaction(doc, "choice")["choices"] = [{"id": "a"}, {"id": "b"}, {"id": "a"}]


def _components_not_allowed(doc: Doc) -> None:
    _interaction(doc, "true-false")["choices"] = [{"id": "a"}]


def _signature_not_octet_stream(doc: Doc) -> None:
    att = _attachment(doc)
    att["usageType"] = SIGNATURE_USAGE
    att["contentType"] = "application/json"


def _bad_extension_key(doc: Doc) -> None:
    _context(doc).setdefault("extensions", {})["not an iri"] = 1


def _set(path: tuple[str, ...], value: Any) -> Callable[[Doc], None]:
    """Set ``value`` at ``path`` (creating objects on the way)."""

    def mutate(doc: Doc) -> None:
        node = doc
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = copy.deepcopy(value)

    return mutate


# (rule id the validator reports, mutation); every rule id below is one the validator defines.
MUTATIONS: list[tuple[str, Callable[[Doc], None]]] = [
    ("actor.ifi.exactly-one", lambda d: _actor_ifis_to(d, 2)),
    ("actor.mbox.mailto", lambda d: _replace_actor_ifi(d, {"mbox": "http://example.org/ana"})),
    ("actor.mbox.mailto", lambda d: _replace_actor_ifi(d, {"mbox": "ana@example.org"})),
    ("actor.mbox_sha1sum.hex", lambda d: _replace_actor_ifi(d, {"mbox_sha1sum": "xyz"})),
    ("actor.openid.uri", lambda d: _replace_actor_ifi(d, {"openid": "not a uri"})),
    ("actor.account.homePage.irl", lambda d: _replace_actor_ifi(d, {"account": {"homePage": "lms", "name": "a"}})),
    (
        "actor.account.name.empty",
        lambda d: _replace_actor_ifi(d, {"account": {"homePage": "https://x.org", "name": ""}}),
    ),
    ("group.member.required", _anonymous_group_without_members),
    ("group.member.agent", _group_in_group),
    ("statement.id.uuid", _set(("id",), "fd41c918b88b4b20a0a5a4c32391aaa0")),
    ("statement.id.uuid", _set(("id",), "not-a-uuid")),
    ("timestamp.format", _set(("timestamp",), "yesterday")),
    ("timestamp.format", _set(("timestamp",), "2024-02-30T10:00:00Z")),
    ("timestamp.offset.negative-zero", _set(("timestamp",), "2024-01-01T10:00:00-00:00")),
    ("verb.id.iri", _set(("verb", "id"), "answered")),
    ("language-map.key.rfc5646", _set(("verb", "display"), {"en": "x", "en_US": "x"})),
    ("language-map.key.rfc5646", lambda d: _definition(d).setdefault("name", {}).update({"": "nameless"})),
    ("verb.voided.statementref", _voiding_without_ref),
    ("activity.id.iri", lambda d: _first_activity(d).update(id="course-1")),
    ("activity.definition.type.iri", lambda d: _definition(d).update(type="lesson")),
    ("activity.definition.interactionType.value", lambda d: _interaction(d, "Choice")),
    ("activity.definition.components.not-allowed", _components_not_allowed),
    ("activity.definition.component.id.unique", _duplicate_component),
    ("activity.definition.interactionType.required", lambda d: _interaction(d, None).update(choices=[{"id": "a"}])),
    ("substatement.nested", _nested_substatement),
    ("substatement.property.forbidden", lambda d: _substatement_with(d, "id", "fd41c918-b88b-4b20-a0a5-a4c32391aaa0")),
    ("statementref.id.uuid", lambda d: _set_object(d, {"objectType": "StatementRef", "id": "42"})),
    ("objectType.value", lambda d: _set_object(d, {"objectType": "activity", "id": "https://example.org/a"})),
    ("result.score.scaled.range", lambda d: _set_score(d, scaled=1.5)),
    ("result.score.scaled.range", lambda d: _set_score(d, scaled=-2)),
    ("result.score.min-max", lambda d: _set_score(d, min=10, max=5)),
    ("result.score.min-max.equal", lambda d: _set_score(d, min=0, max=0)),
    ("result.score.raw.range", lambda d: _set_score(d, min=0, max=10, raw=11)),
    ("result.success.type", _set(("result", "success"), "true")),
    ("result.duration.format", _set(("result", "duration"), "12 minutes")),
    ("context.registration.uuid", _set(("context", "registration"), "session-1")),
    ("context.revision.activity-only", _activity_only_on("revision")),
    ("context.platform.activity-only", _activity_only_on("platform")),
    ("context.team.group", _team_agent),
    ("context.language.rfc5646", _set(("context", "language"), "english!")),
    ("statementref.objectType", _set(("context", "statement"), {"id": "fd41c918-b88b-4b20-a0a5-a4c32391aaa0"})),
    ("extensions.key.iri", _bad_extension_key),
    ("attachment.length.negative", lambda d: _attachment(d).update(length=-1)),
    ("attachment.sha2.hex", lambda d: _attachment(d).update(sha2="abc")),
    ("attachment.fileUrl.irl", lambda d: _attachment(d).update(fileUrl="file.pdf")),
    ("attachment.signature.contentType", _signature_not_octet_stream),
    ("property.unknown", _set(("extra",), 1)),
    ("property.case", lambda d: d.update(Result=d.pop("result", {}))),
    ("value.null", _set(("result", "response"), None)),
    ("version.format", _set(("version",), "0.95")),
]


@pytest.mark.parametrize(("rule", "mutate"), MUTATIONS, ids=[f"{i}-{rule}" for i, (rule, _) in enumerate(MUTATIONS)])
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=valid_statements())
def test_one_mutation_is_refused_with_its_rule(rule: str, mutate: Callable[[Doc], None], doc: Doc) -> None:
    validate_statement(doc)  # the statement is valid before the mutation
    mutate(doc)
    with pytest.raises(InvalidStatement) as err:
        validate_statement(doc)
    assert err.value.rule == rule, err.value
    violations = statement_violations(doc)
    assert violations[0].rule == rule
    if rule in CONTINUABLE_RULES:
        # The walk goes past it: it is the statement's only violation.
        assert [v.rule for v in violations] == [rule], violations
