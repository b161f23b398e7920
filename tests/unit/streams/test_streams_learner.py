"""The learner stage's envelope application: redelivery guard, voiding, cmi5 durations."""

from __future__ import annotations

import pytest

from schemas.envelope import StatementEntry, StatementEnvelope
from schemas.profile import SKILL_EXTENSION
from schemas.xapi.timefmt import format_ms
from streams.config import StreamsConfig
from streams.learner.logic import CMI5_CATEGORY, LearnerLogic, Outputs
from streams.mastery.logic import VOIDED_VERB, MasteryModel

T0 = 1_767_225_600_000
M = 60_000


def stmt(ts, verb="experienced", duration=None, cmi5=False, sid="00000000-0000-4000-8000-000000000001",
         success=None, voids=None):
    s = {"id": sid, "verb": {"id": f"http://adlnet.gov/expapi/verbs/{verb}"}, "timestamp": format_ms(ts),
         "object": {"objectType": "Activity", "id": "https://a/1",
                    "definition": {"extensions": {SKILL_EXTENSION: ["k"]}}}}
    if cmi5:
        s["context"] = {"contextActivities": {"category": [{"id": CMI5_CATEGORY}]}}
    result = {}
    if duration:
        result["duration"] = duration
    if success is not None:
        result["success"] = success
    if result:
        s["result"] = result
    if voids:
        s["verb"] = {"id": VOIDED_VERB}
        s["object"] = {"objectType": "StatementRef", "id": voids}
    return s


def env(*stmts):
    return StatementEnvelope("s", "L", T0, tuple(StatementEntry("C", "k1", x) for x in stmts))


def test_streams_learner_redelivered_envelope_is_not_counted_twice_but_reemitted():
    logic = LearnerLogic(StreamsConfig(), MasteryModel())
    state, part = {}, {}
    first = Outputs()
    assert logic.apply(state, part, env(stmt(T0), stmt(T0 + 5 * M)), 7, first)
    again = Outputs()
    assert not logic.apply(state, part, env(stmt(T0), stmt(T0 + 5 * M)), 7, again)
    key = ("L", "C", "hour", T0)
    assert again.engagement[key] == first.engagement[key]
    assert state["c"]["C"]["h"][str(T0)][0] == 2


def test_streams_learner_cmi5_session_durations_are_not_activity():
    logic = LearnerLogic(StreamsConfig(), MasteryModel())
    state = {}
    out = Outputs()
    # terminated after 40 min with a session duration of 40 min; the learner only did
    # something at 00:00 and 00:40: not 40 minutes of activity.
    logic.apply(state, {}, env(stmt(T0), stmt(T0 + 40 * M, "terminated", "PT40M", cmi5=True)), 1, out)
    assert out.engagement[("L", "C", "hour", T0)].active_ms == 0
    # the same duration on a non-cmi5 statement is an activity interval
    out = Outputs()
    logic.apply({}, {}, env(stmt(T0), stmt(T0 + 40 * M, "terminated", "PT40M")), 1, out)
    assert out.engagement[("L", "C", "hour", T0)].active_ms == 40 * M


def test_streams_learner_void_before_and_after_the_voided_statement():
    logic = LearnerLogic(StreamsConfig(), MasteryModel())
    bad = "00000000-0000-4000-8000-0000000000bb"
    after, before = {}, {}
    out = Outputs()
    logic.apply(after, {}, env(stmt(T0, "answered", success=True), stmt(T0 + M, "answered", success=False, sid=bad),
                               stmt(T0 + 2 * M, voids=bad)), 1, out)
    logic.apply(before, {}, env(stmt(T0, voids=bad), stmt(T0 + M, "answered", success=True),
                                stmt(T0 + 2 * M, "answered", success=False, sid=bad)), 1, Outputs())
    assert after["k"]["k"]["p"] == pytest.approx(before["k"]["k"]["p"])
    assert after["k"]["k"]["n"] == before["k"]["k"]["n"] == 1
    assert out.mastery[("L", "k")].observations == 1


def test_streams_learner_envelope_spanning_days_keeps_every_record():
    logic = LearnerLogic(StreamsConfig(), MasteryModel())
    out = Outputs()
    logic.apply({}, {}, env(stmt(T0), stmt(T0 + 3 * 24 * 60 * M)), 1, out)
    assert {r.hour_ms for r in out.activity.values()} == {T0, T0 + 3 * 24 * 60 * M}
    assert ("L", "C", "day", T0) in out.engagement
