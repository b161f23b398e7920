"""ensure_topics on a cluster that is still settling: transient refusals are retried, others are not."""

from __future__ import annotations

import pytest
from kafka.errors import NotControllerError, TopicAuthorizationFailedError, UnknownBrokerIdError

from learnpulse import topics
from schemas.topics import Topic


class _Admin:
    """A KafkaAdminClient stand-in whose create_topics fails as ``failures`` says, in order."""

    failures: list[Exception | None] = []
    made: list[str] = []

    def __init__(self, **_kw) -> None:
        pass

    def list_topics(self) -> list[str]:
        return list(_Admin.made)

    def create_topics(self, new_topics) -> None:
        refusal = _Admin.failures.pop(0) if _Admin.failures else None
        if refusal is not None:  # None: this call succeeds
            raise refusal
        _Admin.made += [t.name for t in new_topics]

    def describe_configs(self, resources, config_filter="modified"):
        # The topics as created: each with its declared record limit (nothing to raise).
        def declared(name: str) -> dict[str, str]:
            return next((t.spec.configs for t in Topic if name.endswith(t.physical(""))), {})

        return {"topic": {r.name: {k: {"value": v} for k, v in declared(r.name).items()} for r in resources}}

    def close(self) -> None:
        pass


@pytest.fixture
def admin(monkeypatch):
    monkeypatch.setattr(topics, "KafkaAdminClient", _Admin)
    monkeypatch.setattr(topics, "RETRY_PAUSE_S", 0.0)
    _Admin.made = []
    return _Admin


@pytest.mark.parametrize("refusal", [UnknownBrokerIdError(3), NotControllerError()])
def test_a_controller_not_known_yet_is_retried_until_every_topic_exists(admin, refusal):
    admin.failures = [refusal, refusal]
    created = topics.ensure_topics("127.0.0.1:1", "p.", 3)
    assert sorted(created) == sorted(t.physical("p.") for t in Topic)
    assert sorted(admin.made) == sorted(created)


def test_a_refusal_that_will_not_pass_is_raised_at_once(admin):
    admin.failures = [TopicAuthorizationFailedError()]
    with pytest.raises(TopicAuthorizationFailedError):
        topics.ensure_topics("127.0.0.1:1", "p.", 1)
    assert admin.failures == []


def test_transient_refusals_stop_being_retried_at_the_deadline(admin, monkeypatch):
    monkeypatch.setattr(topics, "SETTLE_TIMEOUT_S", 0.0)
    admin.failures = [UnknownBrokerIdError(3)] * 5
    with pytest.raises(UnknownBrokerIdError):
        topics.ensure_topics("127.0.0.1:1", "p.", 3)


def test_topics_created_before_a_refused_call_are_still_reported_as_created(admin):
    admin.failures = [None, None, UnknownBrokerIdError(3)]
    created = topics.ensure_topics("127.0.0.1:1", "p.", 3)
    assert sorted(created) == sorted(t.physical("p.") for t in Topic)
