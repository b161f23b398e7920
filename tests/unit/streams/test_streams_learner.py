"""The learner stage's envelope application: redelivery, statement ids applied once, voiding, cmi5 durations."""

from __future__ import annotations

import itertools
import random
import uuid

import pytest

from schemas.envelope import StatementEntry, StatementEnvelope
from schemas.profile import SKILL_EXTENSION
from schemas.xapi.timefmt import format_ms
from streams.config import EngagementParams, StreamsConfig
from streams.learner.logic import (
    CMI5_CATEGORY,
    LearnerLogic,
    Outputs,
    OwnerIndex,
    add_pending_void,
    statement_key,
)
from streams.mastery import logic as mastery
from streams.mastery.logic import VOIDED_VERB, MasteryModel

T0 = 1_767_225_600_000
M = 60_000
H = 60 * M
_ids = itertools.count(1)


def new_id() -> str:
    return str(uuid.UUID(int=next(_ids)))


def stmt(ts, verb="experienced", duration=None, cmi5=False, sid=None, success=None, voids=None, skill="k"):
    s = {"id": sid or new_id(), "verb": {"id": f"http://adlnet.gov/expapi/verbs/{verb}"}, "timestamp": format_ms(ts),
         "object": {"objectType": "Activity", "id": "https://a/1",
                    "definition": {"extensions": {SKILL_EXTENSION: [skill]}}}}
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


def env(*stmts, learner="L", course="C"):
    return StatementEnvelope("s", learner, T0, tuple(StatementEntry(course, "k1", x) for x in stmts))


def logic_with(lateness_ms=H):
    return LearnerLogic(StreamsConfig(engagement=EngagementParams(lateness_ms=lateness_ms)), MasteryModel())


def test_streams_learner_redelivered_envelope_is_not_counted_twice_but_reemitted():
    logic = LearnerLogic(StreamsConfig(), MasteryModel())
    state, part = {}, {}
    first = Outputs()
    envelope = env(stmt(T0), stmt(T0 + 5 * M))
    assert logic.apply(state, part, envelope, 7, first)
    again = Outputs()
    assert not logic.apply(state, part, envelope, 7, again)
    key = ("L", "C", "hour", T0)
    assert again.engagement[key] == first.engagement[key]
    assert state["c"]["C"]["h"][str(T0)][0] == 2


def test_streams_learner_redelivery_brings_a_partition_state_saved_behind_its_learner_up_to_date():
    """A crash between the learner's and the partition's writes: the replay gives the clean run's partition state."""
    logic = LearnerLogic(StreamsConfig(), MasteryModel())
    clean_state, clean_part = {}, {}
    envelopes = [env(stmt(T0)), env(stmt(T0 + 3 * H), learner="A"), env(stmt(T0 + 9 * H))]
    for offset, e in enumerate(envelopes):
        logic.apply(clean_state if e.learner == "L" else {}, clean_part, e, offset, Outputs())
    # The crashed run saved L's state after offset 2 but its partition only after offset 0.
    state, part, other = {}, {}, {}
    logic.apply(state, part, envelopes[0], 0, Outputs())
    behind = dict(part)
    logic.apply(other, part, envelopes[1], 1, Outputs())
    logic.apply(state, part, envelopes[2], 2, Outputs())
    part, other = behind, {}
    logic.apply(other, part, envelopes[1], 1, Outputs())  # re-applied: A's state was lost too
    assert not logic.apply(state, part, envelopes[2], 2, Outputs())  # L's: redelivered
    assert part["mx"] == clean_part["mx"] == T0 + 9 * H


def test_streams_learner_statement_key_is_a_digest_not_a_prefix():
    # Time-based UUIDs share long prefixes and suffixes; their keys must still differ.
    a, b = "1b4e28ba-2fa1-11d2-883f-0016d3cca427", "1b4e28ba-2fa1-11d2-883f-0016d3cca428"
    assert statement_key(a) != statement_key(b)
    assert statement_key(a.upper()) == statement_key(a)  # ids are case-insensitive UUIDs
    assert len(statement_key(a)) == 16


