"""The worker's figures do not depend on how its input is batched, nor on its speed-ups.

Issue 16 part 3: the worker's cost per message is brought down by coalescing work per
learner per batch; "no figure computed differently (engagement, mastery, health equal
before/after on the same simulated input, compared by a test)". Two checks on simulated
traffic (the simulator's statements as the simulator command publishes them), read
through the learner and cohort stages in memory:

- one envelope per batch (nothing coalesced) and large batches give the same final
  figures, as the sinks keep them (highest version per table key);
- those figures are the ones the worker computed before the speed-ups (a digest taken at
  commit b262654 with this same harness): a change of any figure, version or record key
  fails here. Should a figure ever change on purpose, the new digest is printed.
"""

from __future__ import annotations

import hashlib

import pytest

from streams.config import HealthParams, HealthThresholds, StreamsConfig

from .simulated import Figures, run_stages, simulated_messages


def digest(figures: Figures) -> dict[str, str]:
    def one(kept: dict) -> str:
        return hashlib.sha256(repr(sorted(kept.items())).encode()).hexdigest()[:16]

    return {
        "engagement": one(figures.engagement), "mastery": one(figures.mastery),
        "cohort_health": one(figures.cohort_health), "alerts": one(figures.alerts),
    }


def config(inactive_hours: int) -> StreamsConfig:
    """The default thresholds but inactivity after a few hours: a few hours of simulated
    traffic then fire (and resolve) alerts."""
    return StreamsConfig(health=HealthParams(defaults=HealthThresholds(inactive_days=inactive_hours / 24, min_cohort_size=3)))


# (statements per envelope, simulator scale, statements, inactive hours) → digest of the
# figures computed by the worker's stages at commit b262654 (before issue 16 part 3's changes).
BEFORE = {
    (1, "medium", 12_000, 1): {"engagement": "6731dd9e2b4c9768", "mastery": "c38371d8c525074a",
                               "cohort_health": "d6c0691c68d4a838", "alerts": "cd1de8bd57be8147"},
    (10, "demo", 12_000, 3): {"engagement": "ce670bbc8620c39b", "mastery": "7370cd0dfd06fe94",
                              "cohort_health": "4cb6cdcc0569b45f", "alerts": "46bfd5bfa08bf74f"},
}


@pytest.fixture(scope="module", params=sorted(BEFORE), ids=lambda p: f"{p[0]}-per-envelope-{p[1]}")
def case(request):
    per_envelope, scale, count, inactive_hours = request.param
    messages = simulated_messages(count, per_envelope=per_envelope, scale=scale)
    cfg = config(inactive_hours)
    return request.param, messages, cfg, run_stages(messages, batch_size=1000, config=cfg)


def test_the_figures_are_those_the_worker_computed_before_its_speed_ups(case):
    key, _messages, _cfg, batched = case
    assert batched.engagement and batched.mastery and batched.cohort_health and batched.alerts  # every figure
    assert digest(batched) == BEFORE[key], f"figures changed: {digest(batched)}"


def test_large_batches_give_the_figures_of_one_envelope_at_a_time(case):
    _key, messages, cfg, batched = case
    one_by_one = run_stages(messages, batch_size=1, config=cfg)
    odd = run_stages(messages, batch_size=97, config=cfg)
    for name in ("engagement", "mastery", "cohort_health", "alerts"):
        assert getattr(batched, name) == getattr(one_by_one, name), name
        assert getattr(odd, name) == getattr(one_by_one, name), name
    # Coalescing is real: far fewer records for the same figures.
    assert batched.sent < one_by_one.sent
