"""The simulator into the real broker: exact counts read back, all valid, truth matching what Kafka holds."""

from __future__ import annotations

import collections
import time
import urllib.request

import pytest
from kafka import KafkaConsumer

from learnpulse.local_secrets import pseudonym_key
from learnpulse.pipeline import run_simulator
from learnpulse.settings import KafkaSettings, Settings
from producers.simulator import VERB_ANSWERED, SimulationConfig
from producers.truth import JsonlTruthWriter
from schemas.envelope import StatementEnvelope
from schemas.identity import pseudonym
from schemas.profile import SKILL_EXTENSION
from schemas.topics import Topic
from schemas.truth import read_truth
from schemas.xapi.validate import validate_statement
from tests.conftest import free_port, wait_for, free_port_block


def read_back(kafka: KafkaSettings, expected: int, timeout: float = 60, settle: float = 2.0) -> list[StatementEnvelope]:
    """Every envelope on the test's statements topic once ``expected`` statements arrived and nothing more came."""
    consumer = KafkaConsumer(
        Topic.STATEMENTS.physical(kafka.topic_prefix),
        bootstrap_servers=kafka.bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    envelopes: list[StatementEnvelope] = []
    n = 0
    deadline = time.monotonic() + timeout
    settle_until = None
    try:
        while time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=500)
            for records in batch.values():
                for rec in records:
                    env = StatementEnvelope.decode(rec.value)
                    assert rec.key == env.key
                    envelopes.append(env)
                    n += len(env.entries)
            if n >= expected:
                settle_until = settle_until or time.monotonic() + settle
                if time.monotonic() >= settle_until:
                    break
    finally:
        consumer.close()
    return envelopes


def statements_of(envelopes: list[StatementEnvelope]) -> list[dict]:
    return [e.statement for env in envelopes for e in env.entries]


def producer_settings(tmp_path, kafka: KafkaSettings) -> Settings:
    return Settings(home=tmp_path / "home", kafka=kafka, metrics_port_base=free_port_block(16), log_level="WARNING")


@pytest.mark.kafka
def test_producers_simulator_to_kafka_exact_counts_and_truth(tmp_path, kafka):
    settings = producer_settings(tmp_path, kafka)
    n = 6_000
    config = SimulationConfig(seed=21, schools=3, courses_per_school=2, learners_per_course=20)
    sent = run_simulator(settings, config, n, None, truth=JsonlTruthWriter(tmp_path / "truth.jsonl"))
    assert sent == n

    envelopes = read_back(kafka, n)
    stmts = statements_of(envelopes)
    assert len(stmts) == n
    assert len({s["id"] for s in stmts}) == n
    for s in stmts:
        validate_statement(s, version="1.0.3")
    # Keyed per learner: every envelope holds one learner, named by the pseudonym of its actors.
    secret = pseudonym_key(settings)
    for env in envelopes:
        assert {pseudonym(secret, e.statement["actor"]) for e in env.entries} == {env.learner}
        assert env.school == env.entries[0].statement["authority"]["account"]["name"]
    assert {env.school for env in envelopes} == {"school-000", "school-001", "school-002"}
    assert sum(len(env.entries) > 1 for env in envelopes) > 0  # batching per learner happens

    truth = read_truth(tmp_path / "truth.jsonl")
    assert truth.run.statements == n
    answered = [s for s in stmts if s["verb"]["id"] == VERB_ANSWERED]
    assert truth.run.answered == len(answered)
    per_learner = collections.Counter((s["actor"]["account"]["homePage"], s["actor"]["account"]["name"]) for s in stmts)
    assert {(ln.home_page, ln.name): ln.statements for ln in truth.learners if ln.statements} == dict(per_learner)
    per_skill = collections.Counter(
        (s["actor"]["account"]["name"], s["object"]["definition"]["extensions"][SKILL_EXTENSION][0]) for s in answered
    )
    assert {(m.name, m.skill): m.opportunities for m in truth.mastery if m.opportunities} == dict(per_skill)


@pytest.mark.kafka
def test_producers_simulate_command_sends_each_statement_alone_with_per_envelope_1(tmp_path, kafka, spawn):
    """The shape of browsers' traffic (one statement per request): one statement per message."""
    settings = producer_settings(tmp_path, kafka)
    proc = spawn(["simulate", "--count", "300", "--per-envelope", "1", "--scale", "demo"], settings, "simulate")
    wait_for(lambda: proc.popen.poll() is not None, 120, "the simulator to send 300 statements and exit")
    assert proc.popen.returncode == 0, proc.tail()
    envelopes = read_back(kafka, 300)
    assert len(envelopes) == 300
    assert {len(env.entries) for env in envelopes} == {1}
    assert len({s["id"] for s in statements_of(envelopes)}) == 300


@pytest.mark.kafka
def test_producers_simulate_command_serves_metrics_and_stops_cleanly(tmp_path, kafka, spawn):
    """`learnpulse simulate --rate` runs as a live feed; SIGTERM flushes, writes the truth, exits 0."""
    settings = producer_settings(tmp_path, kafka)
    port = settings.metrics_port_base + 2
    proc = spawn(["simulate", "--rate", "400", "--truth", str(tmp_path / "t.jsonl")], settings, "simulate")

    def produced() -> float:
        if proc.popen.poll() is not None:
            pytest.fail(f"simulate exited {proc.popen.returncode}:\n{proc.tail()}")
        try:
            body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
        except OSError:
            return 0
        for line in body.splitlines():
            if line.startswith('learnpulse_statements_produced_total{stage="simulator"}'):
                return float(line.split()[-1])
        return 0

    wait_for(lambda: produced() >= 400, 60, "the simulator's /metrics to count 400 acknowledged statements")
    assert proc.stop() == 0, proc.tail()
    truth = read_truth(tmp_path / "t.jsonl")
    n = truth.run.statements
    assert n >= 400
    assert "statements sent and acknowledged" in proc.tail()
    stmts = statements_of(read_back(kafka, n))
    assert len(stmts) == n
    assert truth.run.answered == sum(s["verb"]["id"] == VERB_ANSWERED for s in stmts)
