"""Internal topics are only handed to Faust once every partition has a leader."""

from __future__ import annotations

import pytest

from streams import app as streams_app


class FakeAdmin:
    """Metadata answers in kafka-python 3.x's shape: leaderless first, then led."""

    def __init__(self, leaderless_rounds: int) -> None:
        self.rounds = 0
        self.leaderless_rounds = leaderless_rounds

    def describe_topics(self, names):
        self.rounds += 1
        leader = -1 if self.rounds <= self.leaderless_rounds else 1
        return [
            {"name": n, "error_code": 0,
             "partitions": [{"error_code": 0, "partition_index": i, "leader_id": leader} for i in range(2)]}
            for n in names
        ]


def test_wait_for_leaders_returns_only_once_every_partition_has_a_leader(monkeypatch):
    monkeypatch.setattr("time.sleep", lambda s: None)
    admin = FakeAdmin(leaderless_rounds=3)
    streams_app._wait_for_leaders(admin, {"a-feed": 2, "a-changelog": 2})
    assert admin.rounds == 4


def test_wait_for_leaders_counts_missing_partitions_as_not_ready(monkeypatch):
    monkeypatch.setattr("time.sleep", lambda s: None)
    admin = FakeAdmin(leaderless_rounds=0)
    with pytest.raises(RuntimeError, match="without leaders.*a-feed"):
        streams_app._wait_for_leaders(admin, {"a-feed": 3}, timeout_s=0)  # the fake has 2 partitions