def test_streams_learner_same_statement_twice_in_one_envelope_counts_once():
    logic = logic_with()
    s = stmt(T0 + 5 * M, "answered", success=True)
    once, twice = {}, {}
    o1, o2 = Outputs(), Outputs()
    logic.apply(once, {}, env(stmt(T0, sid="00000000-0000-4000-8000-00000000000a"), s), 1, o1)
    logic.apply(twice, {}, env(stmt(T0, sid="00000000-0000-4000-8000-00000000000a"), s, dict(s)), 1, o2)
    assert o2.duplicates == 1 and o1.duplicates == 0
    assert o1.engagement == o2.engagement and o1.mastery == o2.mastery and o1.cohort == o2.cohort
    assert twice["k"]["k"]["n"] == 1


def test_streams_learner_statement_resent_at_a_new_offset_changes_nothing():
    logic = logic_with()
    state, part = {}, {}
    first = [stmt(T0, "answered", success=True), stmt(T0 + 10 * M, duration="PT3M")]
    logic.apply(state, part, env(*first), 1, Outputs())
    logic.apply(state, part, env(stmt(T0 + 20 * M)), 2, Outputs())
    before = repr(state["c"]), repr(state["k"])
    out = Outputs()
    assert logic.apply(state, part, env(*first), 3, out)  # same ids, new offset: a producer re-sent them
    assert (repr(state["c"]), repr(state["k"])) == before
    assert out.duplicates == 2
    assert not out.engagement and not out.mastery and not out.cohort


def _records(logic, envelopes):
    """Latest record per key over every batch, and the final state."""
    state, part = {}, {}
    latest: dict = {}
    for offset, e in enumerate(envelopes):
        out = Outputs()
        logic.apply(state, part, e, offset, out)
        for records in (out.engagement, out.mastery):
            for k, r in records.items():
                if k not in latest or r.version >= latest[k].version:
                    latest[k] = r
        for k, b in out.cohort.items():
            if k not in latest or b["v"] >= latest[k]["v"]:
                latest[k] = b
    return latest, state


def test_streams_learner_copies_mixed_in_give_the_records_of_each_statement_once():
    """Random streams (two courses, gaps over the horizon, scored attempts, some out of order);
    the same stream with copies re-sent later — same and other envelopes, soon or hours
    after — gives the same final records, versions included."""
    rng = random.Random(3)
    for trial in range(30):
        t = T0
        stream = []
        for _ in range(rng.randrange(10, 80)):
            t += rng.choice([rng.randrange(0, 5 * M), rng.randrange(5 * M, 50 * M), rng.randrange(0, 4 * H)])
            ts = t - rng.choice([0, 0, 0, rng.randrange(0, 2 * H)])  # some arrive out of order
            course = rng.choice(["C1", "C2"])
            scored = rng.random() < 0.4
            s = stmt(ts, "answered" if scored else "experienced", success=rng.random() < 0.6 if scored else None,
                     duration=rng.choice([None, "PT2M"]), skill=rng.choice(["k1", "k2"]))
            stream.append((course, s))

        def pack(items):
            out, i = [], 0
            while i < len(items):
                n = rng.randrange(1, 6)
                chunk = items[i:i + n]
                i += n
                # the producer groups a learner's consecutive statements, whatever their course
                out.append(StatementEnvelope("s", "L", T0, tuple(StatementEntry(c, "k1", s) for c, s in chunk)))
            return out

        with_copies = list(stream)
        for _ in range(rng.randrange(1, 30)):
            original = with_copies.index(stream[rng.randrange(len(stream))])
            with_copies.insert(rng.randrange(original + 1, len(with_copies) + 1), with_copies[original])
        with_copies.extend(stream)  # and everything again at the end (a restarted simulator)
        logic = logic_with()
        once, _ = _records(logic, pack(stream))
        twice, _ = _records(logic, pack(with_copies))
        assert twice == once, f"trial {trial}"


