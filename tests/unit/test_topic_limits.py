"""raise_record_limits: which topics it alters, and how (a stand-in admin client; the real
broker is in tests/integration/test_topics_record_limits.py and test_streams_large_cohort.py)."""

from __future__ import annotations

from schemas.topic_limits import RECORD_LIMIT, raise_record_limits


class _Admin:
    def __init__(self, limits: dict[str, str | None]) -> None:
        self.limits = limits  # None: described without the key (a topic made a moment ago)
        self.altered: list[tuple[str, dict, bool, bool]] = []

    def describe_configs(self, resources, config_filter="modified"):
        assert config_filter == "all"  # the broker default counts too
        return {"topic": {r.name: ({} if self.limits[r.name] is None else {RECORD_LIMIT: {"value": self.limits[r.name]}})
                          for r in resources}}  # fmt: skip

    def alter_configs(self, resources, raise_on_unknown=True, incremental=False):
        self.altered += [(r.name, dict(r.configs), raise_on_unknown, incremental) for r in resources]


def test_only_lower_limits_are_raised_and_only_that_key_incrementally():
    admin = _Admin({"low": "1000", "same": "2000", "higher": "9000", "new": None})
    raised = raise_record_limits(admin, {"low": 2000, "same": 2000, "higher": 2000, "new": 2000})
    assert raised == {"low": 2000, "new": 2000}
    assert sorted(admin.altered) == [
        ("low", {RECORD_LIMIT: "2000"}, False, True),
        ("new", {RECORD_LIMIT: "2000"}, False, True),
    ]


def test_nothing_wanted_asks_nothing():
    admin = _Admin({})
    assert raise_record_limits(admin, {}) == {} and admin.altered == []
