"""The contracts between stages: the statement envelope and the derived records."""

from __future__ import annotations

import dataclasses

import orjson
import pytest

from schemas import records
from schemas.envelope import StatementEntry, StatementEnvelope
from schemas.errors import InvalidStatement

RECORD_TYPES = [
    obj for obj in vars(records).values()
    if isinstance(obj, type) and dataclasses.is_dataclass(obj) and issubclass(obj, records._Record)
]
_SAMPLES = {"str": "x", "int": 7, "float": 0.25, "bool": True, "list[str]": ("a", "b")}


def sample(cls):
    return cls(**{f.name: _SAMPLES[str(f.type)] for f in dataclasses.fields(cls)})


def test_schemas_records_every_record_type_is_covered():
    assert len(RECORD_TYPES) >= 4


@pytest.mark.parametrize("cls", RECORD_TYPES, ids=lambda c: c.__name__)
def test_schemas_records_round_trip(cls):
    r = sample(cls)
    assert cls.decode(r.encode()) == r


@pytest.mark.parametrize("cls", RECORD_TYPES, ids=lambda c: c.__name__)
def test_schemas_records_decode_rejects_missing_unknown_and_mistyped_fields(cls):
    doc = orjson.loads(sample(cls).encode())
    first = dataclasses.fields(cls)[0].name
    for bad, rule in (
        ({k: v for k, v in doc.items() if k != first}, "missing"),
        ({**doc, "surprise": 1}, "unknown"),
        ({**doc, "version": "7"}, "type"),
        ({**doc, "version": True}, "type"),
    ):
        with pytest.raises(InvalidStatement) as err:
            cls.decode(orjson.dumps(bad))
        assert err.value.rule.endswith("." + rule)
    for raw in (b"not json", b"[1]", None):
        with pytest.raises(InvalidStatement):
            cls.decode(raw)


def _envelope() -> StatementEnvelope:
    stmt = {"id": "3f1b7e6e-0000-4000-8000-000000000001", "actor": {"mbox": "mailto:a@example.com"}}
    return StatementEnvelope("school-1", "ab" * 32, 1_700_000_000_000, (StatementEntry("c1", "k1", stmt),))


def test_schemas_envelope_round_trip_and_key_is_learner():
    env = _envelope()
    assert StatementEnvelope.decode(env.encode()) == env
    assert env.key == env.learner.encode()


@pytest.mark.parametrize(
    "mutate,rule",
    [
        (lambda d: {**d, "v": 99}, "envelope.version"),
        (lambda d: {**d, "school": ""}, "envelope.school"),
        (lambda d: {**d, "received": "now"}, "envelope.received"),
        (lambda d: {**d, "statements": []}, "envelope.statements"),
        (lambda d: {**d, "statements": [{"course": "c"}]}, "envelope.entry"),
    ],
)
def test_schemas_envelope_decode_names_the_broken_rule(mutate, rule):
    doc = orjson.loads(_envelope().encode())
    with pytest.raises(InvalidStatement) as err:
        StatementEnvelope.decode(orjson.dumps(mutate(doc)))
    assert err.value.rule == rule


def test_schemas_envelope_decode_rejects_non_json_and_empty():
    for raw, rule in ((b"{", "envelope.json"), (None, "envelope.empty"), (b"[]", "envelope.shape")):
        with pytest.raises(InvalidStatement) as err:
            StatementEnvelope.decode(raw)
        assert err.value.rule == rule