def test_streams_learner_copy_with_another_timestamp_counts_once_within_the_horizon():
    logic = logic_with()
    state, part = {}, {}
    sid = new_id()
    logic.apply(state, part, env(stmt(T0, sid=sid)), 1, Outputs())
    out = Outputs()
    # an LRS that set timestamp = its new stored time on re-acceptance
    logic.apply(state, part, env(stmt(T0 + 3 * M, sid=sid)), 2, out)
    assert out.duplicates == 1 and state["c"]["C"]["h"][str(T0)][0] == 1


def test_streams_learner_remembered_keys_are_bounded_by_the_horizon():
    logic = logic_with()
    state, part = {}, {}
    for i in range(600):  # ten hours, one statement a minute
        logic.apply(state, part, env(stmt(T0 + i * M)), i, Outputs())
    ids = state["c"]["C"]["i"]
    hz = state["c"]["C"]["hz"]
    assert all(t >= hz for t in ids.values())
    assert len(ids) <= 2 * 60 + 1  # newest - lateness, rounded down to the hour: at most two hours


def test_streams_learner_late_copy_of_an_observation_is_recognised_from_the_history():
    logic = logic_with()
    state, part = {}, {}
    answer = stmt(T0, "answered", success=True)
    logic.apply(state, part, env(answer), 1, Outputs())
    logic.apply(state, part, env(stmt(T0 + 5 * H)), 2, Outputs())  # the horizon passes the answer
    assert statement_key(answer["id"]) not in state["c"]["C"]["i"]
    out = Outputs()
    logic.apply(state, part, env(answer), 3, out)
    assert state["k"]["k"]["n"] == 1 and out.duplicates == 1 and not out.mastery


def test_streams_learner_late_statement_changes_no_version():
    logic = logic_with()
    state, part = {}, {}
    logic.apply(state, part, env(stmt(T0 + 5 * H)), 1, Outputs())
    out = Outputs()
    logic.apply(state, part, env(stmt(T0)), 2, out)  # older than the horizon
    assert out.late == 1 and state["c"]["C"]["n"] == 1


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


def test_streams_learner_envelope_spanning_days_keeps_every_record():
    logic = LearnerLogic(StreamsConfig(), MasteryModel())
    out = Outputs()
    logic.apply({}, {}, env(stmt(T0), stmt(T0 + 3 * 24 * 60 * M)), 1, out)
    assert ("L", "C", "day", T0) in out.engagement
    assert ("L", "C", "day", T0 + 3 * 24 * 60 * M) in out.engagement


# -- voiding ---------------------------------------------------------------------------


class Stage:
    """Learner states and partition states driven like the agent does: envelopes applied,
    the owner index kept, unresolved voids looked for in every partition at batch end."""

    def __init__(self, partitions: dict[str, int]) -> None:
        self.logic = LearnerLogic(StreamsConfig(), MasteryModel())
        self.partition = partitions
        self.states: dict[str, dict] = {learner: {} for learner in partitions}
        self.parts: dict[int, dict] = {p: {} for p in set(partitions.values())}
        self.index = OwnerIndex()
        self.index.build([], {})
        self.offset = 0
        self.latest: dict = {}

    def send(self, learner: str, *stmts) -> Outputs:
        out = Outputs()
        self.offset += 1
        p = self.partition[learner]
        self.logic.apply(self.states[learner], self.parts[p], env(*stmts, learner=learner), self.offset, out)
        self.index.apply(out.observed, self.partition)
        done = len(out.observed)
        for target in out.voids:
            for q in self.parts:  # own partition at once, the others through the void feed
                owner = self.index.owner(target, q)
                if owner is None or not self.logic.undo(self.states[owner], "", owner, target, out):
                    add_pending_void(self.parts[q], target)
        self.index.apply(out.observed[done:], self.partition)
        for k, r in out.mastery.items():
            self.latest[k] = r
        return out


