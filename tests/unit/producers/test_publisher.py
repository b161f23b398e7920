"""The request encoder (gateway) gives what the streaming publisher gives, byte for byte."""

from __future__ import annotations

import copy
import itertools

import orjson

from producers.publisher import RequestEncoder, StatementPublisher, cached_pseudonym, school_authority
from producers.simulator import Simulation, SimulationConfig
from schemas.envelope import StatementEnvelope
from schemas.identity import pseudonym
from schemas.profile import SchoolProfile
from schemas.xapi.canonical import canonicalize

SECRET = b"test-secret"


class _Collect:
    def __init__(self) -> None:
        self.envelopes: list[tuple[StatementEnvelope, bytes]] = []

    def send(self, envelope: StatementEnvelope) -> None:
        self.envelopes.append((envelope, envelope.encode()))

    def send_encoded(self, envelope: StatementEnvelope, value: bytes) -> None:
        self.envelopes.append((envelope, value))


def _statements(n: int) -> list[dict]:
    return [i.statement for i in itertools.islice(Simulation(SimulationConfig(seed=4)), n)]


def _via_publisher(statements, max_per_envelope, profiles=None):
    collect = _Collect()
    publisher = StatementPublisher(collect, SECRET, profiles, max_per_envelope=max_per_envelope, linger_s=1e9)  # type: ignore[arg-type]
    stored = [publisher.publish("school-1", s, 1_732_406_400_123) for s in statements]
    publisher.batcher.flush()
    return stored, collect.envelopes


def test_producers_request_encoder_equals_publisher_envelopes_order_and_bytes():
    statements = _statements(600)
    profiles = {"school-1": SchoolProfile(cohort_extension="https://example.org/no-such-extension")}
    for max_per_envelope in (1, 7, 100):
        stored, expected = _via_publisher(copy.deepcopy(statements), max_per_envelope, profiles)
        encoder = RequestEncoder(SECRET, profiles, max_per_envelope=max_per_envelope)
        got = encoder.encode("school-1", copy.deepcopy(statements), 1_732_406_400_123, owned=True)
        assert got.stored == stored
        assert [e for e, _ in got.envelopes] == [e for e, _ in expected]
        assert [v for _, v in got.envelopes] == [v for _, v in expected]
        assert all(StatementEnvelope.decode(v) == e for e, v in got.envelopes)


def test_producers_request_encoder_positions_point_at_each_statement():
    statements = _statements(250)
    got = RequestEncoder(SECRET, max_per_envelope=20).encode("s", statements, 5, owned=False)
    assert len(got.positions) == len(statements)
    for stored, (value, n) in zip(got.stored, got.positions, strict=True):
        assert orjson.loads(value)["statements"][n]["statement"] == stored


def test_producers_request_encoder_closes_on_bytes_like_the_batcher():
    pad = "y" * 1000
    statements = [
        {"actor": {"mbox": "mailto:a@example.org"}, "verb": {"id": "http://example.org/v"},
         "object": {"id": "http://example.org/o", "definition": {"description": {"en": pad}}}}
        for _ in range(5)
    ]  # fmt: skip
    got = RequestEncoder(SECRET, max_per_envelope=100, max_bytes=2500).encode("s", statements, 5)
    assert [len(e.entries) for e, _ in got.envelopes] == [1, 1, 1, 1, 1]
    got = RequestEncoder(SECRET, max_per_envelope=100, max_bytes=3000).encode("s", statements, 5)
    assert [len(e.entries) for e, _ in got.envelopes] == [2, 2, 1]


def test_producers_request_encoder_owned_completes_in_place_not_owned_copies():
    s = {"actor": {"mbox": "mailto:a@example.org"}, "verb": {"id": "http://example.org/v"},
         "object": {"id": "http://example.org/o"},
         "context": {"contextActivities": {"parent": {"id": "http://example.org/p"}}}}  # fmt: skip
    original = copy.deepcopy(s)
    kept = RequestEncoder(SECRET).encode("s", [s], 5, owned=False)
    assert s == original and kept.stored[0] is not s
    owned = RequestEncoder(SECRET).encode("s", [s], 5, owned=True)
    assert owned.stored[0] is s
    assert s["context"]["contextActivities"]["parent"] == [{"id": "http://example.org/p"}]
    assert list(s) == list(kept.stored[0]) and s["stored"] == kept.stored[0]["stored"]


def test_canonical_in_place_equals_copy_with_the_same_key_order():
    base = {
        "id": "2c738870-7852-4d2b-a5c4-c3999373838e",
        "actor": {"mbox": "mailto:a@example.org"}, "verb": {"id": "http://example.org/v"},
        "object": {"objectType": "SubStatement", "actor": {"mbox": "mailto:b@example.org"},
                   "verb": {"id": "http://example.org/v"}, "object": {"id": "http://example.org/o"},
                   "context": {"contextActivities": {"grouping": {"id": "http://example.org/g"}}}},
        "authority": {"mbox": "mailto:someone@example.org"},
        "context": {"registration": "839b7078-b3f2-499f-8628-d1a83039a375",
                    "contextActivities": {"parent": {"id": "http://example.org/p"}, "other": [{"id": "http://x.org/o"}]}},
    }  # fmt: skip
    copied = canonicalize(copy.deepcopy(base), authority=school_authority("s"), stored_ms=7)
    in_place_input = copy.deepcopy(base)
    in_place = canonicalize(in_place_input, authority=school_authority("s"), stored_ms=7, in_place=True)
    assert in_place is in_place_input
    assert orjson.dumps(in_place) == orjson.dumps(copied)


def test_producers_cached_pseudonym_equals_identity_pseudonym():
    agents = [
        {"mbox": "mailto:Ada@Example.COM"},
        {"account": {"homePage": "https://lms.example.org", "name": "4711"}},
        {"objectType": "Group", "member": [{"mbox": "mailto:b@example.org"}, {"openid": "https://id.example.org/c"}]},
    ]
    for agent in agents * 2:
        assert cached_pseudonym(SECRET, agent) == pseudonym(SECRET, agent)
        assert cached_pseudonym(b"other", agent) == pseudonym(b"other", agent)


def test_producers_key_partitioner_equals_kafka_python_default_partitioner():
    import random

    from kafka.partitioner.default import DefaultPartitioner

    from producers.kafka import KeyPartitioner

    class _Cluster:
        def __init__(self, parts):
            self.parts = parts

        def topics(self):
            return {"t"}

        def partitions_for_topic(self, _topic):
            return set(self.parts)

        def available_partitions_for_topic(self, _topic):
            return set(self.parts)

    class _Producer:
        def __init__(self, cluster):
            self._metadata = cluster

    rng = random.Random(3)
    ours = KeyPartitioner(max_keys=50)
    default = DefaultPartitioner()
    for parts in ([0], list(range(3)), list(range(24)), [5, 1, 9, 3]):
        cluster = _Cluster(parts)
        for _ in range(300):
            key = pseudonym(SECRET, {"mbox": f"mailto:{rng.random()}@example.org"}).encode()
            expected = default.partition("t", key, key, None, None, cluster)
            assert ours.partition(_Producer(cluster), "t", key) == expected
            assert ours.partition(_Producer(cluster), "t", key) == expected  # remembered hash
    assert KeyPartitioner().partition(_Producer(_Cluster([])), "t", b"k") is None
    assert KeyPartitioner().partition(object(), "t", b"k") is None  # type: ignore[arg-type]