def test_streams_learner_void_before_and_after_the_voided_statement():
    bad = "00000000-0000-4000-8000-0000000000bb"
    after, before = Stage({"L": 0}), Stage({"L": 0})
    after.send("L", stmt(T0, "answered", success=True), stmt(T0 + M, "answered", success=False, sid=bad),
               stmt(T0 + 2 * M, voids=bad))
    before.send("L", stmt(T0 + 2 * M, voids=bad))  # the void arrives first
    before.send("L", stmt(T0, "answered", success=True), stmt(T0 + M, "answered", success=False, sid=bad))
    a, b = after.states["L"]["k"]["k"], before.states["L"]["k"]["k"]
    assert mastery.p_mastery(a) == pytest.approx(mastery.p_mastery(b))
    assert a["n"] == b["n"] == 1
    assert a["v"] == b["v"]  # observed + undone = dropped because voided first
    assert after.latest == before.latest


def test_streams_learner_void_by_another_actor_undoes_the_learners_observation():
    bad = "00000000-0000-4000-8000-0000000000cc"
    for order in ("target first", "void first"):
        stage = Stage({"L": 0, "TEACHER": 1})
        if order == "void first":
            stage.send("TEACHER", stmt(T0 + 5 * M, voids=bad))
        stage.send("L", stmt(T0, "answered", success=True))
        stage.send("L", stmt(T0 + M, "answered", success=False, sid=bad))
        if order == "target first":
            out = stage.send("TEACHER", stmt(T0 + 5 * M, voids=bad))
            assert out.voids == [statement_key(bad)]
            assert ("L", "k") in out.mastery  # the undo came out with the teacher's batch
        sk = stage.states["L"]["k"]["k"]
        assert (sk["n"], sk["c"], sk["v"]) == (1, 1, 3), order
        once = mastery.update(mastery.log_odds(0.2), True, mastery.BKTParams())
        assert mastery.p_mastery(sk) == pytest.approx(mastery.probability(once), abs=1e-12)
        assert "k" not in stage.states["TEACHER"].get("k", {})


def test_streams_learner_repeated_void_changes_nothing_more():
    bad = "00000000-0000-4000-8000-0000000000dd"
    stage = Stage({"L": 0, "T": 1})
    stage.send("L", stmt(T0, "answered", success=False, sid=bad))
    void = stmt(T0 + M, voids=bad)
    stage.send("T", void)
    snapshot = repr(stage.states["L"])
    out = stage.send("T", void)  # the same void re-sent
    assert out.duplicates == 1 and not out.mastery
    out = stage.send("T", stmt(T0 + 2 * M, voids=bad))  # another void of the same target
    assert not out.mastery and repr(stage.states["L"]) == snapshot


def test_streams_learner_void_of_a_statement_that_is_no_observation_is_not_looked_for():
    stage = Stage({"L": 0})
    plain = stmt(T0)
    stage.send("L", plain)
    out = stage.send("L", stmt(T0 + M, voids=plain["id"]))
    assert out.voids == [] and not stage.parts[0].get("vd")


def test_streams_learner_pending_voids_are_bounded():
    part: dict = {}
    for i in range(mastery.PENDING_VOIDS + 10):
        add_pending_void(part, f"{i:016x}")
    assert len(part["vd"]) == mastery.PENDING_VOIDS
    assert f"{0:016x}" not in part["vd"] and f"{mastery.PENDING_VOIDS + 9:016x}" in part["vd"]


def test_streams_learner_owner_index_counts_every_history_holding_a_key():
    index = OwnerIndex()
    index.build([(b"L", b'{"p": 3, "k": {"a": {"h": [["x", 1, 0]]}, "b": {"h": [["x", 1, 0]]}}}')], {})
    assert index.owner("x", 3) == "L" and index.owner("x", 4) is None
    index.apply([("x", "L", -1)], {"L": 3})  # folded out of one skill's history only
    assert index.owner("x", 3) == "L"
    index.apply([("x", "L", -1)], {"L": 3})
    assert index.owner("x", 3) is None
